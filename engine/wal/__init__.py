"""The write-ahead log of a collection: segments, framing, readers, the op codec.

Owns: log.py (segmented log, group commit + fdatasync, recovery, truncation), format.py
(batch framing, CRCs, scans: torn tail vs corruption), reader.py (followers reading the live
log), engine/wal/op_codec.py (an op's CBOR in a record), engine/wal/followers.py (registered followers and how much
WAL they may hold back).
May import: engine base modules (ops, errors, limits, files, locks, logfmt, stats),
engine.filters.conditions. Never the store, vectors, query, the spine or server/.
"""
