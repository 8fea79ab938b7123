"""One crash test run: setup, cycles of load-kill-restart-verify, a clean restart, a report.

Owns: the order of events, the state carried between cycles (the model of each
collection), the progress lines and the report.
Not here: the server process (target.py), the load (workload.py), reads (verify.py),
judging (model.py), the command line (cli.py).

A run: start the server on an empty storage directory; create the collections; probe
which payload edits the server implements; create the stable points. Then per cycle:
writers load the server, it is SIGKILLed at a moment drawn from the seed, writers stop,
it is restarted on the same storage (in a quarter of the cycles, a first restart is
SIGKILLed again before it is ready: a crash during recovery), and every point, search,
count and op id is checked (state accumulates over cycles). Last, a clean stop (SIGTERM
must exit 0), a restart and the same checks. A run stops at the first cycle with a
finding unless `is_keep_going`.

A failure of the harness itself mid-run (with --power-loss: LazyFS does not answer or
exits) ends the run without a verdict on the cycle under way: the report says so under
`harness_failure` and holds what was checked until then; it is never counted as a loss.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .aliases import (
    AliasChange,
    AliasModel,
    check_reads_through,
    judge_aliases,
    read_aliases,
    run_alias_writer,
)
from .client import ServerError, error_text, new_session, request_json
from .lazyfs import LazyFs, LazyFsFailure, LazyFsMissing
from .model import Finding, Verdict, check_op_ids, judge
from .ops import ACKED, PAYLOAD_KINDS, Kind, Op, Outcome, Point
from .target import (
    ServerCommand,
    ServerProcess,
    StartFailed,
    spawn_server,
    start_server,
    wait_answering,
)
from .verify import NOT_IMPLEMENTED, check_reads, read_points, write_marker
from .workload import COLLECTIONS, PAYLOAD_ENDPOINTS, CollectionSpec, Plan, run_writer, seed_ops
from .workload import send as send_op

WRITERS_STOP_TIMEOUT_S = 30.0  # after the kill every request fails at once; this bounds a hang
STOP_TIMEOUT_S = 90.0  # a clean stop drains queued writes (up to 30 s) and checkpoints
FINDINGS_KEPT_MAX = 100  # findings kept in full in the report; all are counted
LOST_OPS_KEPT_MAX = 50
PROBE_COLLECTION = "crashtest_probe"
# Some restarts are themselves killed at a random moment before they are ready (a crash
# during recovery: mid replay, mid torn-tail truncation, mid index rebuild).
RECOVERY_KILL_FRACTION = 0.25
RECOVERY_WINDOW_S_MIN = 0.05  # a recovery too quick to measure still gets a window
_ACKED_NAMES = frozenset(outcome.value for outcome in ACKED)

Tamper = Callable[[list[Op]], None]


@dataclass
class Options:
    """Everything a run depends on; the seed fixes every op and every kill moment."""

    cycles: int = 10
    duration_s: float = 3.0
    writers: int = 4
    seed: int = 0
    command: str | None = None  # a template with {storage} and {port}; None: this checkout
    workdir: Path | None = None  # None: a new temporary directory
    id_space: int = 1000
    ready_timeout_s: float = 60.0
    search_samples: int = 16  # points per vector name and cycle checked with search
    is_keep_going: bool = False
    is_keep_workdir: bool = False
    # The lazyfs binary: storage on LazyFS, unsynced writes dropped after every kill.
    lazyfs: Path | None = None


class SetupError(Exception):
    """The test could not begin: the server does not start, or the storage is not empty."""


@dataclass
class CollectionModel:
    """What a collection must hold now, and the highest op id acknowledged in it."""

    spec: CollectionSpec
    points: dict[int, Point] = field(default_factory=dict)
    op_id_max: int = -1


async def run_crashtest(options: Options, tamper: Tamper | None = None) -> dict[str, Any]:
    """Run the crash test and return its report (`report["ok"]` is the verdict).

    `tamper`, for testing the checker only, is called with each cycle's ops after the kill
    and before the checks, and may change them (claim an op the server never got).
    Raises SetupError if the test cannot begin. The work directory is removed after a
    passing run unless it was given or `is_keep_workdir` is set.
    """
    is_temporary = options.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="keel-crashtest-")) if is_temporary else options.workdir
    assert workdir is not None
    run = CrashTest(options, workdir.resolve(), tamper)
    report = await run.run()
    if report["ok"] and is_temporary and not options.is_keep_workdir:
        shutil.rmtree(workdir)
        report["workdir_kept"] = False
    return report


class CrashTest:
    """The state of one run; `run()` drives it."""

    def __init__(self, options: Options, workdir: Path, tamper: Tamper | None) -> None:
        self.options = options
        self.command = ServerCommand.parse(options.command)
        self.workdir = workdir
        self.lazyfs = None if options.lazyfs is None else LazyFs(options.lazyfs, workdir)
        storage_parent = workdir if self.lazyfs is None else self.lazyfs.mount_dir
        self.storage_dir = storage_parent / "storage"
        self.log_dir = workdir / "logs"
        self.tamper = tamper
        self.plan = Plan(options.id_space)
        self.models = {spec.name: CollectionModel(spec) for spec in COLLECTIONS}
        self.alias_model = AliasModel()
        self.alias_changes: list[AliasChange] = []  # this cycle's, checked after the restart
        self.server: ServerProcess | None = None
        self.started_s = time.monotonic()
        self.cycles_done = 0
        self.recovery_window_s = RECOVERY_WINDOW_S_MIN
        self.outcomes: Counter[str] = Counter()
        self.acked_by_form: Counter[str] = Counter()
        self.acked_by_update_mode: Counter[str] = Counter()
        self.findings: list[Finding] = []
        self.finding_counts: Counter[str] = Counter()
        self.lost_ops: list[Op] = []
        self.lost_op_count = 0
        self.skipped: dict[str, str] = {}
        self.uncertain = Counter[str]()
        self.search_counts = Counter[str]()  # sampled points searched, and found
        self.cycle_log: list[dict[str, Any]] = []
        self.harness_failure: dict[str, Any] | None = None

    async def run(self) -> dict[str, Any]:
        try:
            await self._setup()
            await self._cycles()
        except LazyFsFailure as error:
            # The cycle under way is not judged: its kill may or may not have lost power.
            self.harness_failure = {"cycle": self.cycles_done + 1, "error": str(error)}
        finally:
            if self.server is not None:
                await self.server.kill()
                self.server = None
            if self.lazyfs is not None:
                await self.lazyfs.unmount()
        return self.report()

    async def _cycles(self) -> None:
        for cycle in range(1, self.options.cycles + 1):
            if self.server is None or (self.finding_total and not self.options.is_keep_going):
                return
            await self._cycle(cycle)
        if self.server is not None:
            await self._final_clean_restart()

    @property
    def finding_total(self) -> int:
        return sum(self.finding_counts.values())

    async def _setup(self) -> None:
        if self.lazyfs is not None:
            try:
                await self.lazyfs.mount()
            except LazyFsMissing as error:
                raise SetupError(str(error)) from None
        if self.storage_dir.exists() and any(self.storage_dir.iterdir()):
            raise SetupError(f"storage directory {self.storage_dir} is not empty")
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.server = await self._start("setup")
        except StartFailed as error:
            raise SetupError(f"the server did not start: {error}") from None
        url = self.server.url
        async with new_session(4) as session:
            for spec in COLLECTIONS:
                await _create_collection(session, url, spec.name, spec.create_body())
            kinds = await self._probe_payload_kinds(session, url)
            self.plan = Plan(self.options.id_space, kinds)
            for op in seed_ops(self.plan, random.Random(f"{self.options.seed}/setup")):
                op.path += "?wait=true"
                await send_op(session, url, op)
                if op.outcome is not Outcome.COMPLETED or op.op_id is None:
                    raise SetupError(f"creating the stable points failed: {op.summary()}")
                model = self.models[op.collection]
                model.points.update(op.points)
                model.op_id_max = op.op_id

    async def _probe_payload_kinds(
        self, session: aiohttp.ClientSession, url: str
    ) -> tuple[Kind, ...]:
        """The payload edits the server implements, tried on a scratch collection."""
        probe_url = f"{url}/collections/{PROBE_COLLECTION}"
        await _create_collection(
            session, url, PROBE_COLLECTION, {"vectors": {"size": 2, "distance": "Euclid"}}
        )
        point = {"id": 0, "vector": [0.5, 0.5], "payload": {"probe": 1}}
        status, answer = await request_json(
            session, "PUT", f"{probe_url}/points?wait=true", {"points": [point]}
        )
        if status != 200:
            raise SetupError(f"upserting the probe point answered {status}: {error_text(answer)}")
        bodies = {
            Kind.SET_PAYLOAD: {"payload": {"probe": 2}, "points": [0]},
            Kind.OVERWRITE_PAYLOAD: {"payload": {"probe": 3}, "points": [0]},
            Kind.DELETE_PAYLOAD: {"keys": ["probe"], "points": [0]},
            Kind.CLEAR_PAYLOAD: {"points": [0]},
        }
        kinds = []
        for kind in PAYLOAD_KINDS:
            method, path = PAYLOAD_ENDPOINTS[kind]
            edit_url = url + path.format(collection=PROBE_COLLECTION) + "?wait=true"
            status, answer = await request_json(session, method, edit_url, bodies[kind])
            endpoint = f"{method} .../points{path.split('/points', 1)[1]}"
            why = f"{endpoint} answered {status}: {error_text(answer)}"
            if status == 200:
                kinds.append(kind)
            elif status == NOT_IMPLEMENTED:
                self.skipped[f"payload edit {kind.value}"] = why
            else:
                # An error is not "not implemented": a 500 here is a finding, and the edit
                # stays out of the load since it cannot be judged.
                detail = {"problem": f"payload edit probe {kind.value} failed", "error": why}
                self._add([Finding("request", PROBE_COLLECTION, detail)])
        await request_json(session, "DELETE", probe_url)
        return tuple(kinds)

    async def _cycle(self, cycle: int) -> None:
        cycle_started_s = time.monotonic()
        findings_before, lost_before = self.finding_total, self.lost_op_count
        ops, kill_after_s = await self._drive_and_kill(cycle)
        if self.tamper is not None:
            self.tamper(ops)
        self._count(ops)
        recovery_kill_s = await self._maybe_kill_during_recovery(cycle)
        recovery_s = None
        if await self._restart(f"cycle-{cycle}"):
            assert self.server is not None
            recovery_s = self.server.ready_s
            listening_s = self.server.listening_s
            if recovery_s is not None and listening_s is not None:
                self.recovery_window_s = max(RECOVERY_WINDOW_S_MIN, recovery_s - listening_s)
            await self._verify(ops, label=cycle)
        self.cycles_done = cycle
        entry = {
            "cycle": cycle,
            "kill_after_s": round(kill_after_s, 3),
            "acknowledged": sum(op.is_acked for op in ops),
            "in_flight_at_kill": sum(op.outcome is Outcome.IN_FLIGHT for op in ops),
            "recovery_killed_after_s": recovery_kill_s,
            "lost_ops": self.lost_op_count - lost_before,
            "findings": self.finding_total - findings_before,
            "recovery_s": None if recovery_s is None else round(recovery_s, 3),
            "elapsed_s": round(time.monotonic() - cycle_started_s, 3),
        }
        self.cycle_log.append(entry)
        self._progress(entry)

    async def _drive_and_kill(self, cycle: int) -> tuple[list[Op], float]:
        """Writers load the server until the kill; returns every op they sent."""
        assert self.server is not None
        server = self.server
        stop = asyncio.Event()
        kill_rng = random.Random(f"{self.options.seed}/kill/{cycle}")
        kill_after_s = kill_rng.uniform(0, self.options.duration_s)
        async with new_session(self.options.writers + 3) as session:
            tasks, ops_of = self._start_writers(session, server.url, cycle, stop)
            self.alias_changes = []
            alias_writer = run_alias_writer(
                session,
                server.url,
                random.Random(f"{self.options.seed}/aliases/{cycle}"),
                self.alias_model.aliases,
                [spec.name for spec in COLLECTIONS],
                self.alias_changes,
                stop,
            )
            tasks.append(asyncio.create_task(alias_writer, name="crashtest-alias-writer"))
            # Writers end early only if the server fails them; then the kill comes sooner.
            await asyncio.wait(tasks, timeout=kill_after_s)
            killed_s = time.monotonic()
            exit_code = await server.kill()
            self.server = None
            stop.set()
            _, pending = await asyncio.wait(tasks, timeout=WRITERS_STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            # A writer's own exception (a bug in the tool) is raised here.
            await asyncio.gather(*tasks, return_exceptions=bool(pending))
        # The server is dead, so nothing writes between the kill and the power cut; the
        # writers are stopped first so that a harness failure leaves no task behind.
        await self._cut_power()
        ops = [op for writer_ops in ops_of for op in writer_ops]
        self._check_requests(ops, killed_s, exit_code, server)
        return ops, kill_after_s

    def _start_writers(
        self, session: aiohttp.ClientSession, url: str, cycle: int, stop: asyncio.Event
    ) -> tuple[list[asyncio.Task[None]], list[list[Op]]]:
        ops_of: list[list[Op]] = [[] for _ in range(self.options.writers)]
        tasks = []
        for index, ops in enumerate(ops_of):
            rng = random.Random(f"{self.options.seed}/{cycle}/{index}")
            writer = run_writer(session, url, self.plan, rng, index, ops, stop)
            tasks.append(asyncio.create_task(writer, name=f"crashtest-writer-{index}"))
        return tasks, ops_of

    def _check_requests(
        self, ops: list[Op], killed_s: float, exit_code: int, server: ServerProcess
    ) -> None:
        """Unexpected answers, connections broken before the kill, a server that died first."""
        if exit_code != -signal.SIGKILL:
            detail = {"problem": f"the server exited by itself with code {exit_code}"}
            self._add([Finding("crash", "*", detail | {"log": server.log_tail()})])
        for op in ops:
            if op.outcome is Outcome.FAILED:
                self._add(
                    [
                        Finding(
                            "request",
                            op.collection,
                            {"problem": "unexpected answer", **op.summary()},
                        )
                    ]
                )
            elif op.outcome is Outcome.IN_FLIGHT and op.answered_s < killed_s:
                detail = {"problem": "connection broke while the server was running"}
                self._add([Finding("request", op.collection, detail | op.summary())])

    async def _maybe_kill_during_recovery(self, cycle: int) -> float | None:
        """In some cycles, start the server and SIGKILL it while it recovers (after it
        listens, before it is ready); returns when, in seconds after it listened."""
        rng = random.Random(f"{self.options.seed}/recovery-kill/{cycle}")
        if rng.random() >= RECOVERY_KILL_FRACTION:
            return None
        # Within the last measured recovery: from listening to ready.
        kill_after_s = round(rng.uniform(0, self.recovery_window_s), 3)
        log_path = self.log_dir / f"server-cycle-{cycle}-killed-in-recovery.log"
        try:
            server = spawn_server(self.command, self.storage_dir, log_path)
        except StartFailed:
            return None  # the restart that follows reports it
        try:
            await wait_answering(server, self.options.ready_timeout_s, is_ready_needed=False)
        except TimeoutError:
            pass  # the restart that follows reports a server that never answers
        await asyncio.sleep(kill_after_s)  # the fault's moment, not a synchronisation
        exit_code = await server.kill()
        await self._cut_power()
        if exit_code != -signal.SIGKILL:
            detail = {"problem": f"the server exited with code {exit_code} while recovering"}
            self._add([Finding("restart", "*", detail | {"log": server.log_tail()})])
        return kill_after_s

    async def _cut_power(self) -> None:
        """With --power-loss: the writes the killed server did not fsync are gone."""
        if self.lazyfs is not None:
            await self.lazyfs.lose_unsynced()

    async def _restart(self, label: str) -> bool:
        try:
            self.server = await self._start(label)
        except StartFailed as error:
            if self.lazyfs is not None:
                # A server cannot start on a file system that is gone: not its fault.
                self.lazyfs.check_running(f"the restart after {label}")
            detail = {
                "problem": "the server did not come back",
                "after": label,
                "error": str(error),
            }
            self._add([Finding("restart", "*", detail)])
            return False
        return True

    async def _start(self, label: str) -> ServerProcess:
        return await start_server(
            self.command, self.storage_dir, self.log_dir, label, self.options.ready_timeout_s
        )

    async def _verify(self, ops: list[Op], label: int) -> None:
        """Every check, for every collection, against the model plus `ops`; the aliases
        against their model plus this cycle's alias changes."""
        rng = random.Random(f"{self.options.seed}/verify/{label}")
        async with new_session(4) as session:
            assert self.server is not None
            try:
                observed = await read_aliases(session, self.server.url)
                self._add(judge_aliases(self.alias_model, self.alias_changes, observed))
                self._add(await check_reads_through(session, self.server.url, observed))
            except (ServerError, aiohttp.ClientError, OSError) as error:
                detail = {"problem": "reading the aliases failed", "error": str(error)}
                self._add([Finding("alias", "*", detail)])
            self.alias_changes = []
            for model in self.models.values():
                collection_ops = [op for op in ops if op.collection == model.spec.name]
                try:
                    await self._verify_collection(session, model, collection_ops, label, rng)
                except (ServerError, aiohttp.ClientError, OSError) as error:
                    detail = {"problem": "a check's request failed", "error": str(error)}
                    self._add([Finding("read", model.spec.name, detail)])

    async def _verify_collection(
        self,
        session: aiohttp.ClientSession,
        model: CollectionModel,
        ops: list[Op],
        label: int,
        rng: random.Random,
    ) -> None:
        assert self.server is not None
        url, spec = self.server.url, model.spec
        acked = [op for op in ops if op.is_acked]
        self._add(check_op_ids(spec.name, acked, model.op_id_max))
        observed = await read_points(session, url, spec, self.plan)
        verdict = judge(spec.name, model.points, ops, observed)
        self._record_verdict(verdict)
        model.points = verdict.points
        model.op_id_max = max([model.op_id_max, *(op.op_id or -1 for op in acked)])
        reads = await check_reads(
            session, url, spec, model.points, rng, self.options.search_samples
        )
        self._add(reads.findings)
        self.skipped.update(reads.skipped)
        self.search_counts.update(
            hnsw_found=reads.hnsw_found,
            hnsw_sampled=reads.hnsw_sampled,
            maxsim_sampled=reads.maxsim_sampled,
        )
        marker = await write_marker(session, url, spec, self.plan, label)
        if marker.outcome is not Outcome.COMPLETED or marker.op_id is None:
            self._add(
                [
                    Finding(
                        "marker",
                        spec.name,
                        {"problem": "write after restart failed", **marker.summary()},
                    )
                ]
            )
            return
        if marker.op_id <= model.op_id_max:
            detail = {"problem": f"first write after restart got op id <= {model.op_id_max}"}
            self._add([Finding("op_id", spec.name, detail | marker.summary())])
        model.points.update(marker.points)
        model.op_id_max = max(model.op_id_max, marker.op_id)

    def _record_verdict(self, verdict: Verdict) -> None:
        self._add(verdict.findings)
        self.lost_op_count += len(verdict.lost_ops)
        room = LOST_OPS_KEPT_MAX - len(self.lost_ops)
        self.lost_ops.extend(verdict.lost_ops[: max(0, room)])
        self.uncertain.update(
            applied=verdict.uncertain_applied,
            not_applied=verdict.uncertain_not_applied,
            unresolved_components=verdict.unresolved_components,
        )

    async def _final_clean_restart(self) -> None:
        """SIGTERM must exit 0, and a restart after it must hold the same state."""
        await self._stop_cleanly()
        if await self._restart("final"):
            await self._verify([], label=self.options.cycles + 1)
            await self._stop_cleanly()

    async def _stop_cleanly(self) -> None:
        assert self.server is not None
        server, self.server = self.server, None
        exit_code = await server.terminate(STOP_TIMEOUT_S)
        if exit_code != 0:
            problem = f"SIGTERM exit code {exit_code}"
            if not self.command.is_default:
                problem += " (a wrapper script must `exec` the server: its exit code is checked)"
            detail = {"problem": problem, "log": server.log_tail()}
            self._add([Finding("clean_stop", "*", detail)])

    def _count(self, ops: list[Op]) -> None:
        self.outcomes.update(op.outcome.value for op in ops)
        acked = [op for op in ops if op.is_acked]
        self.acked_by_form.update(op.form for op in acked)
        self.acked_by_update_mode.update(op.update_mode for op in acked if op.kind is Kind.UPSERT)

    def _add(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.finding_counts[finding.check] += 1
            if len(self.findings) < FINDINGS_KEPT_MAX:
                self.findings.append(finding)

    def _progress(self, entry: dict[str, Any]) -> None:
        acknowledged = sum(self.outcomes[name] for name in _ACKED_NAMES)
        recovery = "-" if entry["recovery_s"] is None else f"{entry['recovery_s']:.2f}"
        recovery_kill = entry["recovery_killed_after_s"]
        print(
            f"crashtest cycle {entry['cycle']}/{self.options.cycles}: "
            f"acknowledged={acknowledged} (+{entry['acknowledged']}) "
            f"in_flight_at_kill={entry['in_flight_at_kill']} lost_ops={self.lost_op_count} "
            f"findings={self.finding_total} recovery_s={recovery} "
            + ("" if recovery_kill is None else f"killed_in_recovery_at_s={recovery_kill} ")
            + f"elapsed_s={time.monotonic() - self.started_s:.1f}",
            file=sys.stderr,
            flush=True,
        )

    def report(self) -> dict[str, Any]:
        return build_report(self)


def build_report(run: CrashTest) -> dict[str, Any]:
    """The JSON report; `ok` is true only if every cycle ran and nothing was found."""
    ok = (
        run.finding_total == 0
        and run.cycles_done == run.options.cycles
        and run.harness_failure is None
    )
    point_problems = Counter(f.detail.get("problem") for f in run.findings if f.check == "point")
    return {
        "ok": ok,
        "seed": run.options.seed,
        "cycles": run.cycles_done,
        "cycles_requested": run.options.cycles,
        "duration_s": run.options.duration_s,
        "writers": run.options.writers,
        "id_space": run.options.id_space,
        "command": run.command.template,
        "workdir": str(run.workdir),
        "workdir_kept": True,
        "elapsed_s": round(time.monotonic() - run.started_s, 3),
        "acknowledged_ops": sum(run.outcomes[name] for name in _ACKED_NAMES),
        "ops_by_outcome": dict(run.outcomes),
        "acknowledged_ops_by_form": dict(run.acked_by_form),
        "acknowledged_upserts_by_update_mode": dict(run.acked_by_update_mode),
        "in_flight_at_kill": run.outcomes[Outcome.IN_FLIGHT.value],
        "recovery_kills": sum(e["recovery_killed_after_s"] is not None for e in run.cycle_log),
        "power_loss": run.lazyfs is not None,
        "unsynced_writes_dropped": 0 if run.lazyfs is None else run.lazyfs.clear_count,
        "uncertain_ops_applied": run.uncertain["applied"],
        "uncertain_ops_not_applied": run.uncertain["not_applied"],
        "uncertain_components_checked_per_point": run.uncertain["unresolved_components"],
        "alias_changes_acknowledged": run.alias_model.acknowledged_count,
        "lost_op_count": run.lost_op_count,
        "lost_ops": [op.summary() for op in run.lost_ops],
        "wrong_point_count": run.finding_counts["point"],
        "extra_point_count": point_problems["invented"] + point_problems["resurrected"],
        "op_id_violation_count": run.finding_counts["op_id"],
        "findings_by_check": dict(run.finding_counts),
        "findings": [finding.as_json() for finding in run.findings],
        "hnsw_search_found": run.search_counts["hnsw_found"],
        "hnsw_search_sampled": run.search_counts["hnsw_sampled"],
        "maxsim_query_sampled": run.search_counts["maxsim_sampled"],
        "skipped": dict(sorted(run.skipped.items())),
        "harness_failure": run.harness_failure,
        "cycle_log": run.cycle_log,
    }


async def _create_collection(
    session: aiohttp.ClientSession, url: str, name: str, body: dict[str, Any]
) -> None:
    status, answer = await request_json(session, "PUT", f"{url}/collections/{name}", body)
    if status != 200:
        raise SetupError(
            f"creating collection {name} answered {status}: {error_text(answer)} "
            f"(the test needs an empty storage directory)"
        )


def dump_report(report: dict[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
