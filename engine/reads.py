"""The read side of one collection: retrieve, scroll, count and nearest-neighbour search.

Owns: how reads see a consistent state (LMDB read transactions, and the visibility lock held
shared across a graph search and the LMDB reads that follow it), exact scoring, payload and
vector selection, filtered search planning.
Not here: writes (collection.py, mutations.py), the graphs themselves (index.py).

Scores follow Qdrant: Cosine and Dot are similarities (higher is better), Euclid and
Manhattan distances (lower is better). Hits from the graph are rescored exactly from LMDB,
so graph and exact search report the same numbers.

Filtered search: the points matching the filter are found first (a scan of the payloads;
payload indexes will narrow it later). If their vectors are fewer bytes than the collection's
`full_scan_threshold` (KiB, as Qdrant), they are scored exactly with numpy; otherwise the
graph is searched with the matching labels as its filter.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from engine import filters
from engine.index import VectorIndex
from engine.locks import ReadWriteLock
from engine.ops import (
    CollectionConfig,
    Distance,
    PayloadSelector,
    PointId,
    PointRecord,
    ScoredPoint,
    SearchRequest,
    VectorSelector,
    point_id_from_key,
    point_key,
)
from engine.store import Store, StoredPoint

log = logging.getLogger(__name__)

EXACT_CHUNK_COUNT = 16_384  # vectors scored per numpy call in an exact search
SCROLL_LIMIT_MAX = 100_000


class Reader:
    """Reads of one collection; every method may run in any thread."""

    def __init__(
        self,
        config: CollectionConfig,
        store: Store,
        indexes: dict[str, VectorIndex],
        visibility_lock: ReadWriteLock,
    ) -> None:
        self.config = config
        self._store = store
        self._indexes = indexes
        self._visibility_lock = visibility_lock

    def scroll(
        self,
        filter_: Any,
        limit: int,
        offset: PointId | None,
        with_payload: PayloadSelector,
        with_vector: VectorSelector,
    ) -> tuple[list[PointRecord], PointId | None]:
        """Points in id order from `offset` (inclusive) matching `filter_`, and the id the
        next page starts at (None on the last page)."""
        assert 1 <= limit <= SCROLL_LIMIT_MAX, limit
        predicate = None if filter_ is None else compile_filter(filter_)
        start_key = None if offset is None else point_key(offset)
        page: list[StoredPoint] = []
        for point in self._store.iter_points(start_key):
            if predicate is None or predicate(
                point_id_from_key(point.key), point.payload or {}, point.names
            ):
                if len(page) == limit:
                    return self._records(page, with_payload, with_vector), point_id_from_key(
                        point.key
                    )
                page.append(point)
        return self._records(page, with_payload, with_vector), None

    def count(self, filter_: Any) -> int:
        """Exact number of points matching `filter_` (all points when None)."""
        if filter_ is None:
            return self._store.count_points()
        predicate = compile_filter(filter_)
        return sum(
            1
            for point in self._store.iter_points(None)
            if predicate(point_id_from_key(point.key), point.payload or {}, point.names)
        )

    def retrieve(
        self, ids: list[PointId], with_payload: PayloadSelector, with_vector: VectorSelector
    ) -> list[PointRecord]:
        keys = list(dict.fromkeys(point_key(point_id) for point_id in ids))
        points = [p for p in self._store.get_points(keys) if p is not None]
        return self._records(points, with_payload, with_vector)

    def search(self, request: SearchRequest) -> list[ScoredPoint]:
        distance = self.config.vectors[request.vector_name].distance
        query = request.vector.astype(np.float32)
        if distance is Distance.COSINE:
            query = normalize_rows(query.reshape(1, -1))[0]
        with self._visibility_lock.shared():
            if request.filter is not None:
                labels, scores = self._filtered_nearest(request, query, distance)
            else:
                labels, scores = self._nearest(request, query, distance)
            return self._scored_points(labels, scores, distance, request)

    def _nearest(
        self, request: SearchRequest, query: np.ndarray, distance: Distance
    ) -> tuple[list[int], np.ndarray]:
        """Best labels and their exact scores, best first; caller holds the visibility lock."""
        wanted_count = request.limit + request.offset
        index = self._indexes.get(request.vector_name)
        if index is None or request.is_exact:
            return self._exact_top(request.vector_name, query, distance, wanted_count)
        # The graph may hold the next batch's vectors before LMDB commits them; those are
        # dropped below, so ask for that many more.
        in_flight_count = max(0, index.live_count - self._store.count_vectors(request.vector_name))
        ef = request.hnsw_ef or max(index.ef_construct, 100)
        try:
            candidates = index.search(query, wanted_count + in_flight_count, ef)
        except RuntimeError as error:
            # hnswlib could not fill k (too many deleted nodes near the query): an exact
            # scan answers correctly, just slower.
            log.debug(
                "hnsw search fell back to exact vector=%r error=%s", request.vector_name, error
            )
            return self._exact_top(request.vector_name, query, distance, wanted_count)
        return self._rescore(request.vector_name, query, distance, candidates)

    def _filtered_nearest(
        self, request: SearchRequest, query: np.ndarray, distance: Distance
    ) -> tuple[list[int], np.ndarray]:
        """Nearest among points matching request.filter; caller holds the visibility lock."""
        predicate = compile_filter(request.filter)
        allowed = [
            point.label
            for point in self._store.iter_points(None)
            if request.vector_name in point.names
            and predicate(point_id_from_key(point.key), point.payload or {}, point.names)
        ]
        wanted_count = request.limit + request.offset
        index = self._indexes.get(request.vector_name)
        dim = self.config.vectors[request.vector_name].size
        is_small = len(allowed) * dim * 4 <= self.config.hnsw.full_scan_threshold * 1024
        if index is None or request.is_exact or is_small:
            return self._score_labels(request.vector_name, query, distance, allowed, wanted_count)
        allowed_set = frozenset(allowed)
        ef = request.hnsw_ef or max(index.ef_construct, 100)
        try:
            candidates = index.search(
                query, min(wanted_count, len(allowed)), ef, label_filter=allowed_set.__contains__
            )
        except RuntimeError as error:
            log.debug("filtered hnsw search fell back to exact error=%s", error)
            return self._score_labels(request.vector_name, query, distance, allowed, wanted_count)
        return self._rescore(request.vector_name, query, distance, candidates)

    def _score_labels(
        self, name: str, query: np.ndarray, distance: Distance, labels: list[int], wanted_count: int
    ) -> tuple[list[int], np.ndarray]:
        vectors = self._store.get_vectors(name, labels)
        kept = [(label, v) for label, v in zip(labels, vectors) if v is not None]
        if not kept:
            return [], np.empty(0, dtype=np.float32)
        scores = score_matrix(np.stack([v for _, v in kept]), query, distance)
        order = _best_order(scores, distance, min(wanted_count, len(kept)))
        return [kept[i][0] for i in order], scores[order]

    def _records(
        self, points: list[StoredPoint], with_payload: PayloadSelector, with_vector: VectorSelector
    ) -> list[PointRecord]:
        return [
            PointRecord(
                point_id_from_key(p.key),
                self._select_payload(p, with_payload),
                self._select_vectors(p, with_vector),
            )
            for p in points
        ]

    def _exact_top(
        self, name: str, query: np.ndarray, distance: Distance, wanted_count: int
    ) -> tuple[list[int], np.ndarray]:
        best_labels = np.empty(0, dtype=np.uint64)
        best_scores = np.empty(0, dtype=np.float32)
        dim = self.config.vectors[name].size
        for labels, matrix in self._store.iter_vectors(name, dim, EXACT_CHUNK_COUNT):
            scores = score_matrix(matrix, query, distance)
            best_labels = np.concatenate([best_labels, labels])
            best_scores = np.concatenate([best_scores, scores])
            order = _best_order(best_scores, distance, wanted_count)
            best_labels, best_scores = best_labels[order], best_scores[order]
        return best_labels.tolist(), best_scores

    def _rescore(
        self, name: str, query: np.ndarray, distance: Distance, labels: np.ndarray
    ) -> tuple[list[int], np.ndarray]:
        label_list = [int(label) for label in labels]
        vectors = self._store.get_vectors(name, label_list)
        # Labels not committed to LMDB yet have no vector there: not visible, drop them.
        kept = [(label, vector) for label, vector in zip(label_list, vectors) if vector is not None]
        if not kept:
            return [], np.empty(0, dtype=np.float32)
        matrix = np.stack([vector for _, vector in kept])
        scores = score_matrix(matrix, query, distance)
        order = _best_order(scores, distance, len(kept))
        return [kept[i][0] for i in order], scores[order]

    def _scored_points(
        self, labels: list[int], scores: np.ndarray, distance: Distance, request: SearchRequest
    ) -> list[ScoredPoint]:
        threshold = request.score_threshold
        points = self._store.get_points_by_label(labels)
        result = []
        for point, score in zip(points, scores.tolist()):
            if point is None:
                continue
            if threshold is not None and not _passes_threshold(score, threshold, distance):
                continue
            result.append((point, score))
        result = result[request.offset : request.offset + request.limit]
        return [
            ScoredPoint(
                point_id_from_key(p.key),
                p.version,
                score,
                self._select_payload(p, request.with_payload),
                self._select_vectors(p, request.with_vector),
            )
            for p, score in result
        ]

    def _select_payload(self, point: StoredPoint, selector: PayloadSelector) -> dict | None:
        if not selector.is_enabled:
            return None
        payload = point.payload or {}
        if selector.include is not None:
            return select_keys(payload, selector.include)
        if selector.exclude is not None:
            return drop_keys(payload, selector.exclude)
        return payload

    def _select_vectors(
        self, point: StoredPoint, selector: VectorSelector
    ) -> dict[str, np.ndarray] | None:
        if not selector.is_enabled:
            return None
        names = [n for n in point.names if selector.names is None or n in selector.names]
        return {name: self._store.get_vectors(name, [point.label])[0] for name in names}


# The classes a filter is built of, for decoding filters kept in WAL records.
FILTER_TYPES = {name: value for name, value in vars(filters).items() if isinstance(value, type)}


def compile_filter(filter_: Any) -> filters.Checker:
    """A predicate (point_id, payload dict, vector_names) -> bool for one filter."""
    return filters.compile_filter(filter_)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Unit-length rows, as Qdrant stores Cosine vectors; zero rows stay zero."""
    matrix = matrix.astype(np.float32, copy=False)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    # Qdrant leaves zero vectors and ones already within 1e-6 of unit length as they are.
    is_kept = (norms == 0) | (np.abs(norms - 1.0) < 1e-6)
    return np.where(is_kept, matrix, matrix / np.where(norms == 0, 1, norms)).astype(np.float32)


