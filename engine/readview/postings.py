"""Payload index entries in memory, by label: which live labels hold each indexed value.

Owns: `Postings`, a mirror of LMDB's `pindex` database (engine/store/payload_index.py) for
the fixed-width and keyword index types, with labels where LMDB has point keys, and the
resolution of a planner's `Lookup` tree to a sorted array of live labels.
Not here: which lookups a filter needs (engine/store/planner.py), what an index holds for a
payload (payload_index.index_values: the one definition both mirrors share).

Why: resolving a 1 % keyword filter over 100k points in LMDB (1000 dupsort entries, a set of
keys, sorting them, key -> label) took about 0.8 ms a search, more than the search itself.

Each posting is append-only (`array('q')` of (label, version) pairs, read as numpy without a
copy). Every write of a point row appends its entries under its label and the version it
writes: a new label for upserts and vector changes, the same label with a new version for a
payload edit (engine/store/mutations.py keeps the label then). An entry counts only while its
label is live and still at that version (the label table says), so nothing is ever removed
in place; a field whose postings hold twice the entries they held at their last build is
compacted by the applier. Text and geo indexes are not mirrored (their lookups are ranges
over composite keys): their lookups go to LMDB.

Memory: 16 bytes per (point version, value) entry, plus about 200 bytes per distinct value.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable

import numpy as np

from engine.filters.payload_path import PayloadPath
from engine.readview.labels import LabelTable
from engine.store import payload_index
from engine.store.payload_index import (
    AllOf,
    AnyOf,
    IndexSpec,
    KeySet,
    Lookup,
    ValueEqual,
    ValueRange,
)

MIRRORED_TYPES = ("keyword", "uuid", "integer", "float", "bool", "datetime")
RANGE_VALUES_MAX = 4_096  # distinct values one range may gather before LMDB does it instead
MASK_SORT_RATIO = 16  # more labels than label space / this: dedupe by marks, not a sort
RANGE_CACHE_MAX = 64  # ranges of one field whose labels are kept until the next batch
COMPACT_SLACK_ENTRIES = 4_096


class FieldPostings:
    """The postings of one indexed field."""

    def __init__(self, spec: IndexSpec, *, is_implicit: bool = False) -> None:
        self.spec = spec
        # Built by the view for searches on a field without a payload index; no LMDB index
        # backs it, so only the view's own lookups may use it.
        self.is_implicit = is_implicit
        self.path = PayloadPath.parse(spec.field_name)
        self.by_value: dict[bytes, array] = {}
        # Sorted distinct values, kept for the types whose lookups may be ranges.
        self.sorted_values: list[bytes] | None = (
            [] if spec.schema_type in ("integer", "float", "datetime") else None
        )
        self.entry_count = 0
        self.entries_at_build = 0
        # value -> (label table generation, current labels): a filter value searched again
        # before the next batch costs a dict lookup, not a mask and a sort of its posting.
        self._current_cache: dict[bytes, tuple[int, np.ndarray]] = {}
        self._range_cache: dict[tuple[bytes, bytes], tuple[int, np.ndarray]] = {}

    def add(self, value: bytes, label: int, version_op_id: int) -> None:
        posting = self.by_value.get(value)
        if posting is None:
            posting = self.by_value[value] = array("q")
            if self.sorted_values is not None:
                bisect.insort(self.sorted_values, value)
        posting.append(label)
        posting.append(version_op_id)
        self.entry_count += 1

    def add_many(self, value: bytes, labels: np.ndarray, versions: np.ndarray) -> None:
        """`add` of each (label, version) pair, in one array write."""
        pairs = np.empty((len(labels), 2), dtype=np.int64)
        pairs[:, 0], pairs[:, 1] = labels, versions
        posting = self.by_value.get(value)
        if posting is None:
            posting = self.by_value[value] = array("q")
            if self.sorted_values is not None:
                bisect.insort(self.sorted_values, value)
        posting.frombytes(pairs.tobytes())
        self.entry_count += len(labels)

    def labels_equal(self, value: bytes, table: LabelTable) -> np.ndarray:
        """Current labels holding `value`, sorted, unique (shared: never change it)."""
        cached = self._current_cache.get(value)
        if cached is not None and cached[0] == table.generation:
            return cached[1]
        posting = self.by_value.get(value)
        if posting is None:
            return np.empty(0, dtype=np.int64)
        labels = _current(np.frombuffer(posting, dtype=np.int64), table)
        labels.flags.writeable = False
        self._current_cache[value] = (table.generation, labels)
        return labels

    def labels_in_range(self, low: bytes, high: bytes, table: LabelTable) -> np.ndarray | None:
        """Current labels holding a value in [low, high], sorted, unique; None if the range
        spans more than RANGE_VALUES_MAX distinct values."""
        assert self.sorted_values is not None, self.spec
        cached = self._range_cache.get((low, high))
        if cached is not None and cached[0] == table.generation:
            return cached[1]
        start = bisect.bisect_left(self.sorted_values, low)
        stop = bisect.bisect_right(self.sorted_values, high)
        if stop - start > RANGE_VALUES_MAX:
            return None
        parts = [
            np.frombuffer(self.by_value[v], dtype=np.int64) for v in self.sorted_values[start:stop]
        ]
        if not parts:
            return np.empty(0, dtype=np.int64)
        labels = _current(np.concatenate(parts), table)
        labels.flags.writeable = False
        if len(self._range_cache) >= RANGE_CACHE_MAX:
            self._range_cache.clear()  # many distinct ranges: keep memory bounded, not an LRU
        self._range_cache[(low, high)] = (table.generation, labels)
        return labels

    def compacted(self, table: LabelTable) -> FieldPostings:
        """A copy with the current entries only (the applier swaps it in under the lock)."""
        fresh = FieldPostings(self.spec, is_implicit=self.is_implicit)
        for value in self.sorted_values if self.sorted_values is not None else self.by_value:
            pairs = np.frombuffer(self.by_value[value], dtype=np.int64).reshape(-1, 2)
            kept = pairs[table.is_current(pairs[:, 0], pairs[:, 1])]
            if len(kept):
                fresh.by_value[value] = array("q", kept.tobytes())
                fresh.entry_count += len(kept)
                if fresh.sorted_values is not None:
                    fresh.sorted_values.append(value)
        fresh.entries_at_build = fresh.entry_count
        return fresh


def _current(flat_pairs: np.ndarray, table: LabelTable) -> np.ndarray:
    """The labels of (label, version) pairs that are live at that version, sorted, unique."""
    pairs = flat_pairs.reshape(-1, 2)
    labels = pairs[table.is_current(pairs[:, 0], pairs[:, 1]), 0]
    label_space = table.label_space
    if len(labels) * MASK_SORT_RATIO < label_space:
        return np.unique(labels)
    # Many labels: a mark per label and a scan is O(n), where sorting them is O(n log n)
    # (90 000 labels of a broad range: about 0.5 ms against 5).
    is_member = np.zeros(label_space, dtype=bool)
    is_member[labels] = True
    return np.flatnonzero(is_member)


class Postings:
    """The mirrored payload indexes of one collection, by field name."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldPostings] = {}

    @staticmethod
    def is_mirrored(spec: IndexSpec) -> bool:
        return spec.schema_type in MIRRORED_TYPES

    def entries_of(
        self, payload: dict | None, fields: Iterable[FieldPostings]
    ) -> list[tuple[FieldPostings, bytes]]:
        """The entries a point version with `payload` adds to `fields` (computed before the
        commit, added after it with `add_entries`)."""
        if not payload:
            return []
        entries = []
        for field in fields:
            for value in payload_index.index_values(field.spec.schema_type, field.path, payload):
                entries.append((field, value))
        return entries

    def add_entries(self, entries: Iterable[tuple[int, int, FieldPostings, bytes]]) -> None:
        """(label, version op id, field, value) entries, in the order the batch wrote them."""
        for label, version_op_id, field, value in entries:
            if self.fields.get(field.spec.field_name) is field:  # not dropped meanwhile
                field.add(value, label, version_op_id)

    def resolve(self, lookup: Lookup, table: LabelTable) -> np.ndarray | None:
        """Live labels `lookup` selects, sorted, unique (int64); None if a field it reads is
        not mirrored (or a range is too wide): then LMDB resolves it."""
        if isinstance(lookup, KeySet):
            return np.unique(table.labels_of(list(lookup.keys)).astype(np.int64))
        if isinstance(lookup, ValueEqual | ValueRange):
            field = self.fields.get(lookup.field_name)
            if field is None:
                return None
            if isinstance(lookup, ValueEqual):
                return field.labels_equal(lookup.value, table)
            if field.sorted_values is None:
                return None
            return field.labels_in_range(lookup.low, lookup.high, table)
        parts = [self.resolve(part, table) for part in lookup.parts]
        if isinstance(lookup, AnyOf):
            if any(part is None for part in parts):
                return None
            if not parts:
                return np.empty(0, dtype=np.int64)
            return np.unique(np.concatenate(parts))  # type: ignore[arg-type]
        assert isinstance(lookup, AllOf), lookup
        if any(part is None for part in parts) or not parts:
            return None  # LMDB then resolves it: a superset would break planner.is_exact
        known = sorted(parts, key=len)  # type: ignore[arg-type]
        result = np.unique(known[0])
        for part in known[1:]:
            result = np.intersect1d(result, part)
        return result

    def estimate(self, lookup: Lookup) -> int | None:
        """An upper bound on the labels `lookup` selects (dead entries included); None as
        in `resolve`."""
        if isinstance(lookup, KeySet):
            return len(lookup.keys)
        if isinstance(lookup, ValueEqual | ValueRange):
            field = self.fields.get(lookup.field_name)
            if field is None:
                return None
            if isinstance(lookup, ValueEqual):
                posting = field.by_value.get(lookup.value)
                return 0 if posting is None else len(posting) // 2
            if field.sorted_values is None:
                return None
            start = bisect.bisect_left(field.sorted_values, lookup.low)
            stop = bisect.bisect_right(field.sorted_values, lookup.high)
            if stop - start > RANGE_VALUES_MAX:
                return None
            return sum(len(field.by_value[v]) // 2 for v in field.sorted_values[start:stop])
        parts = [self.estimate(part) for part in lookup.parts]
        if isinstance(lookup, AnyOf):
            return None if any(part is None for part in parts) else sum(parts)  # type: ignore[arg-type]
        if any(part is None for part in parts) or not parts:
            return None
        return min(parts)  # type: ignore[type-var]

    def memory_bytes(self) -> int:
        total = 0
        for field in self.fields.values():
            total += 16 * field.entry_count + 200 * len(field.by_value)
        return total
