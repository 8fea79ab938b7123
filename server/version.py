"""Keel's own version, the single source for pyproject.toml, `keel --version` and GET /.

Not Qdrant's version: the API version Keel speaks is the server's business (app.py).
"""

KEEL_VERSION = "0.1.0"