def score_matrix(matrix: np.ndarray, query: np.ndarray, distance: Distance) -> np.ndarray:
    """Qdrant's score of each row against query: similarity or distance."""
    if distance in (Distance.COSINE, Distance.DOT):
        return matrix @ query
    if distance is Distance.EUCLID:
        return np.sqrt(np.sum((matrix - query) ** 2, axis=1, dtype=np.float32))
    return np.sum(np.abs(matrix - query), axis=1, dtype=np.float32)


def select_keys(payload: dict, keys: tuple[str, ...]) -> dict:
    """Only the given keys (dotted paths reach into nested objects)."""
    result: dict = {}
    for key in keys:
        value, is_found = _lookup_path(payload, key.split("."))
        if is_found:
            _set_path(result, key.split("."), value)
    return result


def drop_keys(payload: dict, keys: tuple[str, ...]) -> dict:
    result = json.loads(json.dumps(payload))
    for key in keys:
        parts = key.split(".")
        parent, is_found = _lookup_path(result, parts[:-1])
        if is_found and isinstance(parent, dict):
            parent.pop(parts[-1], None)
    return result


def _lookup_path(payload: dict, parts: list[str]) -> tuple[object, bool]:
    value: object = payload
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None, False
        value = value[part]
    return value, True


def _set_path(target: dict, parts: list[str], value: object) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _best_order(scores: np.ndarray, distance: Distance, count: int) -> np.ndarray:
    keys = -scores if distance.is_higher_better else scores
    if count < len(keys):
        part = np.argpartition(keys, count - 1)[:count]
        return part[np.argsort(keys[part], kind="stable")]
    return np.argsort(keys, kind="stable")


def _passes_threshold(score: float, threshold: float, distance: Distance) -> bool:
    # Qdrant's comparison is strict both ways (Distance::check_threshold).
    return score > threshold if distance.is_higher_better else score < threshold
