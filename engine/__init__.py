"""Keel's storage engine: WAL, LMDB store, HNSW indexes, applier, catalog. Knows no HTTP."""
