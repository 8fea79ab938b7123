"""The `keel` commands other than `serve`: check, snapshot, migrate, follow, import.

Owns: server/commands/check_cli.py, server/commands/snapshot_cli.py (offline, on a storage directory), server/commands/migrate.py,
server/commands/follow.py, server/commands/import_cli.py and server/commands/transfer.py (HTTP clients of two servers).
May import: engine/, server base modules. Not the handlers or the app.
"""
