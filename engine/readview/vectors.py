"""Dense vectors of one vector name in memory, for exact scoring without LMDB reads.

Owns: `VectorCache`, a float32 matrix with one row per live vector (rows of dead labels are
reused), and the label -> row map. Exact scoring of a filter's candidates, rescoring a
graph's hits and exact search all read rows from here.
Not here: the graph (engine/vectors/hnsw.py keeps its own copy inside hnswlib, which has no
bulk read that is fast: `get_items` measured 41 us for 10 labels and 5.6 ms for 1000, against
a few us here), scores (engine/vectors/scores.py).

Memory: dim x 4 bytes per live vector (as many as the vectors themselves), plus 8 bytes per
row and 4 per label ever born.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from engine.errors import CorruptionError

INITIAL_ROWS = 1024
LOAD_CHUNK_ROWS = 4_096  # rows copied into the matrix at once while loading
NO_ROW = -1


class VectorCache:
    def __init__(self, dim: int, rows_expected: int = 0) -> None:
        self.dim = dim
        rows = max(INITIAL_ROWS, rows_expected)
        self._matrix = np.zeros((rows, dim), dtype=np.float32)
        self._label_of_row = np.full(rows, -1, dtype=np.int64)  # -1: free row
        self._row_of = np.full(INITIAL_ROWS, NO_ROW, dtype=np.int32)  # by label
        self._free_rows: list[int] = []
        self._rows_used = 0  # rows below this have been handed out at least once
        self.live_count = 0
        # label -> checksum error of vectors that were damaged in LMDB when the view was
        # loaded: they have no row, and any read that needs them raises that error.
        self.damaged: dict[int, str] = {}

    def put(
        self, labels: Sequence[int] | np.ndarray, vectors: Sequence[np.ndarray] | np.ndarray
    ) -> None:
        """Rows for labels never seen before."""
        labels = np.asarray(labels, dtype=np.int64)
        count = len(labels)
        if count == 0:
            return
        matrix = vectors if isinstance(vectors, np.ndarray) else np.stack(vectors)
        assert matrix.shape == (count, self.dim), (matrix.shape, count, self.dim)
        reused = self._free_rows[-count:] if self._free_rows else []
        del self._free_rows[len(self._free_rows) - len(reused) :]
        fresh_count = count - len(reused)
        self._reserve_rows(self._rows_used + fresh_count)
        rows = np.concatenate(
            [
                np.asarray(reused, dtype=np.int64),
                np.arange(self._rows_used, self._rows_used + fresh_count, dtype=np.int64),
            ]
        )
        self._rows_used += fresh_count
        self._reserve_labels(int(labels.max()) + 1)
        assert (self._row_of[labels] == NO_ROW).all(), "a label put twice"
        self._matrix[rows] = matrix
        self._label_of_row[rows] = labels
        self._row_of[labels] = rows
        self.live_count += count

    def load(self, values: Iterator[tuple[int, bytes | None, str]]) -> None:
        """Fill an empty cache with (label, float32 bytes, error) rows, LOAD_CHUNK_ROWS at a
        time (a small chunk of copies beside the matrix; a damaged vector, bytes None, is
        noted in `damaged`)."""
        assert self._rows_used == 0, "load() fills an empty cache"
        labels: list[int] = []
        chunk: list[bytes] = []

        def flush() -> None:
            start = len(labels) - len(chunk)
            self._reserve_rows(len(labels))
            matrix = np.frombuffer(b"".join(chunk), dtype="<f4").reshape(len(chunk), self.dim)
            self._matrix[start : len(labels)] = matrix
            self._rows_used = len(labels)
            chunk.clear()

        for label, raw, error in values:
            if raw is None:
                self.damaged[label] = error
                continue
            labels.append(label)
            chunk.append(raw)
            if len(chunk) >= LOAD_CHUNK_ROWS:
                flush()
        if chunk:
            flush()
        if labels:
            array = np.asarray(labels, dtype=np.int64)
            self._reserve_labels(int(array.max()) + 1)
            self._label_of_row[: len(labels)] = array
            self._row_of[array] = np.arange(len(labels), dtype=np.int32)
        self.live_count = len(labels)

    def remove(self, labels: Sequence[int]) -> None:
        if self.damaged:
            for label in labels:
                self.damaged.pop(int(label), None)
            labels = [label for label in labels if self.rows_of(np.asarray([label]))[0] >= 0]
        labels = np.asarray(labels, dtype=np.int64)
        rows = self._row_of[labels]
        assert (rows != NO_ROW).all(), "removing a label that has no row"
        self._row_of[labels] = NO_ROW
        self._label_of_row[rows] = -1
        self._free_rows.extend(rows.tolist())
        self.live_count -= len(labels)

    def rows_of(self, labels: np.ndarray) -> np.ndarray:
        """Row of each label, NO_ROW where it has none (dead, not committed, no such vector)."""
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0 or labels.max() < len(self._row_of):  # the usual case, in one gather
            return self._row_of.take(labels).astype(np.int64)
        rows = np.full(len(labels), NO_ROW, dtype=np.int64)
        is_known = labels < len(self._row_of)
        rows[is_known] = self._row_of[labels[is_known]]
        return rows

    def vectors(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels that have a row, their vectors), in the given order."""
        labels = np.asarray(labels, dtype=np.int64)
        rows = self.rows_of(labels)
        has_row = rows != NO_ROW
        if self.damaged and not has_row.all():
            self._raise_if_damaged(labels[~has_row])
        # np.take, not fancy indexing: the same rows, gathered in 18 us instead of 27 for
        # 1 000 of 128 dims (308 against 569 for 10 000), measured.
        return labels[has_row], np.take(self._matrix, rows[has_row], axis=0)

    def stacked_vectors(self, labels: np.ndarray) -> np.ndarray | None:
        """The vectors of a (searches x hits) matrix of labels, shaped (searches, hits, dim),
        in one gather; None unless every label has a row (one of a batch not committed yet,
        or a damaged value: the caller then goes search by search)."""
        if self.damaged:
            return None
        rows = self.rows_of(labels.ravel())
        if (rows == NO_ROW).any():
            return None
        return np.take(self._matrix, rows, axis=0).reshape(*labels.shape, self.dim)

    def chunks(self, chunk_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(labels, vectors) of every live row, chunk by chunk (views: read them at once)."""
        if self.damaged:
            self._raise_if_damaged(np.fromiter(self.damaged, dtype=np.int64))
        for start in range(0, self._rows_used, chunk_rows):
            stop = min(start + chunk_rows, self._rows_used)
            labels = self._label_of_row[start:stop]
            is_live = labels >= 0
            if is_live.all():
                yield labels, self._matrix[start:stop]
            else:
                yield labels[is_live], self._matrix[start:stop][is_live]

    def _raise_if_damaged(self, labels: np.ndarray) -> None:
        for label in labels.tolist():
            if label in self.damaged:
                raise CorruptionError(self.damaged[label])

    def memory_bytes(self) -> int:
        return self._matrix.nbytes + self._label_of_row.nbytes + self._row_of.nbytes

    def _reserve_rows(self, needed: int) -> None:
        capacity = len(self._label_of_row)
        if needed <= capacity:
            return
        # 1.5x, not 2x: the matrix is as big as the vectors, and a copy holds both at once.
        capacity = max(needed, capacity + capacity // 2)
        matrix = np.zeros((capacity, self.dim), dtype=np.float32)
        matrix[: self._rows_used] = self._matrix[: self._rows_used]
        label_of_row = np.full(capacity, -1, dtype=np.int64)
        label_of_row[: self._rows_used] = self._label_of_row[: self._rows_used]
        self._matrix, self._label_of_row = matrix, label_of_row

    def _reserve_labels(self, needed: int) -> None:
        capacity = len(self._row_of)
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity)
        row_of = np.full(capacity, NO_ROW, dtype=np.int32)
        row_of[: len(self._row_of)] = self._row_of
        self._row_of = row_of
