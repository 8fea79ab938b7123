"""Live labels in memory: label -> point key and version, point key -> label.

Owns: `LabelTable`, which the read path asks instead of LMDB's `labels` and `points`
databases when it only needs a hit's id and version, or the label of a point key.
Not here: payloads and vectors' names (LMDB; read only when a request asks for them).

Labels are never reused (engine/store/store.py), so the table is indexed by label: a list of
keys (None once the label died), an array of versions and one of integer point ids (a hit's id
without decoding its key). Memory per live point: the dict entry and its bytes key (about 110
bytes together) and 25 bytes per label ever born.
"""

from __future__ import annotations

import sys

import numpy as np

from engine.ops import PointId, point_id_from_key

INITIAL_CAPACITY = 1024
DAMAGED_VERSION = -1  # the point's value failed its checksum: read it from LMDB, which raises


class LabelTable:
    def __init__(self) -> None:
        self._keys: list[bytes | None] = []  # by label
        self._versions = np.zeros(INITIAL_CAPACITY, dtype=np.int64)  # by label
        self._live = np.zeros(INITIAL_CAPACITY, dtype=bool)  # by label
        # By label: the point's id when it is an integer (its key is 0x00 + u64). UUID points
        # are counted, and their ids decoded from their keys.
        self._int_ids = np.zeros(INITIAL_CAPACITY, dtype=np.uint64)
        self._uuid_count = 0  # live labels of UUID points
        self._label_of: dict[bytes, int] = {}
        self.live_count = 0
        self.damaged_count = 0  # live labels with DAMAGED_VERSION
        # Bumped by the applier with every batch it applies (under the visibility lock):
        # what readers cache from the view is valid while it stays the same.
        self.generation = 0

    def add(self, label: int, key: bytes, version_op_id: int) -> None:
        """A label born for point `key` (its previous label, if any, is killed separately)."""
        keys = self._keys
        if label >= len(keys):
            keys.extend([None] * (label + 1 - len(keys)))
        if label >= len(self._versions):
            capacity = max(label + 1, 2 * len(self._versions))
            versions = np.zeros(capacity, dtype=np.int64)
            versions[: len(self._versions)] = self._versions
            live = np.zeros(capacity, dtype=bool)
            live[: len(self._live)] = self._live
            int_ids = np.zeros(capacity, dtype=np.uint64)
            int_ids[: len(self._int_ids)] = self._int_ids
            self._versions, self._live, self._int_ids = versions, live, int_ids
        assert keys[label] is None, f"label {label} born twice"
        keys[label] = key
        self._versions[label] = version_op_id
        self._live[label] = True
        if key[0] == 0:
            self._int_ids[label] = int.from_bytes(key[1:9], "big")
        else:
            self._uuid_count += 1
        self._label_of[key] = label
        self.live_count += 1
        self.damaged_count += version_op_id == DAMAGED_VERSION

    def set_version(self, label: int, version_op_id: int) -> None:
        """A payload edit wrote the point again under the same label."""
        assert self._keys[label] is not None, f"label {label} is not live"
        self.damaged_count -= self._versions[label] == DAMAGED_VERSION
        self._versions[label] = version_op_id

    def kill(self, label: int) -> None:
        key = self._keys[label]
        assert key is not None, f"label {label} killed twice"
        self._keys[label] = None
        self._live[label] = False
        self._uuid_count -= key[0] != 0
        self.damaged_count -= self._versions[label] == DAMAGED_VERSION
        if self._label_of.get(key) == label:  # the point may already hold a newer label
            del self._label_of[key]
        self.live_count -= 1

    def key_of(self, label: int) -> bytes | None:
        """The point key of a live label; None for a dead or not yet committed one."""
        return self._keys[label] if label < len(self._keys) else None

    def ids_of(self, labels: np.ndarray) -> list[PointId]:
        """The point id of each live label (int64 array), in bulk when every id is an
        integer."""
        if self._uuid_count == 0:
            return self._int_ids[labels].tolist()
        keys = self._keys
        return [point_id_from_key(keys[label]) for label in labels.tolist()]  # type: ignore[arg-type]

    @property
    def has_uuid_points(self) -> bool:
        return self._uuid_count > 0

    def sort_keys_of(self, labels: np.ndarray) -> np.ndarray | None:
        """Each live label's point id as a uint64 when every id is an integer: they sort as
        the points' LMDB keys do. None when the collection holds a UUID point."""
        return None if self._uuid_count else self._int_ids[labels]

    def version_of(self, label: int) -> int:
        """The op that wrote this version of the point; DAMAGED_VERSION if its value is
        damaged (the caller then reads the point from LMDB, which raises)."""
        return int(self._versions[label])

    def versions_of(self, labels: np.ndarray) -> np.ndarray:
        """version_of each label (int64 array of labels the table holds)."""
        return self._versions[labels]

    def label_of(self, key: bytes) -> int | None:
        return self._label_of.get(key)

    def labels_of(self, keys: list[bytes] | set[bytes]) -> np.ndarray:
        """Labels of the keys that are live points (uint64), in the keys' order."""
        get = self._label_of.get
        found = [label for label in map(get, keys) if label is not None]
        return np.fromiter(found, dtype=np.uint64, count=len(found))

    def is_live(self, labels: np.ndarray) -> np.ndarray:
        """A bool per label (int64 array): whether it is live."""
        is_known = labels < len(self._live)
        result = np.zeros(len(labels), dtype=bool)
        result[is_known] = self._live[labels[is_known]]
        return result

    def is_current(self, labels: np.ndarray, versions: np.ndarray) -> np.ndarray:
        """A bool per (label, version) pair: the label is live and at that version."""
        is_known = labels < len(self._live)
        result = np.zeros(len(labels), dtype=bool)
        known = labels[is_known]
        result[is_known] = self._live[known] & (self._versions[known] == versions[is_known])
        return result

    @property
    def label_space(self) -> int:
        """One past the highest label the table has room for: labels are below it."""
        return len(self._live)

    @property
    def live_mask(self) -> np.ndarray:
        """By label: live or not (labels past its end are not). Read it under the lock."""
        return self._live

    def memory_bytes(self) -> int:
        # The dict's own table plus each key's bytes object; the list's slots; the array.
        key_bytes = self.live_count * (sys.getsizeof(b"") + 17)
        return (
            sys.getsizeof(self._label_of)
            + key_bytes
            + sys.getsizeof(self._keys)
            + self._versions.nbytes
            + self._live.nbytes
            + self._int_ids.nbytes
        )
