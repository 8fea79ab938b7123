"""`keel crashtest`: prove on your own build and configuration that acknowledged writes
survive `kill -9`.

It starts Keel (or the user's `--command`) on a scratch storage directory, drives it with
concurrent writers over HTTP, SIGKILLs it at a random moment of every cycle, restarts it on
the same storage, and checks the restarted server against a model of what the writers were
told: every acknowledged or completed op is there with exactly its data, ops in flight at
the kill are each all-or-nothing, op ids are unique and increase, and retrieve, search,
`points_count`, scroll and count agree. The seed fixes every op and every kill moment.

Modules, in the order a run uses them:
  cli.py       flags, report destination, exit codes
  runner.py    the run: setup, cycles, clean restart, report
  target.py    the server process: command template, readiness, SIGKILL/SIGTERM
  lazyfs.py    --power-loss: the LazyFS mount and its clear-cache handshake
  workload.py  collections, the op mix, request bodies, writers
  ops.py       an op and its outcome; what each op does to a point
  model.py     the checker, and why it is sound with ops of unknown fate
  verify.py    reads after a restart and the read paths that must agree
  client.py    JSON requests for the checks

The tool is installed with Keel as the package `keel_crashtest` (this directory), which
`keel crashtest` runs; from a checkout, `python -m tools.crashtest` runs it too.
"""

from .cli import main
from .runner import Options, SetupError, run_crashtest

__all__ = ["Options", "SetupError", "main", "run_crashtest"]
