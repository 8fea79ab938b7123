"""Every bound the engine enforces, in one place, and the settings that may tighten them.

Owns: hard limits (constants) and `EngineSettings`, the tunables a config file may set.
Not here: parsing config files (server/config.py) or validating client input (server/wire/schemas.py).

Config may lower a limit, never remove it: `EngineSettings.validated()` checks that.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

REQUEST_BODY_BYTES_MAX = 32 * MIB  # same as Qdrant's service.max_request_size_mb default
RECORD_BYTES_MAX = 64 * MIB  # one WAL record, after CBOR encoding
GROUP_COMMIT_BYTES_MAX = 64 * MIB  # bytes in one write + fdatasync
SEGMENT_BYTES_TARGET = 128 * MIB  # a segment is sealed once it passes this
APPEND_QUEUE_MAX = 10_000  # appends waiting for the WAL writer
UNAPPLIED_BYTES_MAX = 512 * MIB  # acknowledged, not yet in LMDB + hnswlib
APPLY_BATCH_OPS_MAX = 1_000  # ops in one LMDB transaction
APPLY_BATCH_BYTES_MAX = 64 * MIB  # encoded bytes of ops in one LMDB transaction
FSYNC_SLOW_S = 1.0  # log a warning past this [etcd: 1 s]
BACKPRESSURE_DEADLINE_S = 30.0  # how long an append waits for budget before Overloaded
CHECKPOINT_EVERY_OPS = 10_000  # index checkpoint after this many applied ops ...
CHECKPOINT_EVERY_S = 60.0  # ... or this many seconds with anything new applied
LMDB_MAP_BYTES_INITIAL = 1 * GIB  # grown by doubling on MapFullError
LMDB_MAP_BYTES_MAX = 16 * 1024 * GIB
INDEX_CAPACITY_INITIAL = 1_024  # hnswlib max_elements at creation; grows by doubling
VECTOR_DIM_MAX = 65_536  # Qdrant's vectors.size bound
VECTOR_NAMES_MAX = 64  # named vectors per collection
# Qdrant sets no maximum here; an m of 10**6 would exhaust memory at the first add, so Keel
# refuses values far past anything useful (hnswlib's authors suggest m 2..100).
HNSW_M_MAX = 512
HNSW_EF_CONSTRUCT_MAX = 65_536
POINTS_PER_REQUEST_MAX = 100_000
PLAN_CANDIDATES_MAX = 1_000_000  # point keys an index lookup may collect before a scan wins
PAYLOAD_INDEXES_MAX = 256  # payload indexes per collection
COLLECTION_NAME_BYTES_MAX = 255
SCROLL_LIMIT_MAX = 100_000  # points in one scroll page (Qdrant has no maximum)
BATCH_OPERATIONS_MAX = 1_000  # operations in one points/batch request
FILTER_JSON_DEPTH_MAX = 100  # nesting of a filter's JSON (Qdrant's parser stops at 128)
PREFETCH_DEPTH_MAX = 64  # nesting of query prefetch trees (Qdrant has none)
# Nesting of objects and arrays in one point's payload. Qdrant's JSON parser stops near 124
# levels inside an upsert body; Keel's WAL decoder (cbor2) stops at 400 and Python's deepcopy
# near 1000, so an unbounded payload could be acknowledged and then fail to apply.
PAYLOAD_DEPTH_MAX = 100
COLLECTIONS_MAX = 1_000  # each holds an LMDB environment, 4 threads and a WAL file open
REPLAY_PROGRESS_EVERY_S = 5.0  # recovery logs progress at most this often
# How long a request that arrives during recovery waits for the storage to open before
# 503 (service.recovery_wait_s): a client that waits for `/` and then works, as Qdrant's
# test harness does, is held rather than refused. Clients time out well before the max.
RECOVERY_WAIT_S = 60.0
RECOVERY_WAIT_S_MAX = 600.0
BROKEN_TAIL_BYTES_MAX = (
    GROUP_COMMIT_BYTES_MAX + 64 * KIB
)  # more than this after the last batch is corruption
SNAPSHOT_SMALL_MEMBER_BYTES_MAX = MIB  # a snapshot's manifest.json or config.json
# A snapshot is one compact LMDB copy (at most the map) plus small members and tar headers.
SNAPSHOT_BYTES_MAX = LMDB_MAP_BYTES_MAX + 64 * MIB
# WAL kept back for registered followers (engine/wal/followers.py) beyond what recovery needs;
# past it the WAL is truncated anyway and the follower is marked lost (it must re-migrate).
FOLLOWER_RETENTION_BYTES = 1 * GIB
FOLLOWER_RETENTION_BYTES_MAX = 1024 * GIB

assert GROUP_COMMIT_BYTES_MAX >= RECORD_BYTES_MAX  # a batch can always take one record
assert SEGMENT_BYTES_TARGET >= GROUP_COMMIT_BYTES_MAX
assert UNAPPLIED_BYTES_MAX >= 2 * RECORD_BYTES_MAX
assert APPLY_BATCH_BYTES_MAX >= RECORD_BYTES_MAX  # an apply batch can always take one op
assert REQUEST_BODY_BYTES_MAX <= RECORD_BYTES_MAX  # float32 records are smaller than JSON
assert LMDB_MAP_BYTES_MAX >= LMDB_MAP_BYTES_INITIAL
assert BROKEN_TAIL_BYTES_MAX > GROUP_COMMIT_BYTES_MAX
assert 0 <= RECOVERY_WAIT_S <= RECOVERY_WAIT_S_MAX
assert SNAPSHOT_BYTES_MAX > LMDB_MAP_BYTES_MAX + 2 * SNAPSHOT_SMALL_MEMBER_BYTES_MAX


@dataclass(frozen=True)
class EngineSettings:
    """Tunables of the storage engine; every field is bounded by the constants above."""

    segment_bytes_target: int = SEGMENT_BYTES_TARGET
    unapplied_bytes_max: int = UNAPPLIED_BYTES_MAX
    backpressure_deadline_s: float = BACKPRESSURE_DEADLINE_S
    checkpoint_every_ops: int = CHECKPOINT_EVERY_OPS
    checkpoint_every_s: float = CHECKPOINT_EVERY_S
    apply_batch_ops_max: int = APPLY_BATCH_OPS_MAX
    fsync_slow_s: float = FSYNC_SLOW_S
    lmdb_map_bytes_initial: int = LMDB_MAP_BYTES_INITIAL
    follower_retention_bytes_max: int = FOLLOWER_RETENTION_BYTES

    def validated(self) -> EngineSettings:
        """Return self, or raise ValueError naming the setting that breaks a hard limit."""
        checks = {
            "segment_bytes_target": 64 * KIB <= self.segment_bytes_target <= SEGMENT_BYTES_TARGET,
            # Any budget works: one op alone is always admitted, however large.
            "unapplied_bytes_max": MIB <= self.unapplied_bytes_max <= 64 * UNAPPLIED_BYTES_MAX,
            "backpressure_deadline_s": 0 <= self.backpressure_deadline_s <= 3600,
            "checkpoint_every_ops": 1 <= self.checkpoint_every_ops <= 100_000_000,
            "checkpoint_every_s": 0.1 <= self.checkpoint_every_s <= 86_400,
            "apply_batch_ops_max": 1 <= self.apply_batch_ops_max <= 100 * APPLY_BATCH_OPS_MAX,
            "fsync_slow_s": 0 < self.fsync_slow_s <= 3600,
            "lmdb_map_bytes_initial": MIB <= self.lmdb_map_bytes_initial <= LMDB_MAP_BYTES_MAX,
            # 0 is allowed: followers then never hold the WAL back (and are lost at once).
            "follower_retention_bytes_max": (
                0 <= self.follower_retention_bytes_max <= FOLLOWER_RETENTION_BYTES_MAX
            ),
        }
        for name, is_ok in checks.items():
            if not is_ok:
                raise ValueError(f"setting {name}={getattr(self, name)!r} is out of bounds")
        return self
