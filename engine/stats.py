"""Observation primitives the engine records into and a metrics exporter reads from.

Owns: `Histogram` (fixed bucket bounds, count, sum, smallest and largest value), its
read-only `HistogramSnapshot`, and the bucket bounds the engine uses.
Not here: exposition formats or any metrics library (server/api/metrics.py turns snapshots into
Prometheus text); what is measured where (engine/wal/log.py, applier.py).

Dependency-free on purpose: the engine must stay usable embedded, without prometheus_client,
and a lock plus a few integer adds per observation costs less than a microsecond next to
the fdatasync or LMDB commit being measured.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from dataclasses import dataclass

# Seconds: from a fast NVMe fdatasync (~100 us) to a stalled disk (limits.FSYNC_SLOW_S and
# beyond). The same bounds serve HTTP request latency.
LATENCY_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Counts (records per group commit, ops per applied batch): powers of two up to
# limits.APPEND_QUEUE_MAX, the most a group commit can take.
BATCH_SIZE_BUCKETS = tuple(float(2**exponent) for exponent in range(15))
BUCKETS_MAX = 64  # a histogram is a fixed, small array; more bounds is a mistake


@dataclass(frozen=True)
class HistogramSnapshot:
    """A consistent copy of a Histogram: `bucket_counts[i]` counts values <= upper_bounds[i]
    and above the previous bound (not cumulative); values above the last bound are in
    count but in no bucket."""

    upper_bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    count: int
    sum: float
    min_value: float | None  # None while count == 0
    max_value: float | None

    def cumulative_counts(self) -> list[int]:
        """Counts of values <= each bound, Prometheus's `le` buckets without +Inf."""
        running = 0
        cumulative = []
        for bucket_count in self.bucket_counts:
            running += bucket_count
            cumulative.append(running)
        return cumulative


class Histogram:
    """Counts observations into fixed buckets; safe to observe from one thread (an
    executor's) while another (the event loop, at scrape time) takes snapshots."""

    def __init__(self, upper_bounds: tuple[float, ...]) -> None:
        assert upper_bounds, "a histogram needs at least one bucket"
        assert len(upper_bounds) <= BUCKETS_MAX, len(upper_bounds)
        for lower, upper in itertools.pairwise(upper_bounds):
            assert lower < upper, f"bucket bounds must increase: {lower} then {upper}"
        assert math.isfinite(upper_bounds[-1]), "the +Inf bucket is implied, not listed"
        self.upper_bounds = tuple(upper_bounds)
        self._bucket_counts = [0] * len(upper_bounds)
        self._count = 0
        self._sum = 0.0
        self._min_value: float | None = None
        self._max_value: float | None = None
        # A snapshot must never see count updated but not its bucket: Prometheus requires
        # the +Inf bucket (count) to be >= every other bucket.
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Record one value (seconds, or a count)."""
        assert not math.isnan(value), "NaN observed"
        index = bisect.bisect_left(self.upper_bounds, value)
        with self._lock:
            if index < len(self._bucket_counts):
                self._bucket_counts[index] += 1
            self._count += 1
            self._sum += value
            if self._min_value is None or value < self._min_value:
                self._min_value = value
            if self._max_value is None or value > self._max_value:
                self._max_value = value

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            snapshot = HistogramSnapshot(
                upper_bounds=self.upper_bounds,
                bucket_counts=tuple(self._bucket_counts),
                count=self._count,
                sum=self._sum,
                min_value=self._min_value,
                max_value=self._max_value,
            )
        assert sum(snapshot.bucket_counts) <= snapshot.count, snapshot
        return snapshot
