"""Keel's HTTP side: Qdrant's REST API over the engine, plus configuration and the CLI.

Owns: parsing, validating, shaping responses, config, process lifecycle.
Not here: any storage logic (that is engine/, which never imports this package).
"""
