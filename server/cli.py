"""The `keel` command: `keel serve`, `keel config`, `keel check`, `keel wal dump`,
`keel snapshot`, `keel crashtest`, `keel --version`.

Owns: command-line parsing, turning flags into config overrides, exit codes.
Not here: what the settings mean (config.py) or how the server runs (run.py).

Exit codes: 0 clean stop, 1 the server failed (port in use, storage locked, corruption),
2 usage or configuration error. `keel check` and `keel wal dump` exit 0 sound, 1 damage
found, 2 could not check (server/commands/check_cli.py); `keel crashtest` with the tool's own codes
(tools/crashtest/cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server.config import ConfigError, Settings, load_settings, render_toml
from server.version import KEEL_VERSION

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_USAGE = 2
TRANSFER_COMMANDS = {
    "migrate": "copy collections of a running Keel to Qdrant or another Keel (see README)",
    "follow": "replay a running Keel's new writes on the migration target, continuously",
    "import": "copy collections from Qdrant (or another Keel) into a running Keel",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `keel` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "crashtest":
        return _crashtest(args.args)
    if args.command == "snapshot":
        from server.commands.snapshot_cli import (
            main as snapshot_main,  # loads the engine: only here
        )

        return snapshot_main(args.args)
    if args.command in TRANSFER_COMMANDS:
        return _transfer(args.command, args.args)
    try:
        settings = _settings(args)
    except ConfigError as error:
        print(f"keel: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "config":
        sys.stdout.write(render_toml(settings))
        return 0
    if args.command == "check":
        return _check(settings, args)
    if args.command == "wal":
        return _wal(settings, args)
    assert args.command == "serve", args.command
    return _serve(settings)


def _serve(settings: Settings) -> int:
    if sys.flags.optimize:
        # `python -O` strips every assert, and Keel's asserts guard acknowledged data.
        print(
            "keel: refusing to start under python -O / PYTHONOPTIMIZE: "
            "Keel's assertions are part of its safety checks",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # Imported here so that `keel --version` and `keel config` work without loading the
    # engine, and a broken engine import is reported by the command that needs it.
    import uvloop

    from server.malloc_arenas import limit_arenas
    from server.run import serve

    limit_arenas()  # before any thread exists: every pool thread shares the two arenas

    try:
        # uvloop: measured ~7 % more searches/s (8 clients), ~3 % more 1-point writes/s and
        # ~5 % fewer points/s for 1000-point bodies than asyncio's own loop (README "Benchmark").
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(settings))
    except Exception:
        log.critical("keel crashed", exc_info=True)
        return EXIT_FAILED
    finally:
        # The storage is closed; what is left is interpreter teardown, whose garbage
        # collections walk every object still alive (module globals, the closed catalog's
        # cycles, dicts keyed by point id). That took 0.15-0.7 s after "stopped" on a 2-core
        # machine, growing with the data; frozen objects are skipped, so exiting takes
        # 20-60 ms. Garbage in cycles is then never finalized, which loses nothing: the
        # storage is closed and fsynced, and logging's atexit hook still flushes the logs.
        gc.freeze()


def _check(settings: Settings, args: argparse.Namespace) -> int:
    from server.commands.check_cli import run_check

    return run_check(settings.storage_path, settings.engine, args.collection, args.repair)


def _wal(settings: Settings, args: argparse.Namespace) -> int:
    from server.commands.check_cli import run_wal_dump

    assert args.wal_action == "dump", args.wal_action
    return run_wal_dump(settings.storage_path, args.collection, args.from_op_id)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[tuple[str, ...], Any] = {}
    if args.storage is not None:
        overrides[("storage", "storage_path")] = args.storage
    if args.host is not None:
        overrides[("service", "host")] = args.host
    if args.port is not None:
        overrides[("service", "http_port")] = args.port
    return load_settings(args.config, overrides=overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keel", description="Keel: a durable vector database speaking Qdrant's REST API."
    )
    parser.add_argument("--version", action="version", version=f"keel {KEEL_VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the server (default config: 127.0.0.1:6333)")
    serve.add_argument("--version", action="version", version=f"keel {KEEL_VERSION}")
    config = commands.add_parser("config", help="print the effective configuration as TOML")
    check = commands.add_parser(
        "check",
        help="verify a stopped storage: WAL, LMDB, indexes (exit 1 on damage)",
        description="Verify WAL framing and CRCs, every LMDB value's checksum, the id map "
        "both ways, derived indexes, and that each HNSW checkpoint holds exactly what LMDB "
        "says. Exit 0 sound, 1 damage found, 2 could not check (e.g. a server is running).",
    )
    check.add_argument(
        "--collection", action="append", metavar="C", help="check only C (repeatable)"
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="rebuild derived data (vector, payload and sparse indexes) from LMDB",
    )
    wal_command = commands.add_parser("wal", help="inspect write-ahead logs (offline)")
    wal_actions = wal_command.add_subparsers(dest="wal_action", metavar="ACTION", required=True)
    dump = wal_actions.add_parser("dump", help="print WAL records: op id, kind, ids, bytes")
    dump.add_argument("--collection", metavar="C", help="only collection C")
    dump.add_argument(
        "--from", dest="from_op_id", type=int, default=0, metavar="OP", help="first op id"
    )
    for command in (serve, config, check, dump):
        _add_setting_flags(command)
    # Every argument goes to the tool, which parses its own (prefix_chars: none are ours).
    crashtest = commands.add_parser(
        "crashtest",
        help="crash-test a Keel build: kill -9 under load, restart, check (see README)",
        add_help=False,
        prefix_chars="\0",
    )
    crashtest.add_argument("args", nargs=argparse.REMAINDER)
    snapshot = commands.add_parser(
        "snapshot",
        help="create, list, restore collection snapshots of a stopped server (offline)",
        add_help=False,
        prefix_chars="\0",
    )
    snapshot.add_argument(
        "args", nargs=argparse.REMAINDER
    )  # server/commands/snapshot_cli.py parses
    for command_name, help_text in TRANSFER_COMMANDS.items():
        transfer = commands.add_parser(
            command_name, help=help_text, add_help=False, prefix_chars="\0"
        )
        transfer.add_argument("args", nargs=argparse.REMAINDER)  # the command's module parses
    return parser


def _transfer(command: str, argv: list[str]) -> int:
    """`keel migrate`, `keel follow`, `keel import`. They need qdrant-client and httpx, which
    the server does not: the `migrate` extra installs them; without it, one line says how."""
    try:
        import httpx  # noqa: F401
        import qdrant_client  # noqa: F401
    except ImportError as error:
        print(
            f"keel {command}: needs the migrate extra (qdrant-client and httpx), which is not "
            f"installed ({error}); install it with: pip install 'keel[migrate]' (in a "
            "checkout: pip install '.[migrate]')",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if command == "migrate":
        from server.commands.migrate import main as command_main
    elif command == "follow":
        from server.commands.follow import main as command_main
    else:
        from server.commands.import_cli import main as command_main
    return command_main(argv)


def _crashtest(argv: list[str]) -> int:
    """Run the crash-test tool, installed with Keel as `keel_crashtest` (tools/crashtest/).

    Imported here, not at the top: the tool is only loaded when asked for.
    """
    from keel_crashtest import main as crashtest_main

    return crashtest_main(argv)


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML file (see config.example.toml)"
    )
    parser.add_argument("--storage", metavar="DIR", help="storage directory (storage.storage_path)")
    parser.add_argument("--host", metavar="H", help="address to listen on (service.host)")
    parser.add_argument("--port", type=int, metavar="P", help="HTTP port (service.http_port)")


if __name__ == "__main__":
    sys.exit(main())
