"""Every read of a collection.

Owns: engine/query/reads.py (retrieve, scroll, count, search: consistent reads, filtered planning),
universal.py (the universal query's executor), plan.py (its plan types), universal_reads.py
(its exact scans and sparse search), scores.py (fusion, recommend, discover, context, MMR),
engine/query/distance_matrix.py, engine/query/facets.py, engine/query/payload_selection.py.
May import: every engine layer below the spine (base, filters, wal, store, vectors).
"""
