"""Injected disk faults: ENOSPC is refused cleanly and recovered from; EIO fails closed.

Faults are injected at engine.files (a `Recorder` whose `fault` raises before the operation),
so they hit exactly the operation named, in the thread that does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import hnswlib
import lmdb
import numpy as np
import pytest

from engine import files
from engine.errors import StorageError
from engine.ops import PayloadSelector, VectorSelector
from engine.store.store import Store
from engine.vectors.hnsw import is_complete_hnsw_file
from engine.wal.log import Wal
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert

REPO_ROOT = Path(__file__).resolve().parents[2]

NEVER_S = 86_400.0
ALL = PayloadSelector(True)
WITH_VECTOR = VectorSelector(True)


class Faults:
    """Arms one fault at a time: `arm(predicate, error, half_write=...)`, `disarm()`."""

    def __init__(self) -> None:
        self.recorder = files.Recorder(fault=self.fail_if_armed)
        self._predicate: Callable[[files.FileEvent], bool] | None = None
        self._error: OSError | None = None
        self._is_half_write = False
        self.hit_count = 0

    def arm(
        self,
        predicate: Callable[[files.FileEvent], bool],
        error_number: int,
        half_write: bool = False,
    ) -> None:
        self._predicate = predicate
        self._error = OSError(error_number, os.strerror(error_number))
        self._is_half_write = half_write

    def disarm(self) -> None:
        self._predicate = None

    def fail_if_armed(self, event: files.FileEvent) -> None:
        if self._predicate is None or not self._predicate(event):
            return
        self.hit_count += 1
        if self._is_half_write:
            # What a full disk does to a big write: part of it lands, then ENOSPC.
            assert isinstance(event, files.Write)
            with open(event.path, "ab") as file:
                file.write(event.data[: len(event.data) // 2])
        assert self._error is not None
        raise self._error


@pytest.fixture
def faults() -> Iterator[Faults]:
    faults = Faults()
    files.install_recorder(faults.recorder)
    try:
        yield faults
    finally:
        files.install_recorder(None)


def is_wal_write(event: files.FileEvent) -> bool:
    return isinstance(event, files.Write) and event.path.endswith(".wal")


def is_wal_sync(event: files.FileEvent) -> bool:
    return isinstance(event, files.Fdatasync) and event.path.endswith(".wal")


def open_wal(directory: Path, segment_bytes_target: int = 1 << 20) -> Wal:
    wal = Wal(directory, "test", segment_bytes_target, fsync_slow_s=1.0)
    wal.open()
    return wal


# ---- ENOSPC at the WAL ----------------------------------------------------------------------


async def test_enospc_cuts_the_half_written_batch_and_the_next_append_works(
    tmp_path: Path, faults: Faults
) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()
    assert [await wal.append(body)[1] for body in (b"a", b"b")] == [0, 1]
    [segment] = sorted((tmp_path / "wal").glob("*.wal"))
    size_before = segment.stat().st_size
    loop = asyncio.get_running_loop()
    queued_behind: list[asyncio.Future[int]] = []

    def append_behind() -> None:
        queued_behind.append(wal.append(b"queued behind")[1])

    def fail_with_one_more_append(event: files.FileEvent) -> None:
        if is_wal_write(event):
            # Runs in the WAL's thread: the append reaches the loop before the refusal does.
            loop.call_soon_threadsafe(append_behind)
        faults.fail_if_armed(event)

    faults.arm(is_wal_write, errno.ENOSPC, half_write=True)
    faults.recorder.fault = fail_with_one_more_append
    refused = [wal.append(b"x" * 5_000)[1] for _ in range(3)]
    for durable in refused + [None]:
        if durable is None:  # by now the queued-behind append was made, and refused too
            [durable] = queued_behind
        with pytest.raises(StorageError, match="No space left on device"):
            await durable
    assert faults.hit_count == 1
    assert segment.stat().st_size == size_before  # no half batch left in the log
    assert not wal.is_failed
    faults.recorder.fault = faults.fail_if_armed
    faults.disarm()
    assert await wal.append(b"c")[1] == 2  # the refused op ids are handed out again
    await wal.close()
    reopened = open_wal(tmp_path / "wal")
    assert list(reopened.read_records(-1)) == [(0, b"a"), (1, b"b"), (2, b"c")]
    await reopened.close()


async def test_enospc_creating_a_segment_is_refused_and_the_roll_retried(
    tmp_path: Path, faults: Faults
) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal", segment_bytes_target=64 * 1024)
    wal.start()
    assert await wal.append(b"f" * 70_000)[1] == 0  # past the target: the next batch rolls
    faults.arm(lambda event: isinstance(event, files.Create), errno.ENOSPC)
    with pytest.raises(StorageError, match="No space left on device"):
        await wal.append(b"g")[1]
    assert len(list((tmp_path / "wal").glob("*.wal"))) == 1
    faults.disarm()
    assert await wal.append(b"h")[1] == 1
    await wal.close()
    assert [p.name for p in sorted((tmp_path / "wal").glob("*.wal"))] == [
        f"{0:020d}.wal",
        f"{1:020d}.wal",
    ]
    reopened = open_wal(tmp_path / "wal", segment_bytes_target=64 * 1024)
    assert [op_id for op_id, _ in reopened.read_records(-1)] == [0, 1]
    await reopened.close()


async def test_an_error_cutting_the_refused_batch_closes_the_log(
    tmp_path: Path, faults: Faults
) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()
    faults.arm(is_wal_write, errno.ENOSPC, half_write=True)

    def fail_the_cut_too(event: files.FileEvent) -> None:
        if isinstance(event, files.Truncate):
            raise OSError(errno.EIO, "Input/output error")
        faults.fail_if_armed(event)

    faults.recorder.fault = fail_the_cut_too
    with pytest.raises(StorageError, match="Input/output error"):
        await wal.append(b"x" * 1_000)[1]
    assert wal.is_failed  # the log may hold half a batch now: nothing more may follow it
    with pytest.raises(StorageError):
        wal.append(b"y")
    await wal.close()


# ---- ENOSPC and EIO through a collection ----------------------------------------------------


async def test_enospc_fails_the_request_keeps_reads_and_writes_resume(
    tmp_path: Path, faults: Faults
) -> None:
    catalog = await open_catalog(tmp_path / "s", checkpoint_every_s=NEVER_S)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    await collection.update(upsert([1], [[1, 0, 0, 0]], [{"v": 1}]), wait=True, timeout_s=None)
    faults.arm(is_wal_write, errno.ENOSPC, half_write=True)
    lost = [
        collection.update(upsert([2], [[0, 1, 0, 0]], [{"v": 2}]), wait=w, timeout_s=None)
        for w in (False, True)
    ]
    for outcome in await asyncio.gather(*lost, return_exceptions=True):
        assert isinstance(outcome, StorageError), outcome
        assert "No space left on device" in str(outcome)
    assert collection.stats().status == "green"  # refused, not broken
    [point] = await collection.retrieve([1, 2], ALL, WITH_VECTOR)
    assert (point.id, point.payload) == (1, {"v": 1})
    faults.disarm()
    result = await collection.update(
        upsert([3], [[0, 0, 1, 0]], [{"v": 3}]), wait=True, timeout_s=None
    )
    assert result.op_id == 1  # op ids stay consecutive: the refused ones were given back
    await catalog.close()
    catalog = await open_catalog(tmp_path / "s")
    points = await catalog.get("c").retrieve([1, 2, 3], ALL, WITH_VECTOR)
    assert [(p.id, p.payload) for p in points] == [(1, {"v": 1}), (3, {"v": 3})]
    await catalog.close()


async def test_fdatasync_eio_closes_the_write_path_and_acknowledged_ops_survive(
    tmp_path: Path, faults: Faults
) -> None:
    catalog = await open_catalog(tmp_path / "s", checkpoint_every_s=NEVER_S)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    for point_id in range(5):
        op = upsert([point_id], [[point_id, 1, 1, 1]], [{"id": point_id}])
        await collection.update(op, wait=point_id == 4, timeout_s=None)  # 4: all applied
    faults.arm(is_wal_sync, errno.EIO)
    with pytest.raises(StorageError, match="fdatasync failed"):
        await collection.update(
            upsert([99], [[9, 9, 9, 9]], [{"id": 99}]), wait=False, timeout_s=None
        )
    faults.disarm()
    assert collection.stats().status == "red"
    with pytest.raises(StorageError):  # never retried, even once the disk answers again
        await collection.update(upsert([100], [[1, 1, 1, 1]]), wait=False, timeout_s=None)
    assert faults.hit_count == 1
    assert len(await collection.retrieve(list(range(5)), ALL, WITH_VECTOR)) == 5
    await catalog.close()
    catalog = await open_catalog(tmp_path / "s")
    points = await catalog.get("c").retrieve(list(range(5)) + [99, 100], ALL, WITH_VECTOR)
    ids = [p.id for p in points]
    # Acknowledged: all there. The op whose fsync failed was answered 500: its outcome is
    # unknown, like any 500's, and it is whole if it is there. The refused one is not.
    assert ids in (list(range(5)), list(range(5)) + [99]), ids
    for point in points:
        assert point.payload == {"id": point.id}
    await catalog.close()


async def test_enospc_writing_a_checkpoint_skips_it_and_keeps_the_write_path(
    tmp_path: Path, faults: Faults
) -> None:
    """A checkpoint is an optimisation: out of space, the old one and the WAL still cover
    everything, so writes go on and the next checkpoint is tried later."""
    catalog = await open_catalog(tmp_path / "s", checkpoint_every_ops=3, checkpoint_every_s=NEVER_S)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    faults.arm(lambda e: isinstance(e, files.Create) and ".hnsw" in e.path, errno.ENOSPC)
    rng = np.random.default_rng(3)
    for point_id in range(7):
        await collection.update(
            upsert([point_id], rng.normal(size=(1, 4))), wait=True, timeout_s=None
        )
    assert faults.hit_count >= 1
    index_dir = collection.directory / "index"
    assert not list(index_dir.glob("*.hnsw")) and not list(index_dir.glob(".*.tmp"))
    assert collection.stats().status == "green"
    faults.disarm()
    for point_id in range(7, 10):
        await collection.update(
            upsert([point_id], rng.normal(size=(1, 4))), wait=True, timeout_s=None
        )
    await catalog.close()  # checkpoints again, now with space
    assert len(list(index_dir.glob("*.hnsw"))) == 1
    catalog = await open_catalog(tmp_path / "s")
    assert catalog.get("c").stats().points_count == 10
    await catalog.close()


def test_a_short_hnswlib_file_is_recognised(tmp_path: Path) -> None:
    """hnswlib's save_index ignores write errors; the checkpoint checks the file's structure."""
    graph = hnswlib.Index(space="ip", dim=4)
    graph.init_index(max_elements=100, M=8, allow_replace_deleted=True)
    graph.add_items(np.random.default_rng(1).random((50, 4), dtype=np.float32), np.arange(50))
    graph.save_index(str(tmp_path / "g.hnsw"))
    data = (tmp_path / "g.hnsw").read_bytes()
    assert is_complete_hnsw_file(data)
    for cut in (1, 4, len(data) // 2, len(data) - 96):
        assert not is_complete_hnsw_file(data[:-cut])


async def test_eio_fsyncing_a_checkpoint_closes_the_write_path(
    tmp_path: Path, faults: Faults
) -> None:
    catalog = await open_catalog(tmp_path / "s", checkpoint_every_ops=3, checkpoint_every_s=NEVER_S)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    faults.arm(lambda e: isinstance(e, files.Fsync) and ".hnsw" in e.path, errno.EIO)
    rng = np.random.default_rng(3)
    for point_id in range(3):
        await collection.update(
            upsert([point_id], rng.normal(size=(1, 4))), wait=True, timeout_s=None
        )
    for _attempt in range(100):
        if collection.stats().status == "red":
            break
        await asyncio.sleep(0.01)  # the checkpoint runs after the waiters are answered
    assert collection.stats().status == "red"
    with pytest.raises(StorageError):
        await collection.update(upsert([7], [[1, 1, 1, 1]]), wait=True, timeout_s=None)
    faults.disarm()
    await catalog.close()
    catalog = await open_catalog(tmp_path / "s")
    assert catalog.get("c").stats().points_count == 3
    await catalog.close()


async def test_an_lmdb_error_in_a_checkpoint_closes_the_write_path(
    tmp_path: Path, monkeypatch
) -> None:
    catalog = await open_catalog(tmp_path / "s", checkpoint_every_ops=3, checkpoint_every_s=NEVER_S)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")

    def failing_sync(store: Store) -> None:
        raise lmdb.Error("mdb_env_sync: Input/output error")

    monkeypatch.setattr(Store, "sync", failing_sync)
    try:
        for point_id in range(3):
            op = upsert([point_id], np.ones((1, 4)))
            await collection.update(op, wait=True, timeout_s=None)
        for _attempt in range(100):
            if collection.stats().status == "red":
                break
            await asyncio.sleep(0.01)  # the checkpoint runs after the waiters are answered
        assert collection.stats().status == "red"
        with pytest.raises(StorageError):
            await collection.update(upsert([7], np.ones((1, 4))), wait=True, timeout_s=1.0)
    finally:
        monkeypatch.undo()
        with contextlib.suppress(lmdb.Error):  # today the dead applier task re-raises here
            await catalog.close()


# ---- the test-only switch: failpoints are armed only beside KEEL_TEST_FAULTS=1 --------------

KILL_AFTER = (
    "KEEL_MIGRATE_KILL_AFTER_BATCHES"  # server/commands/migrate.py's; unit tests import no server
)
FAILPOINT_PROBE = "from engine import files; files.failpoint('probe.point'); print('alive')"


def run_failpoint_probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    """A fresh interpreter (failpoints are read at import) that passes failpoint probe.point."""
    child_env = {name: value for name, value in os.environ.items() if not name.startswith("KEEL")}
    child_env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-c", FAILPOINT_PROBE],
        env={**child_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_failpoint_named_without_the_test_switch_is_inert() -> None:
    """A KEEL_FAILPOINTS left in a production environment must not kill the process."""
    probe = run_failpoint_probe({files.FAILPOINTS_VARIABLE: "probe.point"})
    assert (probe.returncode, probe.stdout) == (0, "alive\n"), probe.stderr
    for switch in ("0", "true", "yes", ""):
        probe = run_failpoint_probe(
            {files.FAILPOINTS_VARIABLE: "probe.point", files.TEST_FAULTS_VARIABLE: switch}
        )
        assert (probe.returncode, probe.stdout) == (0, "alive\n"), (switch, probe.stderr)


def test_a_failpoint_named_with_the_test_switch_kills() -> None:
    probe = run_failpoint_probe(
        {files.FAILPOINTS_VARIABLE: "other, probe.point", files.TEST_FAULTS_VARIABLE: "1"}
    )
    assert probe.returncode == -9, probe.stderr
    assert probe.stdout == ""
    assert "failpoint hit" in probe.stderr and "probe.point" in probe.stderr


def test_fault_settings_are_refused_without_the_test_switch() -> None:
    refused = {files.FAILPOINTS_VARIABLE: "wal.after_write"}
    with pytest.raises(files.FaultsNotEnabled) as raised:
        files.requested_failpoints(refused)
    assert files.FAILPOINTS_VARIABLE in str(raised.value)
    assert f"{files.TEST_FAULTS_VARIABLE}=1" in str(raised.value)
    with pytest.raises(files.FaultsNotEnabled):
        files.fault_setting(KILL_AFTER, {KILL_AFTER: "4"})
    enabled = {**refused, files.TEST_FAULTS_VARIABLE: "1"}
    assert files.requested_failpoints(enabled) == frozenset({"wal.after_write"})
    # Unset or empty: nothing requested, nothing refused, with or without the switch.
    assert files.requested_failpoints({}) == frozenset()
    assert files.requested_failpoints({files.FAILPOINTS_VARIABLE: " , "}) == frozenset()
    assert files.fault_setting(KILL_AFTER, {}) == ""
