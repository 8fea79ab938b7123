"""The reads only the universal query (engine/query/universal.py) and the distance matrix make, on top of
`Reader`: exact scans scoring every matching point, the stored vectors of example points,
sparse search, payloads by id, and (id, score) hits turned into answers.

Sparse vectors are scored by dot product through the inverted index (engine/store/store.py): the postings
of the query's indices are summed per label in one read transaction, the filter is checked on
the points that scored; with `modifier: idf` the query's values are weighted first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import numpy as np

from engine.filters.conditions import Filter
from engine.ops import (
    CollectionConfig,
    PayloadSelector,
    PointId,
    ScoredPoint,
    SparseModifier,
    SparseVector,
    VectorSelector,
    point_id_from_key,
    point_key,
)
from engine.query.reads import EXACT_CHUNK_COUNT, Reader
from engine.store.payload_index import IndexSpec
from engine.store.store import StoredPoint
from engine.vectors.scores import idf


class QueryReader(Reader):
    """A collection's Reader with the reads of the universal query; any thread.

    `config` names the vectors as applied. `acknowledged_config`, set by the collection,
    gives its config as acknowledged: with a name a vector-name op added before it was
    applied (engine/query/universal.py finds nothing under such a name)."""

    acknowledged_config: Callable[[], CollectionConfig] | None = None

    def sparse_search(
        self,
        name: str,
        query: SparseVector,
        filter_: Filter | None,
        ids: list[PointId] | None,
        limit: int,
        idf_corpus: Filter | None = None,
    ) -> list[tuple[PointId, float]]:
        """Dot product of `query` with the points' sparse vector `name` through the inverted
        index, best `limit` first: only points sharing an index with the query score (as
        Qdrant). With `modifier: idf` the query's values are weighted by
        ln((n - df + 0.5) / (df + 0.5) + 1), n the points with a vector `name`, df those
        having the index (Qdrant's `lib/segment` and qdrant-client's local mode); with
        `idf_corpus` (the search's `params.idf.corpus`), n and df count only the points
        matching it, as Qdrant 1.19's corpus statistics do, whatever `filter_` retrieves.
        `ids` restricts the points (a prefetch's candidates); `filter_` is checked on each."""
        predicate = None if filter_ is None else self._compile(filter_)
        is_idf = self.config.sparse_vectors[name].modifier is SparseModifier.IDF
        with self._visibility_lock.shared():
            corpus = None
            if is_idf and idf_corpus is not None:
                corpus = self._corpus_labels(name, idf_corpus)
            points, scores = self._store.sparse_scores(name, query, idf if is_idf else None, corpus)
        allowed = None if ids is None else set(map(point_key, ids))
        kept = [
            (point, score)
            for point, score in zip(points, scores.tolist())
            if point is not None
            and (allowed is None or point.key in allowed)
            and (
                predicate is None
                or predicate(point_id_from_key(point.key), point.payload or {}, point.names)
            )
        ]
        kept.sort(key=lambda pair: (-pair[1], pair[0].key))
        return [(point_id_from_key(point.key), score) for point, score in kept[:limit]]

    def _corpus_labels(self, name: str, corpus: Filter) -> np.ndarray:
        """Sorted labels of the points matching `corpus` that have sparse vector `name` (a
        scan of the payloads; the caller holds the visibility lock)."""
        matches = self._compile(corpus)
        labels = [
            point.label
            for point in self._store.iter_points(None)
            if name in point.names
            and matches(point_id_from_key(point.key), point.payload or {}, point.names)
        ]
        return np.sort(np.asarray(labels, dtype=np.uint64))

    def example_vectors(self, ids: list[PointId], name: str) -> dict[PointId, np.ndarray | None]:
        """Each existing point's stored vector `name` (None if it has none); absent ids are
        left out. Stored Cosine vectors are unit length, but uint8 ones (kept as given:
        engine/vectors/scores.py)."""
        return self._stored_vectors(ids, name, self._store.get_vectors)

    def sparse_vectors_of(self, ids: list[PointId], name: str) -> dict[PointId, Any]:
        """Each existing point's sparse vector `name` (None if it has none)."""
        return self._stored_vectors(ids, name, self._store.get_sparse)

    def _stored_vectors(
        self, ids: list[PointId], name: str, fetch: Callable[[str, list[int]], list[Any]]
    ) -> dict[PointId, Any]:
        found = self._store.get_points([point_key(point_id) for point_id in ids])
        points = [point for point in found if point is not None]
        having = [point for point in points if name in point.names]
        # One read of every vector at once, not a transaction per point.
        vectors = dict(zip((p.key for p in having), fetch(name, [p.label for p in having])))
        return {point_id_from_key(p.key): vectors.get(p.key) for p in points}

    def score_points(
        self,
        name: str,
        score: Callable[[Any], np.ndarray],
        is_higher_better: bool,
        filter_: Filter | None,
        ids: list[PointId] | None,
        limit: int,
    ) -> list[tuple[PointId, float]]:
        """Exact scan: `score(matrix)` of every point with vector `name` (or only `ids`)
        matching `filter_`, best `limit` first. For a sparse `name`, `score` gets a list of
        SparseVectors instead of a matrix; for a multivector, a list of matrices."""
        is_sparse = name in self.config.sparse_vectors
        # A multivector's `score` takes a list of matrices, read from LMDB (no read-view cache).
        is_listed = is_sparse or name in self._store.multivector_dims
        if ids is None and not is_sparse and is_listed:
            found = self._score_every_matrix(name, score, is_higher_better, filter_, limit)
            if found is not None:
                return found
        if ids is not None and filter_ is None and not is_listed:
            return self._score_listed(name, score, is_higher_better, ids, limit)
        predicate = None if filter_ is None else self._compile(filter_)
        with self._visibility_lock.shared():
            if ids is None:
                points: list[StoredPoint | None] = list(self._store.iter_points(None))
            else:
                points = self._store.get_points(list(dict.fromkeys(map(point_key, ids))))
            kept = [
                point
                for point in points
                if point is not None
                and name in point.names
                and (
                    predicate is None
                    or predicate(point_id_from_key(point.key), point.payload or {}, point.names)
                )
            ]
            scored: list[StoredPoint] = []
            all_scores = []
            fetch = self._store.get_sparse if is_sparse else self._store.get_vectors
            for start in range(0, len(kept), EXACT_CHUNK_COUNT):
                chunk = kept[start : start + EXACT_CHUNK_COUNT]
                vectors = fetch(name, [point.label for point in chunk])
                # A point deleted since it was read has no vector any more: leave it out.
                pairs = [(p, v) for p, v in zip(chunk, vectors) if v is not None]
                if pairs:
                    scored.extend(p for p, _ in pairs)
                    found = [v for _, v in pairs]
                    all_scores.append(score(found if is_listed else np.stack(found)))
        if not scored:
            return []
        kept = scored
        scores = np.concatenate(all_scores).astype(np.float32)
        keys = -scores if is_higher_better else scores
        order = np.argsort(keys, kind="stable")[:limit]
        return [(point_id_from_key(kept[i].key), float(scores[i])) for i in order]

    def _score_every_matrix(
        self,
        name: str,
        score: Callable[[Any], np.ndarray],
        is_higher_better: bool,
        filter_: Filter | None,
        limit: int,
    ) -> list[tuple[PointId, float]] | None:
        """`score_points` over every point having multivector `name`, by label: unfiltered,
        its matrices in one cursor and no point decoded; filtered, those of the labels
        matching the filter. Equal scores in point id order, as the scan of the points in key
        order gives them. None (then: that scan) when the collection holds UUID points,
        whose keys the label table cannot order."""
        table = self._view.labels
        with self._visibility_lock.shared():
            if table.has_uuid_points:
                return None
            label_parts, score_parts = [], []
            # Closed at once if `score` raises: the cursor's read transaction is not left open.
            with closing(self._matrix_chunks(name, filter_)) as chunks:
                for labels, matrices in chunks:
                    pairs = [(label, m) for label, m in zip(labels, matrices) if m is not None]
                    if pairs:
                        label_parts.append(np.fromiter((label for label, _ in pairs), np.int64))
                        score_parts.append(score([m for _, m in pairs]))
            if not label_parts:
                return []
            labels = np.concatenate(label_parts)
            scores = np.concatenate(score_parts).astype(np.float32)
            ids = table.sort_keys_of(labels)
            assert ids is not None, "no UUID point can appear under the shared lock"
            keys = -scores if is_higher_better else scores
            order = np.lexsort((ids, keys))[:limit]
            return list(zip(ids[order].tolist(), scores[order].tolist()))

    def _matrix_chunks(
        self, name: str, filter_: Filter | None
    ) -> Iterator[tuple[list[int], list[np.ndarray | None]]]:
        """(labels, matrices) of multivector `name` in chunks: every one through one cursor,
        or those of the labels matching `filter_` (None where a point lacks the vector).
        Caller holds the visibility lock."""
        if filter_ is None:
            yield from self._store.iter_matrices(name, EXACT_CHUNK_COUNT)
            return
        allowed = self._labels_matching(filter_, name).astype(np.int64).tolist()
        for start in range(0, len(allowed), EXACT_CHUNK_COUNT):
            part = allowed[start : start + EXACT_CHUNK_COUNT]
            yield part, self._store.get_vectors(name, part)

    def _labels_matching(self, filter_: Filter, name: str) -> np.ndarray:
        """Labels of the points matching `filter_` (some may lack vector `name`): the payload
        indexes' candidates, real or in memory, their payloads checked unless the indexes
        answer the filter exactly; else every point's payload. Caller holds the lock."""
        plan = self._plan_filter(filter_)
        if plan.lookup is not None:
            found = self._indexed_candidates(filter_, plan.lookup, plan.specs, plan.is_exact)
            if found is not None:
                return found
        return self._matching_labels(filter_, name)

    def _score_listed(
        self,
        name: str,
        score: Callable[[Any], np.ndarray],
        is_higher_better: bool,
        ids: list[PointId],
        limit: int,
    ) -> list[tuple[PointId, float]]:
        """score_points of listed points (a prefetch's candidates: the rerank) with dense
        vectors and no filter, from the read view: no LMDB read. Equal scores keep the
        order of `ids`, as the LMDB path does."""
        keys = list(dict.fromkeys(map(point_key, ids)))
        table = self._view.labels
        with self._visibility_lock.shared():
            found = [(key, table.label_of(key)) for key in keys]
            listed = [(key, label) for key, label in found if label is not None]
            labels, matrix = self._view.vectors[name].vectors(
                np.fromiter((label for _, label in listed), dtype=np.int64, count=len(listed))
            )
            if len(labels) == 0:
                return []
            scores = np.asarray(score(matrix), dtype=np.float32)
        key_of_label = {label: key for key, label in listed}
        keys_scored = [key_of_label[label] for label in labels.tolist()]
        order = np.argsort(-scores if is_higher_better else scores, kind="stable")[:limit]
        return [(point_id_from_key(keys_scored[i]), float(scores[i])) for i in order]

    def payload_index_specs(self) -> dict[str, IndexSpec]:
        """The payload indexes, by field name (a formula reads an indexed field's values as
        its index holds them, engine/query/formula_values.py)."""
        return self._store.index_specs

    def payload_points(
        self, filter_: Filter | None, ids: list[PointId] | None
    ) -> list[tuple[PointId, dict[str, Any]]]:
        """(id, payload) of every point (or only `ids`) matching `filter_`, in id order."""
        predicate = None if filter_ is None else self._compile(filter_)
        if ids is None:
            points: list[StoredPoint | None] = list(self._store.iter_points(None))
        else:
            points = self._store.get_points(sorted(set(map(point_key, ids))))
        return [
            (point_id_from_key(point.key), point.payload or {})
            for point in points
            if point is not None
            and (
                predicate is None
                or predicate(point_id_from_key(point.key), point.payload or {}, point.names)
            )
        ]

    def scored_points(
        self,
        hits: list[tuple[PointId, float]],
        with_payload: PayloadSelector,
        with_vector: VectorSelector,
    ) -> list[ScoredPoint]:
        """ScoredPoints for (id, score) pairs, in order; points deleted meanwhile are left out.
        Without payloads or vectors wanted, versions come from the read view (no LMDB read)."""
        if not with_payload.is_enabled and not with_vector.is_enabled:
            table = self._view.labels
            with self._visibility_lock.shared():
                if table.damaged_count == 0:
                    labels = [table.label_of(point_key(point_id)) for point_id, _ in hits]
                    return [
                        ScoredPoint(point_id, table.version_of(label), score, None, None)
                        for (point_id, score), label in zip(hits, labels)
                        if label is not None
                    ]
        stored = self._store.get_points([point_key(point_id) for point_id, _ in hits])
        return [
            ScoredPoint(
                point_id,
                point.version,
                score,
                self._select_payload(point, with_payload),
                self._select_vectors(point, with_vector),
            )
            for (point_id, score), point in zip(hits, stored)
            if point is not None
        ]
