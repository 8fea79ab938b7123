"""Recorded workloads for the power-loss tests, and the check every crash state must pass.

`Journal` drives a Catalog in process and notes, as event indexes of the files.Recorder, when
each collection create, delete and op was acknowledged. `record_workload` runs one workload
with the recorder (and LMDB notes) installed. `check_recovery` opens a Catalog on one crash
state and checks it against the journal:

- recovery starts (any exception fails the check, CorruptionError included: no state the
  model generates is impossible under fsync semantics, so refusing one is a bug);
- a collection whose create was acknowledged, and whose delete had not started, is there; one
  whose create had not started, or whose delete was acknowledged, is not; no other name is;
- a collection holds exactly the effect of its ops 0..m, for the m it recovered to, and m is
  at least its last acknowledged op: payloads and vectors equal a model replaying the ops,
  and the HNSW graph holds every point (nothing lost, nothing invented);
- the write path works: one more op gets op id m + 1 and is read back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import files
from engine.catalog import Catalog
from engine.limits import EngineSettings
from engine.ops import (
    CollectionConfig,
    DeletePoints,
    Distance,
    NamedVectors,
    Operation,
    PayloadSelector,
    PointId,
    UpsertPoints,
    VectorConfig,
    VectorSelector,
)
from tests.recovery.crash_states import CrashState, Snapshot, record_lmdb_states

ALL_PAYLOAD = PayloadSelector(True)
NO_PAYLOAD = PayloadSelector(False)
ALL_VECTORS = VectorSelector(True)
RESUME_POINT_ID = 1_000_000  # the id the write-path check upserts; no workload uses it


@dataclass
class Incarnation:
    """One life of a collection name, from its create to its delete."""

    name: str
    dim: int  # unique per incarnation: tells them apart after recovery
    create_started: int
    create_acked: int | None = None
    delete_started: int | None = None
    delete_acked: int | None = None
    ops: dict[int, tuple[Operation, int]] = field(default_factory=dict)  # op_id -> (op, acked)

    def may_exist(self, point: int) -> bool:
        is_deleted = self.delete_acked is not None and point >= self.delete_acked
        return self.must_exist(point) or (point > self.create_started and not is_deleted)

    def must_exist(self, point: int) -> bool:
        is_created = self.create_acked is not None and point >= self.create_acked
        return is_created and (self.delete_started is None or point <= self.delete_started)

    def acknowledged_op_id(self, point: int) -> int:
        """The highest op id acknowledged once events[:point] had happened; -1 if none."""
        return max((op_id for op_id, (_, acked) in self.ops.items() if acked <= point), default=-1)

    @property
    def first_op_id(self) -> int:
        """Its first op id: above every op id an earlier incarnation of the name had."""
        return min(self.ops, default=0)

    @property
    def last_op_id(self) -> int:
        return self.first_op_id + len(self.ops) - 1

    def model(self, last_op_id: int) -> dict[PointId, tuple[Any, list[float]]]:
        """id -> (payload, vector) after applying its ops up to last_op_id in order."""
        assert sorted(self.ops) == list(range(self.first_op_id, self.last_op_id + 1)), self.ops
        points: dict[PointId, tuple[Any, list[float]]] = {}
        for op_id in range(self.first_op_id, last_op_id + 1):
            op = self.ops[op_id][0]
            if isinstance(op, DeletePoints):
                for point_id in op.ids:
                    points.pop(point_id, None)
                continue
            matrix = op.vectors[""].matrix
            for row, point_id in enumerate(op.ids):
                points[point_id] = (op.payloads[row], matrix[row].tolist())
        return points

    def ids(self) -> list[PointId]:
        return sorted({point_id for op, _ in self.ops.values() for point_id in op.ids})


class Journal:
    """Drives a catalog and notes when each of its changes was acknowledged."""

    def __init__(self, recorder: files.Recorder, rng: random.Random) -> None:
        self.recorder = recorder
        self.rng = rng
        self.incarnations: list[Incarnation] = []

    async def create(self, catalog: Catalog, name: str) -> Incarnation:
        dim = 2 + len(self.incarnations)
        incarnation = Incarnation(name, dim, self.recorder.mark())
        self.incarnations.append(incarnation)
        config = CollectionConfig(vectors={"": VectorConfig(dim, Distance.DOT)})
        await catalog.create(name, config)
        incarnation.create_acked = self.recorder.mark()
        return incarnation

    async def delete(self, catalog: Catalog, name: str) -> None:
        incarnation = self._live(name)
        incarnation.delete_started = self.recorder.mark()
        assert await catalog.delete(name)
        incarnation.delete_acked = self.recorder.mark()

    async def write(
        self, catalog: Catalog, name: str, ops: list[Operation], *, wait: bool = False
    ) -> None:
        """Send ops concurrently (so they share group commits); note each acknowledgement."""
        incarnation = self._live(name)
        collection = catalog.get(name)

        async def one(op: Operation) -> None:
            result = await collection.update(op, wait=wait, timeout_s=None)
            incarnation.ops[result.op_id] = (op, self.recorder.mark())

        await asyncio.gather(*(one(op) for op in ops))

    def upserts(self, name: str, count: int, id_count: int, pad_bytes: int = 0) -> list[Operation]:
        """`count` one-point upserts of ids below id_count, each with a fresh payload."""
        dim = self._live(name).dim
        ops: list[Operation] = []
        for _ in range(count):
            point_id = self.rng.randrange(id_count)
            vector = np.array([[self.rng.uniform(-1, 1) for _ in range(dim)]], dtype=np.float32)
            payload = {"n": self.rng.randrange(10**9), "pad": "x" * pad_bytes}
            rows = np.arange(1, dtype=np.int32)
            ops.append(UpsertPoints([point_id], {"": NamedVectors(rows, vector)}, [payload]))
        return ops

    def _live(self, name: str) -> Incarnation:
        live = [i for i in self.incarnations if i.name == name and i.delete_started is None]
        assert len(live) == 1, (name, live)
        return live[0]


Workload = Callable[[Path, Journal], Awaitable[None]]


async def record_workload(
    root: Path, workload: Workload, monkeypatch, seed: int, setup: Workload | None = None
) -> tuple[Snapshot, list[object], Journal]:
    """Run `setup` (not recorded: what it leaves is the durable snapshot), then `workload`
    with recording on, on storage `root`; return the snapshot, the events and the journal."""
    recorder = files.Recorder()
    journal = Journal(recorder, random.Random(seed))
    if setup is not None:
        await setup(root, journal)  # every mark is 0: acknowledged before the first event
    snapshot = Snapshot.take(root)
    with monkeypatch.context() as patch:
        record_lmdb_states(recorder, patch)
        files.install_recorder(recorder)
        try:
            await workload(root, journal)
        finally:
            files.install_recorder(None)
    return snapshot, recorder.events, journal


async def check_recovery(
    state: CrashState, journal: Journal, directory: Path, settings: EngineSettings
) -> None:
    """Open a catalog on the state and check it against the journal (module docstring)."""
    state.materialize(directory)
    catalog = Catalog(directory, settings)
    try:
        await catalog.open()
    except Exception as error:
        raise AssertionError(f"recovery failed: {error!r}; {state.describe()}") from error
    try:
        names = {incarnation.name for incarnation in journal.incarnations}
        assert set(catalog.names()) <= names, (catalog.names(), state.describe())
        for name in sorted(names):
            await _check_collection(catalog, name, journal, state)
        if catalog.names():
            await _check_write_path(catalog, catalog.names()[0], state)
        for name in sorted(names - set(catalog.names())):
            await _check_name_reuse(catalog, name, journal, state)
    finally:
        await catalog.close()


# ---- private ----------------------------------------------------------------------------------


async def _check_collection(
    catalog: Catalog, name: str, journal: Journal, state: CrashState
) -> None:
    lives = [i for i in journal.incarnations if i.name == name]
    where = f"collection={name} {state.describe()}"
    if not catalog.exists(name):
        assert not any(i.must_exist(state.point) for i in lives), f"collection lost: {where}"
        return
    collection = catalog.get(name)
    dim = collection.config.vectors[""].size
    [incarnation] = [i for i in lives if i.dim == dim]
    assert incarnation.may_exist(state.point), f"collection should not exist: {where}"
    last_op_id = collection.applied_op_id
    acknowledged_op_id = incarnation.acknowledged_op_id(state.point)
    assert last_op_id >= acknowledged_op_id, (
        f"lost ops {last_op_id} < {acknowledged_op_id}: {where}"
    )
    assert last_op_id <= incarnation.last_op_id, f"op {last_op_id} was never written: {where}"
    records = await collection.retrieve(incarnation.ids(), ALL_PAYLOAD, ALL_VECTORS)
    found = {r.id: (r.payload, r.vectors[""].tolist()) for r in records}
    expected = incarnation.model(last_op_id)
    assert found == expected, f"points differ from ops 0..{last_op_id}: {where}"
    await collection.wait_indexed()
    stats = collection.stats()
    assert stats.points_count == len(expected), where
    assert stats.indexed_vectors_count == len(expected), f"graph is not caught up: {where}"


async def _check_name_reuse(
    catalog: Catalog, name: str, journal: Journal, state: CrashState
) -> None:
    """A name whose collection is gone: created again, its first op id is above every op id
    an earlier collection of the name acknowledged (op ids of a name never repeat)."""
    config = CollectionConfig(vectors={"": VectorConfig(1, Distance.DOT)})
    await catalog.create(name, config)
    op = UpsertPoints(
        [RESUME_POINT_ID],
        {"": NamedVectors(np.arange(1, dtype=np.int32), np.ones((1, 1), np.float32))},
        [{}],
    )
    result = await catalog.get(name).update(op, wait=True, timeout_s=None)
    acknowledged = [
        incarnation.acknowledged_op_id(state.point)
        for incarnation in journal.incarnations
        if incarnation.name == name
    ]
    assert result.op_id > max(acknowledged), (result.op_id, acknowledged, state.describe())


async def _check_write_path(catalog: Catalog, name: str, state: CrashState) -> None:
    collection = catalog.get(name)
    dim = collection.config.vectors[""].size
    last_op_id = collection.applied_op_id
    vector = np.ones((1, dim), dtype=np.float32)
    op = UpsertPoints(
        [RESUME_POINT_ID], {"": NamedVectors(np.arange(1, dtype=np.int32), vector)}, [{}]
    )
    result = await collection.update(op, wait=True, timeout_s=None)
    assert result.op_id == last_op_id + 1, (result.op_id, last_op_id, state.describe())
    [record] = await collection.retrieve([RESUME_POINT_ID], NO_PAYLOAD, ALL_VECTORS)
    assert record.vectors[""].tolist() == vector[0].tolist(), state.describe()
