"""Dense vectors: the HNSW graphs and exact scores.

Owns: hnsw.py (hnswlib per named vector, checkpoints), scores.py (exact scores and their
order), engine/vectors/search_coalescer.py (concurrent searches coalesced into read-pool jobs).
May import: engine base modules, engine.filters.conditions, engine.wal.log, engine.store.store.
"""
