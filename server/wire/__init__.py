"""Qdrant's JSON <-> engine types: parsing and validating request bodies.

Owns: server/wire/schemas.py, server/wire/serde_text.py, server/wire/filters.py, server/wire/query.py,
server/wire/formula.py, server/wire/upsert.py, server/wire/updates.py,
server/wire/collection_config.py, server/wire/collection_update.py, server/wire/op_requests.py (an op back into a REST request).
May import: engine/, server base modules (responses, config, logs, version). No handler,
no aiohttp application.
"""
