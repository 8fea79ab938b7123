"""`keel crashtest`: it finds nothing wrong with Keel, and it finds a loss when there is one.

Method: a short real run through the `keel` command (two cycles: concurrent writers,
SIGKILL at a seeded moment, restart on the same storage, every check) must report nothing
lost; a run whose model is told, after the kill, of an acknowledged op the server never
got (the runner's `tamper` hook) must blame exactly that op and exit non-zero. The
checker's rules for ops of unknown fate are tested on hand-made histories, without a server.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from aiohttp import web

import tools.crashtest.cli
import tools.crashtest.lazyfs
from server.cli import main as keel_main
from tests.recovery.test_crashtest_lazyfs_fifo import write_fake_lazyfs
from tools.crashtest import Options, run_crashtest
from tools.crashtest.aliases import AliasChange, AliasModel, judge_aliases, next_change
from tools.crashtest.cli import exit_code, summary_line
from tools.crashtest.cli import main as crashtest_main
from tools.crashtest.client import new_session
from tools.crashtest.model import check_op_ids, judge
from tools.crashtest.ops import UNCERTAIN, UNNAMED, Kind, Op, Outcome, make_point
from tools.crashtest.runner import CrashTest, build_report
from tools.crashtest.verify import ReadChecks, judge_maxsim, observed_point
from tools.crashtest.workload import COLLECTIONS, Plan, generate_op

PLAIN = COLLECTIONS[0].name
NAMED = COLLECTIONS[1]
SEED = 2  # its kill moments fall 0.9 to 1.3 s into each cycle: every cycle has load


def test_a_short_crashtest_run_loses_nothing(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    argv = ["crashtest", "--cycles", "2", "--duration", "2", "--writers", "3"]
    argv += ["--seed", str(SEED), "--workdir", str(tmp_path / "work"), "--report", str(report_path)]
    code = keel_main(argv)
    report = json.loads(report_path.read_text())
    assert report["findings"] == [], report["findings"]
    assert code == 0
    assert report["ok"] is True
    assert report["cycles"] == 2 and report["lost_op_count"] == 0
    assert report["acknowledged_ops"] > 50, report["ops_by_outcome"]
    assert [entry["cycle"] for entry in report["cycle_log"]] == [1, 2]
    assert report["hnsw_search_sampled"] > 0
    assert report["maxsim_query_sampled"] > 0
    assert report["alias_changes_acknowledged"] > 0
    # Keel implements every endpoint the tool checks (payload edits, scroll, count): a
    # skipped check here would be one that silently did not run.
    assert report["skipped"] == {}
    assert report["harness_failure"] is None
    assert {"set_payload", "overwrite_payload", "delete_payload", "clear_payload"} <= set(
        report["acknowledged_ops_by_form"]
    ), report["acknowledged_ops_by_form"]


def test_an_acknowledged_op_the_server_never_got_is_reported_lost(tmp_path: Path) -> None:
    claimed: list[Op] = []

    def claim_a_write_that_never_happened(ops: list[Op]) -> None:
        fake = _fake_acknowledged_upsert(ops, Plan(Options().id_space))
        claimed.append(fake)
        ops.append(fake)

    options = Options(cycles=1, duration_s=1.5, writers=2, seed=SEED, workdir=tmp_path / "work")
    report = asyncio.run(run_crashtest(options, tamper=claim_a_write_that_never_happened))
    [fake] = claimed
    assert report["ok"] is False
    assert exit_code(report) == 1
    assert report["lost_op_count"] == 1
    [lost] = report["lost_ops"]
    assert (lost["op_id"], lost["seq"], lost["ids"]) == (fake.op_id, fake.seq, list(fake.ids))
    [point] = [finding for finding in report["findings"] if finding["check"] == "point"]
    assert (point["point_id"], point["problem"], point["observed"]) == (
        fake.ids[0],
        "missing",
        None,
    )
    assert f"--seed {SEED}" in summary_line(report)
    assert Path(report["workdir"]).is_dir(), "a failing run keeps its storage and logs"


def test_an_uncertain_op_may_be_applied_only_where_its_op_id_can_fall() -> None:
    """An insert_only in flight while an upsert of the same point was acknowledged: if the
    upsert was answered after the insert was sent, either order is possible and the upsert
    wins both; if before, the insert came second and was skipped. The insert's data can
    never be the result."""
    upsert = _acked(Kind.UPSERT, 5, payload={"by": "upsert"}, sent_s=1.0, answered_s=3.0)
    insert = _uncertain(payload={"by": "insert"}, mode="insert_only", sent_s=2.0)
    for answered_s in (3.0, 1.5):  # after, then before the insert was sent
        upsert.answered_s = answered_s
        ok = judge(PLAIN, {}, [upsert, insert], {1: upsert.points[1]})
        wrong = judge(PLAIN, {}, [upsert, insert], {1: insert.points[1]})
        assert ok.findings == [] and ok.uncertain_not_applied + ok.uncertain_applied == 1
        assert [f.detail["problem"] for f in wrong.findings] == ["corrupt"]


def test_an_uncertain_op_applied_to_some_of_its_points_only_is_caught() -> None:
    in_flight = _uncertain(payload={"by": "in flight"}, ids=(1, 2), sent_s=1.0)
    whole = judge(PLAIN, {}, [in_flight], {1: in_flight.points[1], 2: in_flight.points[2]})
    nothing = judge(PLAIN, {}, [in_flight], {})
    half = judge(PLAIN, {}, [in_flight], {1: in_flight.points[1]})
    assert whole.findings == [] and whole.uncertain_applied == 1
    assert nothing.findings == [] and nothing.uncertain_not_applied == 1
    assert [finding.check for finding in half.findings] == ["all_or_nothing"]


def test_named_upserts_carry_multivectors_of_one_to_three_rows_in_every_body_form() -> None:
    plan = Plan(Options().id_space)
    rng = random.Random(SEED)
    ops = [generate_op(rng, plan, writer_index=0, seq=seq) for seq in range(400)]
    row_counts: dict[str, set[int]] = {"points_named": set(), "batch_named": set()}
    is_colbert_left_out = False
    for op in ops:
        if op.form not in row_counts:
            continue
        body = json.loads(op.body)
        if op.form == "batch_named":
            matrices = body["batch"]["vectors"]["colbert"]
        else:
            vectors = [point["vector"] for point in body["points"]]
            is_colbert_left_out |= any("colbert" not in vector for vector in vectors)
            matrices = [vector["colbert"] for vector in vectors if "colbert" in vector]
        row_counts[op.form].update(len(matrix) for matrix in matrices)
        assert all(len(row) == 4 for matrix in matrices for row in matrix)
    assert row_counts == {"points_named": {1, 2, 3}, "batch_named": {1, 2, 3}}
    assert is_colbert_left_out, "no named upsert sent only some of the vectors"
    assert NAMED.create_body()["vectors"]["colbert"]["multivector_config"] == {
        "comparator": "max_sim"
    }


def test_a_torn_or_missing_multivector_is_a_lost_write() -> None:
    """An acknowledged upsert of a two-row matrix, read back (as retrieve answers it) whole,
    with a row lost, with one number changed, and without the multivector."""
    rows = [[0.5, -0.25, 0.0, 1.0], [0.125, 0.0, -1.0, 0.75]]
    upsert = _acked(Kind.UPSERT, 3, payload={"m": 1})
    upsert.collection = NAMED.name
    upsert.points = {1: make_point({"m": 1}, {"text": [0.5] * 4, "colbert": rows})}

    def read_back(colbert: list[list[float]] | None) -> dict[int, tuple]:
        vector: dict = {"text": [0.5] * 4} | ({"colbert": colbert} if colbert else {})
        return {1: observed_point(NAMED, {"id": 1, "payload": {"m": 1}, "vector": vector})}

    whole = judge(NAMED.name, {}, [upsert], read_back(rows))
    assert whole.findings == []
    changed = [rows[0], [0.125, 0.0, -1.0, 0.5]]
    for colbert in (rows[:1], changed, None):
        verdict = judge(NAMED.name, {}, [upsert], read_back(colbert))
        assert [f.detail["problem"] for f in verdict.findings] == ["corrupt"], colbert
        assert verdict.lost_ops == [upsert]


def test_a_maxsim_answer_the_retrieved_matrices_do_not_give_is_a_finding() -> None:
    """The MaxSim check on hand-computed scores (Euclid: the square root of the summed least
    squared distances). The query is point 1's rows and [1, 0, 0, 0]: point 1 scores 0.5,
    point 3 sqrt(0.75), point 2 sqrt(4.5); point 4 has no multivector. A server whose copy of
    point 1 lost a row, or whose scan lost point 1 or 3, or that scores point 4, is caught."""
    matrices = {
        1: [[0.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]],
        2: [[0.0, 0.0, 0.0, 1.0]],
        3: [[0.5, 0.0, 0.0, 0.0]],
    }
    points = {pid: make_point({"p": pid}, {"colbert": rows}) for pid, rows in matrices.items()}
    points[4] = make_point({"p": 4}, {"text": [0.0] * 4})
    query = [matrices[1][1], matrices[1][0], [1.0, 0.0, 0.0, 0.0]]
    one, two, three = (1, 0.5), (2, 4.5**0.5), (3, 0.75**0.5)
    answers = {
        "right": [one, three, two],
        "point 1 lost a row": [three, (1, 0.75**0.5), two],
        "point 1 not scanned": [three, two],
        "point 3 not scanned": [one, two],
        "point 4 scored": [one, three, (4, 0.0)],
    }
    problems = {}
    for label, answer in answers.items():
        checks = ReadChecks()
        hits = [{"id": pid, "score": score, "payload": {"p": pid}} for pid, score in answer]
        judge_maxsim(NAMED, "colbert", 1, query, hits, points, checks)
        assert checks.maxsim_sampled == 1
        problems[label] = [(f.check, f.detail["problem"]) for f in checks.findings]
    assert problems == {
        "right": [],
        "point 1 lost a row": [
            ("maxsim", "MaxSim score differs from the retrieved matrix's"),
            ("maxsim", "MaxSim hits are not the best-scoring matrices"),
        ],
        "point 1 not scanned": [("maxsim", "MaxSim query does not find the point")],
        "point 3 not scanned": [("maxsim", "MaxSim hits are not the best-scoring matrices")],
        "point 4 scored": [
            ("maxsim", "MaxSim query returned a point without the multivector"),
            ("maxsim", "MaxSim hits are not the best-scoring matrices"),
        ],
    }


def test_op_ids_must_be_unique_rising_and_above_those_before_the_restart() -> None:
    first = _acked(Kind.UPSERT, 7, payload={}, sent_s=1.0, answered_s=2.0)
    later = _acked(Kind.UPSERT, 6, payload={}, sent_s=3.0, answered_s=4.0)  # sent after 7
    twin = _acked(Kind.UPSERT, 7, payload={}, sent_s=1.0, answered_s=2.0)
    assert check_op_ids(PLAIN, [first], op_id_max_before=6) == []
    assert len(check_op_ids(PLAIN, [first], op_id_max_before=7)) == 1
    assert len(check_op_ids(PLAIN, [first, later], op_id_max_before=0)) == 1
    assert len(check_op_ids(PLAIN, [first, twin], op_id_max_before=0)) == 2


def test_keel_crashtest_refuses_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert keel_main(["crashtest", "--writers", "99"]) == 2
    assert "--writers must be between 1 and 12" in capsys.readouterr().err
    assert keel_main(["crashtest", "--command", "keel serve --port {port}"]) == 2
    assert "--command must contain {storage}" in capsys.readouterr().err


def _fake_acknowledged_upsert(ops: list[Op], plan: Plan) -> Op:
    """An upsert the writers never sent, claimed acknowledged after every real one, of a
    point that no op of the cycle touched (so nothing can explain its absence)."""
    # Untouched in every collection: the check below looks at uncertain ops of all of them.
    touched = {point_id for op in ops for point_id in op.ids}
    point_id = next(i for i in range(plan.stable_count, plan.id_space) if i not in touched)
    acked = [op for op in ops if op.is_acked and op.collection == PLAIN]
    assert not any(op.outcome in UNCERTAIN and point_id in op.ids for op in ops)
    fake = _acked(Kind.UPSERT, 0, payload={"never": "sent"}, ids=(point_id,))
    fake.op_id = max((op.op_id or 0 for op in acked), default=10**6) + 1
    fake.seq = 999_999
    fake.sent_s = fake.answered_s = max((op.answered_s for op in ops), default=0.0)
    return fake


def _acked(
    kind: Kind,
    op_id: int,
    payload: dict,
    ids: tuple[int, ...] = (1,),
    sent_s: float = 0.0,
    answered_s: float = 0.0,
) -> Op:
    op = Op(PLAIN, kind, ids, writer_index=0, seq=op_id, outcome=Outcome.ACKNOWLEDGED)
    op.op_id, op.sent_s, op.answered_s = op_id, sent_s, answered_s
    op.points = {point_id: make_point(payload, {UNNAMED: [0.5] * 8}) for point_id in ids}
    return op


def _uncertain(
    payload: dict, ids: tuple[int, ...] = (1,), mode: str = "upsert", sent_s: float = 0.0
) -> Op:
    op = Op(PLAIN, Kind.UPSERT, ids, writer_index=1, seq=0, outcome=Outcome.IN_FLIGHT)
    op.update_mode, op.sent_s = mode, sent_s
    op.points = {point_id: make_point(payload, {UNNAMED: [0.25] * 8}) for point_id in ids}
    return op


def test_power_loss_mode_clears_lazyfs_cache_after_every_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orchestration of --power-loss, with a stand-in for LazyFS (not installable here):
    mounted before the storage is used, one clear-cache per kill (recovery kills included),
    unmounted at the end. It says nothing about LazyFS itself."""
    fake = write_fake_lazyfs(tmp_path, "main")
    monkeypatch.setattr(tools.crashtest.lazyfs, "is_mounted", lambda path: path.is_dir())
    workdir = tmp_path / "work"
    options = Options(cycles=2, duration_s=1.0, writers=2, seed=SEED, workdir=workdir, lazyfs=fake)
    report = asyncio.run(run_crashtest(options))
    assert report["ok"], report["findings"]
    assert report["power_loss"] is True
    kills = report["cycles"] + report["recovery_kills"]
    assert report["unsynced_writes_dropped"] == kills
    log = (workdir / "fake-lazyfs.log").read_text().splitlines()
    assert log == ["received lazyfs::clear-cache", "answered"] * kills
    assert (workdir / "lazyfs-mount" / "storage" / "collections").is_dir()


