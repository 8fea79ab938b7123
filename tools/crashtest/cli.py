"""The crash test's command line: `keel crashtest ...` or `python -m tools.crashtest ...`.

Owns: flags, their bounds, the report's destination, exit codes.
Not here: the run itself (runner.py).

Exit codes: 0 nothing lost or wrong; 1 something was lost or wrong (or the server did not
come back after a kill); 2 usage error; 3 the test could not begin (the server does not
start, or the storage directory is not empty); 4 the harness failed mid-run (LazyFS did
not answer or exited): no verdict, the report holds what was checked until then. A loss
found before a harness failure still exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .lazyfs import LazyFsMissing, find_lazyfs
from .model import COMPONENT_OPS_MAX
from .runner import Options, SetupError, dump_report, run_crashtest
from .target import DEFAULT_COMMAND, ServerCommand

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_NOT_BEGUN = 3
EXIT_HARNESS_FAILED = 4  # never 1: a broken harness is not evidence that data was lost
# Bounds on the flags: a run must stay a test, not a denial of service of the machine.
CYCLES_MAX = 100_000
DURATION_S_MAX = 3_600.0
WRITERS_MAX = 12  # one uncertain op per writer: the checker's joint search is 2**writers
assert WRITERS_MAX <= COMPONENT_OPS_MAX, "more writers than the checker resolves jointly"
ID_SPACE_MIN = 20  # a fifth of them, the stable ids, must hold one payload edit
ID_SPACE_MAX = 100_000


def main(argv: Sequence[str] | None = None) -> int:
    """Run the crash test from the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options = _options(args)
    except ValueError as error:
        parser.print_usage(sys.stderr)
        print(f"crashtest: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"crashtest: seed={options.seed} cycles={options.cycles} "
        f"duration_s={options.duration_s} writers={options.writers} "
        f"command={options.command or 'this checkout'}",
        file=sys.stderr,
        flush=True,
    )
    try:
        report = asyncio.run(run_crashtest(options))
    except SetupError as error:
        print(f"crashtest: could not begin: {error}", file=sys.stderr)
        return EXIT_NOT_BEGUN
    _write_report(report, args.report)
    for check, why in report["skipped"].items():
        print(f"crashtest: skipped {check}: {why}", file=sys.stderr)
    print(summary_line(report), file=sys.stderr)
    return exit_code(report)


def exit_code(report: dict[str, Any]) -> int:
    if report["ok"]:
        return EXIT_OK
    if report["findings_by_check"] or report["harness_failure"] is None:
        return EXIT_FOUND
    return EXIT_HARNESS_FAILED


def summary_line(report: dict[str, Any]) -> str:
    counts = (
        f"{report['cycles']} cycles, {report['acknowledged_ops']} acknowledged ops, "
        f"{report['lost_op_count']} lost"
    )
    if report["ok"]:
        return f"crashtest: OK: {counts}, nothing wrong (seed {report['seed']})"
    failure = report["harness_failure"]
    if failure is not None and not report["findings_by_check"]:
        return (
            f"crashtest: HARNESS FAILED in cycle {failure['cycle']}, no verdict on it: "
            f"{failure['error']}. Checked before it: {counts}, nothing wrong "
            f"(seed {report['seed']}); storage and logs kept in {report['workdir']}"
        )
    found = ", ".join(f"{check}={count}" for check, count in report["findings_by_check"].items())
    harness = "" if failure is None else f"; then the harness failed: {failure['error']}"
    return (
        f"crashtest: FAILED: {counts}; findings: {found or 'none'}{harness}; "
        f"rerun with --seed {report['seed']}; storage and server logs kept in {report['workdir']}"
    )


def _write_report(report: dict[str, Any], path: Path | None) -> None:
    data = dump_report(report)
    if path is None:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
    else:
        path.write_bytes(data + b"\n")


def _options(args: argparse.Namespace) -> Options:
    _check_range("--cycles", args.cycles, 1, CYCLES_MAX)
    _check_range("--duration", args.duration, 0.1, DURATION_S_MAX)
    _check_range("--writers", args.writers, 1, WRITERS_MAX)
    _check_range("--ids", args.ids, ID_SPACE_MIN, ID_SPACE_MAX)
    _check_range("--ready-timeout", args.ready_timeout, 1.0, DURATION_S_MAX)
    ServerCommand.parse(args.command)  # ValueError names a missing placeholder
    lazyfs = None
    if args.power_loss:
        try:
            lazyfs = find_lazyfs(args.lazyfs)
        except LazyFsMissing as error:
            raise ValueError(str(error)) from None
    elif args.lazyfs is not None:
        raise ValueError("--lazyfs is used only with --power-loss")
    seed = random.SystemRandom().randrange(2**32) if args.seed is None else args.seed
    return Options(
        cycles=args.cycles,
        duration_s=args.duration,
        writers=args.writers,
        seed=seed,
        command=args.command,
        workdir=args.workdir,
        id_space=args.ids,
        ready_timeout_s=args.ready_timeout,
        is_keep_going=args.keep_going,
        is_keep_workdir=args.keep,
        lazyfs=lazyfs,
    )


def _check_range(flag: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{flag} must be between {low} and {high}, got {value}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keel crashtest",
        description=(
            "Crash-test a Keel server: load it with concurrent writers, SIGKILL it at random "
            "moments, restart it, and check that every acknowledged write survived."
        ),
    )
    add = parser.add_argument
    add("--cycles", type=int, default=10, help="kill/restart cycles (default 10)")
    add(
        "--duration",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds per cycle; the kill comes at a random moment within it (default 3)",
    )
    add("--writers", type=int, default=4, help="concurrent writers (default 4)")
    add("--seed", type=int, help="seed of every op and kill moment (default: random, printed)")
    add(
        "--command",
        metavar="TEMPLATE",
        help=(
            "server command with {storage} and {port} (optional: {host}, {python}); "
            f"default: {DEFAULT_COMMAND!r} from this checkout"
        ),
    )
    add(
        "--workdir",
        type=Path,
        metavar="DIR",
        help=(
            "where storage and server logs go (default: a new temporary directory, "
            "removed after a passing run)"
        ),
    )
    add("--report", type=Path, metavar="FILE", help="write the JSON report here (default: stdout)")
    add(
        "--ids",
        type=int,
        default=1000,
        help="point ids per collection; fewer ids, more collisions (default 1000)",
    )
    add(
        "--ready-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a restart may take to answer /readyz 200 (default 60)",
    )
    add(
        "--power-loss",
        action="store_true",
        help=(
            "put the storage on LazyFS and drop every unsynced write after each kill, as a "
            "power cut would (needs LazyFS built from source; the error says how)"
        ),
    )
    add("--lazyfs", type=Path, metavar="PATH", help="the lazyfs binary (default: on PATH)")
    add("--keep-going", action="store_true", help="continue after a cycle with findings")
    add("--keep", action="store_true", help="keep the work directory after a passing run")
    return parser
