"""The handlers, grouped like Qdrant's API tags, and what they share (server/api/context.py).

Each handler parses (server/wire/), validates, calls one engine method and shapes the
answer (server/responses.py).
May import: engine/, server base modules, server/wire/.
"""
