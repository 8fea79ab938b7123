"""Strict mode: a collection's limits on the requests it serves, checked before they run.

Owns, in four modules: `checks.py`, the checks of each kind of request against the
collection's StrictModeConfig (pure functions over typed requests: limits, timeout, filters on
unindexed fields, filter size, search params, full scans, batch sizes, collection size, sparse
vector lengths, payload index count); `fields.py`, what a filter or formula asks of the
payload indexes and how big it is; `rate_limits.py`, the token buckets of the read and write
rate limits and what each request costs; `memory.py`, the process's resident memory share.
Not here: the config type and its merge (engine/ops.py StrictModeConfig), parsing it
(server/wire/collection_config.py), the facts a check needs about the collection and where
the checks run (engine/collection.py `Collection.check_read` / `check_writes`, called by the
handlers in server/api/).
May import: engine's base, filters and query layers (below it; engine/collection.py uses it).

Qdrant 1.19, read in its source: `StrictModeVerification` and its impls
(lib/collection/src/operations/verification/), the order of the checks in
`check_strict_mode_toc_batch` (lib/storage/src/content_manager/collection_verification.rs:
batch size, then each request, then the timeout), and what each module names. Every check
applies only while `enabled` is true; the errors are Qdrant's texts: `<what>. Help: <how>` or
`Max ... reached!` (400 `Bad request: ...`), `Rate limiting exceeded: ...` (429).
"""