def test_a_lazyfs_that_stops_answering_is_a_harness_failure_not_a_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """LazyFS answers the first clear-cache and then nothing: the run ends with exit 4 and a
    one-line reason on stderr, no traceback; the report says which cycle was not judged,
    holds the cycles checked before it, and the work directory is kept."""
    fake = write_fake_lazyfs(tmp_path, "main", answers_max=1)
    monkeypatch.setattr(tools.crashtest.lazyfs, "is_mounted", lambda path: path.is_dir())
    monkeypatch.setattr(tools.crashtest.lazyfs, "CLEAR_TIMEOUT_S", 2.0)
    monkeypatch.setattr(tools.crashtest.cli, "find_lazyfs", lambda binary: binary)  # no FUSE
    workdir, report_path = tmp_path / "work", tmp_path / "report.json"
    argv = ["--cycles", "3", "--duration", "1", "--writers", "2", "--seed", str(SEED)]
    argv += ["--power-loss", "--lazyfs", str(fake), "--workdir", str(workdir)]
    code = crashtest_main([*argv, "--report", str(report_path)])
    err = capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert code == 4, err
    assert "Traceback" not in err
    assert "crashtest: HARNESS FAILED in cycle" in err
    assert "did not answer lazyfs::clear-cache within 2.0 s" in err
    assert report["ok"] is False and report["lost_op_count"] == 0 and report["findings"] == []
    failure = report["harness_failure"]
    assert failure["cycle"] == report["cycles"] + 1
    assert "did not answer lazyfs::clear-cache" in failure["error"]
    assert [entry["cycle"] for entry in report["cycle_log"]] == list(range(1, failure["cycle"]))
    assert report["unsynced_writes_dropped"] == 1
    assert report["workdir_kept"] is True
    assert (workdir / "lazyfs-mount" / "storage" / "collections").is_dir()


