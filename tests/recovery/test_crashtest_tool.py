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
import sys
from pathlib import Path

import pytest

import server.cli
import tools.crashtest.lazyfs
from server.cli import main as keel_main
from tools.crashtest import Options, run_crashtest
from tools.crashtest.aliases import AliasChange, AliasModel, judge_aliases, next_change
from tools.crashtest.cli import exit_code, summary_line
from tools.crashtest.model import check_op_ids, judge
from tools.crashtest.ops import UNCERTAIN, UNNAMED, Kind, Op, Outcome, make_point
from tools.crashtest.workload import COLLECTIONS, Plan

PLAIN = COLLECTIONS[0].name
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
    assert report["alias_changes_acknowledged"] > 0
    # Checks the server cannot answer yet are listed as skipped, with the server's reason.
    for check, why in report["skipped"].items():
        assert "answered 501" in why, (check, why)


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


def test_op_ids_must_be_unique_rising_and_above_those_before_the_restart() -> None:
    first = _acked(Kind.UPSERT, 7, payload={}, sent_s=1.0, answered_s=2.0)
    later = _acked(Kind.UPSERT, 6, payload={}, sent_s=3.0, answered_s=4.0)  # sent after 7
    twin = _acked(Kind.UPSERT, 7, payload={}, sent_s=1.0, answered_s=2.0)
    assert check_op_ids(PLAIN, [first], op_id_max_before=6) == []
    assert len(check_op_ids(PLAIN, [first], op_id_max_before=7)) == 1
    assert len(check_op_ids(PLAIN, [first, later], op_id_max_before=0)) == 1
    assert len(check_op_ids(PLAIN, [first, twin], op_id_max_before=0)) == 2


def test_keel_crashtest_outside_a_checkout_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Installed from a wheel, `server` has no tools/ beside it: a clear message, exit 2."""
    monkeypatch.setattr(server.cli, "__file__", str(tmp_path / "site-packages/server/cli.py"))
    assert keel_main(["crashtest", "--cycles", "1"]) == 2
    assert "crashtest runs from a Keel source checkout" in capsys.readouterr().err


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


FAKE_LAZYFS = '''#!{python}
"""Stands in for lazyfs: no FUSE and no cache, only the faults FIFO protocol."""
import os, sys, tomllib
config = tomllib.load(open(sys.argv[sys.argv.index("--config-path") + 1], "rb"))["faults"]
for path in (config["fifo_path"], config["fifo_path_completed"]):
    if not os.path.exists(path):
        os.mkfifo(path)
log_path = os.path.join(os.path.dirname(config["fifo_path"]), "fake-lazyfs-commands.log")
while True:
    with open(config["fifo_path"]) as faults:
        for line in faults:
            with open(log_path, "a") as log:
                log.write(line)
            if line.strip() == "lazyfs::clear-cache":
                with open(config["fifo_path_completed"], "w") as done:
                    done.write("done\\n")
'''


def test_power_loss_mode_clears_lazyfs_cache_after_every_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orchestration of --power-loss, with a stand-in for LazyFS (not installable here):
    mounted before the storage is used, one clear-cache per kill (recovery kills included),
    unmounted at the end. It says nothing about LazyFS itself."""
    fake = tmp_path / "lazyfs"
    fake.write_text(FAKE_LAZYFS.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setattr(tools.crashtest.lazyfs, "is_mounted", lambda path: path.is_dir())
    workdir = tmp_path / "work"
    options = Options(cycles=2, duration_s=1.0, writers=2, seed=SEED, workdir=workdir, lazyfs=fake)
    report = asyncio.run(run_crashtest(options))
    assert report["ok"], report["findings"]
    assert report["power_loss"] is True
    kills = report["cycles"] + report["recovery_kills"]
    assert report["unsynced_writes_dropped"] == kills
    commands = (workdir / "fake-lazyfs-commands.log").read_text().split()
    assert commands == ["lazyfs::clear-cache"] * kills
    assert (workdir / "lazyfs-mount" / "storage" / "collections").is_dir()


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
