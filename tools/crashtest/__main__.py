"""`python -m tools.crashtest [ARGS]` from a checkout is `keel crashtest [ARGS]`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