def test_only_a_501_skips_a_payload_edit_an_error_is_a_finding(tmp_path: Path) -> None:
    """The payload-edit probe against a stand-in server: set_payload works, overwrite is not
    implemented (501: skipped, with the reason), delete answers 500 and clear 404 (both
    findings, never "skipped"); only the working edit goes into the load."""
    answers = {
        ("POST", "/collections/crashtest_probe/points/payload"): 200,
        ("PUT", "/collections/crashtest_probe/points/payload"): 501,
        ("POST", "/collections/crashtest_probe/points/payload/delete"): 500,
        ("POST", "/collections/crashtest_probe/points/payload/clear"): 404,
    }

    async def answer(request: web.Request) -> web.Response:
        status = answers.get((request.method, request.path), 200)
        body = {"result": True} if status == 200 else {"status": {"error": f"said {status}"}}
        return web.json_response(body, status=status)

    async def probe() -> tuple[tuple[Kind, ...], CrashTest]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        run = CrashTest(Options(), tmp_path, tamper=None)
        try:
            async with new_session(4) as session:
                kinds = await run._probe_payload_kinds(session, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()
        return kinds, run

    kinds, run = asyncio.run(probe())
    assert kinds == (Kind.SET_PAYLOAD,)
    assert run.skipped == {
        "payload edit overwrite_payload": "PUT .../points/payload answered 501: said 501"
    }
    problems = sorted((f.check, f.detail["problem"], f.detail["error"]) for f in run.findings)
    assert problems == [
        (
            "request",
            "payload edit probe clear_payload failed",
            "POST .../points/payload/clear answered 404: said 404",
        ),
        (
            "request",
            "payload edit probe delete_payload failed",
            "POST .../points/payload/delete answered 500: said 500",
        ),
    ]
    report = build_report(run)
    assert report["ok"] is False and exit_code(report) == 1


def test_power_loss_without_lazyfs_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["crashtest", "--power-loss", "--lazyfs", str(tmp_path / "no-such-lazyfs")]
    assert keel_main(argv) == 2
    err = capsys.readouterr().err
    assert "is not an executable file" in err and "github.com/dsrhaslab/lazyfs" in err


def test_alias_changes_must_survive_whole_and_in_order() -> None:
    """The alias checker on hand-made histories: an acknowledged change is never lost, the
    one in flight may be applied or not, but a two-action change never half."""
    model = AliasModel({"crashtest_alias_0": "a"})
    rng = random.Random(5)
    first = next_change(rng, model.aliases, ["a", "b"])
    first.outcome = "acknowledged"
    second = next_change(rng, first.after, ["a", "b"])
    second.outcome = "in_flight"
    assert judge_aliases(AliasModel(dict(model.aliases)), [first, second], first.after) == []
    assert judge_aliases(AliasModel(dict(model.aliases)), [first, second], second.after) == []
    lost = judge_aliases(AliasModel(dict(model.aliases)), [first, second], model.aliases)
    assert [finding.check for finding in lost] == ["alias"]
    move = AliasChange(
        [
            {"delete_alias": {"alias_name": "crashtest_alias_0"}},
            {"create_alias": {"alias_name": "crashtest_alias_0", "collection_name": "b"}},
        ],
        {"crashtest_alias_0": "b"},
        outcome="in_flight",
    )
    half = judge_aliases(AliasModel(dict(model.aliases)), [move], {})
    assert [finding.check for finding in half] == ["alias"]
