"""The read side of one collection: retrieve, scroll, count and nearest-neighbour search.

Owns: how reads see a consistent state (LMDB read transactions, and the visibility lock held
shared across a graph search and the LMDB reads that follow it), exact scoring, payload and
vector selection, filtered search planning.
Not here: writes (collection.py, engine/store/mutations.py), the graphs themselves (engine/vectors/hnsw.py), the reads
only the universal query and the distance matrix make (engine/query/universal_reads.py).

Scores follow Qdrant: Cosine and Dot are similarities (higher is better), Euclid and
Manhattan distances (lower is better). Hits from the graph are rescored exactly from LMDB,
so graph and exact search report the same numbers.

Filtered reads (scroll, count, search): the planner (engine/store/planner.py) turns the filter into payload
index lookups selecting a superset of the matching points; the whole filter is then checked on
those candidates only. A filter the indexes cannot narrow scans every payload. A filtered
search first asks the indexes how many points the filter may match (entry counts, no point
read): if that is more vectors than the collection's `full_scan_threshold` (KiB, as Qdrant),
the graph is searched unfiltered for wanted / selectivity x 2 nodes and the filter checked on
those only, deepening while too few match. Otherwise (or without an estimate, or when the
deepening would visit a quarter of the graph) the matching points are found first: if their
vectors are under the threshold they are scored exactly with numpy, else the graph is searched
with the matching labels as its filter. tools/bench_filtered.py measured the choices.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

from engine import limits
from engine.filters import conditions as filters
from engine.filters import text_match
from engine.filters.payload_path import PayloadPath
from engine.locks import ReadWriteLock
from engine.logfmt import log_event
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
from engine.query import facets, payload_selection
from engine.store import payload_index, planner
from engine.store.store import Store, StoredPoint
from engine.vectors.hnsw import VectorIndex
from engine.vectors.scores import best_order, normalize_rows, passes_threshold, score_matrix

R = TypeVar("R")
log = logging.getLogger(__name__)

EXACT_CHUNK_COUNT = 16_384  # vectors scored per numpy call in an exact search
# Broad filtered search: fetch this many times wanted / selectivity from the graph, deepen
# 4x while too few match, and give up (candidate set instead) past this share of the graph.
OVERFETCH_FACTOR = 2.0
POST_FILTER_SHARE_MAX = 0.25
ESTIMATE_STEPS_MAX = 10_000  # distinct index values counted for one estimate


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

    def _compile(self, filter_: filters.Filter) -> filters.Checker:
        """compile_filter_with_indexes with the payload indexes as of the last applied op."""
        return compile_filter_with_indexes(filter_, self._store.index_specs)

    def scroll(
        self,
        filter_: filters.Filter | None,
        limit: int,
        offset: PointId | None,
        with_payload: PayloadSelector,
        with_vector: VectorSelector,
    ) -> tuple[list[PointRecord], PointId | None]:
        """Points in id order from `offset` (inclusive) matching `filter_`, and the id the
        next page starts at (None on the last page)."""
        assert 1 <= limit <= limits.SCROLL_LIMIT_MAX, limit
        predicate = None if filter_ is None else self._compile(filter_)
        start_key = None if offset is None else point_key(offset)
        page: list[StoredPoint] = []
        for point in self._candidates(filter_, start_key):
            if predicate is None or predicate(
                point_id_from_key(point.key), point.payload or {}, point.names
            ):
                if len(page) == limit:
                    return self._records(page, with_payload, with_vector), point_id_from_key(
                        point.key
                    )
                page.append(point)
        return self._records(page, with_payload, with_vector), None

    def count(self, filter_: filters.Filter | None) -> int:
        """Exact number of points matching `filter_` (all points when None)."""
        if filter_ is None:
            return self._store.count_points()
        predicate = self._compile(filter_)
        return sum(
            1
            for point in self._candidates(filter_, None)
            if predicate(point_id_from_key(point.key), point.payload or {}, point.names)
        )

    def _candidates(
        self, filter_: filters.Filter | None, start_key: bytes | None
    ) -> Iterable[StoredPoint]:
        """Points from start_key on, in key order, that may match filter_ (all when None):
        the planner's index lookups when they narrow it, else every point."""
        if filter_ is not None:
            specs = self._store.index_specs
            lookup = planner.plan(filter_, specs)
            if lookup is not None:
                points = self._store.iter_candidate_points(
                    lookup, specs, start_key, limits.PLAN_CANDIDATES_MAX
                )
                if points is not None:
                    return points
        return self._store.iter_points(start_key)

    def retrieve(
        self, ids: list[PointId], with_payload: PayloadSelector, with_vector: VectorSelector
    ) -> list[PointRecord]:
        keys = list(dict.fromkeys(point_key(point_id) for point_id in ids))
        points = [p for p in self._store.get_points(keys) if p is not None]
        return self._records(points, with_payload, with_vector)

    def search(self, request: SearchRequest) -> list[ScoredPoint]:
        distance = self.config.vectors[request.vector_name].distance
        with self._visibility_lock.shared():
            labels, scores = self._searched_labels(request, distance)
            return self._scored_points(labels, scores, distance, request)

    def search_hits(self, request: SearchRequest) -> list[tuple[PointId, float]]:
        """`search` as (id, score) pairs: labels map to ids through the labels database
        only, so no point (payload) is decoded; for callers that fetch the points later."""
        distance = self.config.vectors[request.vector_name].distance
        with self._visibility_lock.shared():
            labels, scores = self._searched_labels(request, distance)
            keys = self._store.point_keys_of_labels(labels)
        return self._hits(keys, scores, distance, request)

    def search_hits_many(self, requests: list[SearchRequest]) -> list[list[tuple[PointId, float]]]:
        """`search_hits` of each request; unfiltered graph searches of the same vector, k and
        ef go to hnswlib together (one knn_query over the matrix of queries)."""
        results = self._searched_many(requests, self._keyed_hits)
        return [
            self.search_hits(request) if hits is None else hits
            for request, hits in zip(requests, results)
        ]

    def search_many(self, requests: list[SearchRequest]) -> list[list[ScoredPoint] | Exception]:
        """`search` of each request (concurrent searches, coalesced): graph searches grouped
        as in `search_hits_many`. A request that fails gives its error, the others their
        points."""
        results: list[list[ScoredPoint] | Exception | None]
        results = list(self._searched_many(requests, self._scored_points))
        for position, request in enumerate(requests):
            if results[position] is None:
                try:
                    results[position] = self.search(request)
                except Exception as error:  # noqa: BLE001 - handed to that request's caller
                    results[position] = error
        return results  # type: ignore[return-value]  # no None is left

    def _searched_many(
        self,
        requests: list[SearchRequest],
        finish: Callable[[list[int], np.ndarray, Distance, SearchRequest], R],
    ) -> list[R | None]:
        """`finish(labels, scores, ...)` of every plain graph search that shares a vector, k
        and ef with another request, searched together; None for the rest."""
        results: list[R | None] = [None] * len(requests)
        groups: dict[tuple[str, int, int | None], list[int]] = {}
        for position, request in enumerate(requests):
            is_graph_search = request.filter is None and not request.is_exact
            if is_graph_search and request.vector_name in self._indexes:
                key = (request.vector_name, request.limit + request.offset, request.hnsw_ef)
                groups.setdefault(key, []).append(position)
        for (name, wanted_count, hnsw_ef), positions in groups.items():
            if len(positions) < 2:
                continue
            index = self._indexes[name]
            distance = self.config.vectors[name].distance
            queries = np.stack([requests[p].vector for p in positions]).astype(np.float32)
            if distance is Distance.COSINE:
                queries = normalize_rows(queries)
            ef = hnsw_ef or max(index.ef_construct, 100)
            with self._visibility_lock.shared():
                try:
                    rows = index.search_many(queries, wanted_count + index.pending_count, ef)
                except RuntimeError:
                    continue  # some row can't be filled: each request takes its own path
                for position, query, row in zip(positions, queries, rows):
                    labels, scores = self._rescore(name, query, distance, row)
                    results[position] = finish(labels, scores, distance, requests[position])
        return results

    def _keyed_hits(
        self, labels: list[int], scores: np.ndarray, distance: Distance, request: SearchRequest
    ) -> list[tuple[PointId, float]]:
        return self._hits(self._store.point_keys_of_labels(labels), scores, distance, request)

    def _hits(
        self,
        keys: list[bytes | None],
        scores: np.ndarray,
        distance: Distance,
        request: SearchRequest,
    ) -> list[tuple[PointId, float]]:
        threshold = request.score_threshold
        hits = [
            (point_id_from_key(key), score)
            for key, score in zip(keys, scores.tolist())
            if key is not None
            and (threshold is None or passes_threshold(score, threshold, distance))
        ]
        return hits[request.offset : request.offset + request.limit]

    def _searched_labels(
        self, request: SearchRequest, distance: Distance
    ) -> tuple[list[int], np.ndarray]:
        """Best labels and exact scores; caller holds the visibility lock."""
        query = request.vector.astype(np.float32)
        if distance is Distance.COSINE:
            query = normalize_rows(query.reshape(1, -1))[0]
        if request.filter is not None:
            return self._filtered_nearest(request, query, distance)
        return self._nearest(request, query, distance)

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
        in_flight_count = index.pending_count
        ef = request.hnsw_ef or max(index.ef_construct, 100)
        try:
            candidates = index.search(query, wanted_count + in_flight_count, ef)
        except RuntimeError as error:
            # hnswlib could not fill k (too many deleted nodes near the query): an exact
            # scan answers correctly, just slower.
            log_event(
                log,
                logging.DEBUG,
                "hnsw search fell back to exact",
                vector=request.vector_name,
                error=str(error),
            )
            return self._exact_top(request.vector_name, query, distance, wanted_count)
        return self._rescore(request.vector_name, query, distance, candidates)

    def _filtered_nearest(
        self, request: SearchRequest, query: np.ndarray, distance: Distance
    ) -> tuple[list[int], np.ndarray]:
        """Nearest among points matching request.filter; caller holds the visibility lock."""
        broad = self._broad_filtered_nearest(request, query, distance)
        if broad is not None:
            return broad
        predicate = self._compile(request.filter)
        allowed = [
            point.label
            for point in self._candidates(request.filter, None)
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
            log_event(
                log, logging.DEBUG, "filtered hnsw search fell back to exact", error=str(error)
            )
            return self._score_labels(request.vector_name, query, distance, allowed, wanted_count)
        return self._rescore(request.vector_name, query, distance, candidates)

    def _broad_filtered_nearest(
        self, request: SearchRequest, query: np.ndarray, distance: Distance
    ) -> tuple[list[int], np.ndarray] | None:
        """For a filter the indexes estimate as too broad to score exactly: search the graph
        unfiltered for wanted / selectivity * OVERFETCH_FACTOR nodes and check the filter on
        those only, deepening 4x until enough match. None: use the candidate-set path (no
        index estimate, a small estimate, or deepening would visit too much of the graph).

        Measured in tools/bench_filtered.py: building a 50 % candidate set costs far more
        than the search; this reads and checks only the nodes the graph returns."""
        name = request.vector_name
        index = self._indexes.get(name)
        if index is None or request.is_exact or index.live_count == 0:
            return None
        lookup = planner.plan(request.filter, self._store.index_specs)
        if lookup is None:
            return None
        estimate = self._store.estimate_candidates(lookup, ESTIMATE_STEPS_MAX)
        bytes_per_vector = self.config.vectors[name].size * 4
        if estimate is None or estimate * bytes_per_vector <= self._full_scan_bytes():
            return None
        wanted_count = request.limit + request.offset
        selectivity = min(1.0, estimate / index.live_count)
        fetch_count = max(wanted_count, math.ceil(wanted_count / selectivity * OVERFETCH_FACTOR))
        predicate = self._compile(request.filter)
        in_flight_count = index.pending_count
        while fetch_count <= index.live_count * POST_FILTER_SHARE_MAX:
            ef = max(request.hnsw_ef or max(index.ef_construct, 100), fetch_count)
            try:
                labels = index.search(query, fetch_count + in_flight_count, ef)
            except RuntimeError:
                return None
            points = self._store.get_points_by_label([int(label) for label in labels])
            kept = [
                point.label
                for point in points
                if point is not None
                and predicate(point_id_from_key(point.key), point.payload or {}, point.names)
            ]
            if len(kept) >= wanted_count:
                return self._rescore(name, query, distance, np.asarray(kept, dtype=np.uint64))
            fetch_count *= 4
        return None

    def _full_scan_bytes(self) -> int:
        return self.config.hnsw.full_scan_threshold * 1024

    def _score_labels(
        self, name: str, query: np.ndarray, distance: Distance, labels: list[int], wanted_count: int
    ) -> tuple[list[int], np.ndarray]:
        vectors = self._store.get_vectors(name, labels)
        kept = [(label, v) for label, v in zip(labels, vectors) if v is not None]
        if not kept:
            return [], np.empty(0, dtype=np.float32)
        scores = score_matrix(np.stack([v for _, v in kept]), query, distance)
        order = best_order(scores, distance, min(wanted_count, len(kept)))
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
            order = best_order(best_scores, distance, wanted_count)
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
        order = best_order(scores, distance, len(kept))
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
            if threshold is not None and not passes_threshold(score, threshold, distance):
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
            return payload_selection.include(payload, _paths(selector.include))
        if selector.exclude is not None:
            return payload_selection.exclude(payload, _paths(selector.exclude))
        return payload

    def _select_vectors(
        self, point: StoredPoint, selector: VectorSelector
    ) -> dict[str, np.ndarray] | None:
        if not selector.is_enabled:
            return None
        names = [n for n in point.names if selector.names is None or n in selector.names]
        return {
            name: self._store.get_sparse(name, [point.label])[0]
            if name in self.config.sparse_vectors
            else self._store.get_vectors(name, [point.label])[0]
            for name in names
        }

    def facet(
        self, key: PayloadPath, filter_: filters.Filter | None, limit: int
    ) -> list[tuple[Any, int]]:
        """The `limit` most frequent values at `key` among points matching `filter_`, as
        (value, count), count descending, then value ascending (Qdrant's FacetHit order).

        Exact: every matching payload is scanned (no payload index needed). Counted values
        are strings, integers and booleans, each once per point; an array counts each of its
        elements (one level). Across types, strings sort before integers before booleans,
        as Qdrant's FacetValue enum. With a keyword, integer, uuid or bool payload index on
        `key`, only values of that type are counted, as Qdrant counts from that index.
        """
        assert limit >= 1, limit
        predicate = None if filter_ is None else self._compile(filter_)
        spec = self._store.index_specs.get(str(key))
        matching = (
            point.payload or {}
            for point in self._candidates(filter_, None)
            if predicate is None
            or predicate(point_id_from_key(point.key), point.payload or {}, point.names)
        )
        schema_type = None if spec is None else spec.schema_type
        return facets.top_values(matching, key, schema_type, limit)


def compile_filter_with_indexes(
    filter_: filters.Filter, index_specs: Mapping[str, payload_index.IndexSpec] | None = None
) -> filters.Checker:
    """engine/filters/conditions.py `compile_filter`, with the payload indexes: a predicate
    (point_id, payload dict, vector_names) -> bool for one filter; `text` matches on fields with a text index in `index_specs` tokenize (engine/filters/text_match.py)."""
    tokenizers = {
        name: text_match.Tokenizer.from_params(spec.params)
        for name, spec in (index_specs or {}).items()
        if spec.schema_type == "text"
    }
    return filters.compile_filter(text_match.with_text_indexes(filter_, tokenizers))


@lru_cache(maxsize=1024)
def _paths(keys: tuple[str, ...]) -> tuple[PayloadPath, ...]:
    return tuple(PayloadPath.parse(key) for key in keys)
