"""The LMDB store of a collection, and what every write does to it.

Owns: engine/store/store.py (the LMDB environment: id map, payloads, vectors, sparse inverted index,
applied_op_id), engine/store/mutations.py (each op's effect inside one LMDB transaction), engine/store/checksum.py
(CRCs sealing values), engine/store/payload_index.py (payload indexes in LMDB), engine/store/planner.py (a filter ->
index lookups selecting a superset of its points).
May import: engine base modules, engine.filters.conditions, engine.wal.log.
"""
