"""`keel check`: the offline verification and repair of a stopped storage directory.

Owns: engine/check/check.py (config, WAL, WAL <-> LMDB, checkpoints; repair), engine/store/store.py (one LMDB store,
value by value).
May import: every engine layer, the spine included. Nothing imports it but server/commands.
"""
