"""`python -m server [ARGS]` is `keel serve [ARGS]`, for running from a checkout."""

import sys

from server.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
