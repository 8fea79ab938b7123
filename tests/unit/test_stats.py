"""engine/stats.py: histogram buckets, snapshots under a concurrent writer, and what the WAL
and applier record into them."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from engine.stats import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS_S, Histogram
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert


def test_a_value_lands_in_the_first_bucket_whose_bound_is_not_below_it():
    histogram = Histogram((1.0, 2.0, 4.0))
    for value in (0.5, 1.0, 1.5, 4.0, 9.0):
        histogram.observe(value)
    snapshot = histogram.snapshot()
    assert snapshot.bucket_counts == (2, 1, 1)  # 1.0 is `le 1.0`; 9.0 is only in +Inf
    assert snapshot.cumulative_counts() == [2, 3, 4]
    assert snapshot.count == 5
    assert snapshot.sum == pytest.approx(16.0)
    assert (snapshot.min_value, snapshot.max_value) == (0.5, 9.0)


def test_an_empty_histogram_has_no_min_or_max():
    snapshot = Histogram(LATENCY_BUCKETS_S).snapshot()
    assert snapshot.count == 0
    assert snapshot.bucket_counts == (0,) * len(LATENCY_BUCKETS_S)
    assert (snapshot.min_value, snapshot.max_value) == (None, None)


@pytest.mark.parametrize("bounds", [(), (2.0, 1.0), (1.0, 1.0), (1.0, float("inf"))])
def test_bad_bucket_bounds_are_our_bug(bounds):
    with pytest.raises(AssertionError):
        Histogram(bounds)


def test_snapshots_taken_while_a_thread_observes_are_consistent():
    """One writer thread observes while the test snapshots: no snapshot may show more in
    the buckets than in count (Prometheus requires +Inf >= every bucket), and nothing is
    lost."""
    histogram = Histogram(BATCH_SIZE_BUCKETS)
    observation_count = 20_000

    def observe_all() -> None:
        for index in range(observation_count):
            histogram.observe(float(index % 40_000))

    writer = threading.Thread(target=observe_all)
    writer.start()
    while writer.is_alive():
        snapshot = histogram.snapshot()
        assert sum(snapshot.bucket_counts) <= snapshot.count
    writer.join()
    snapshot = histogram.snapshot()
    assert snapshot.count == observation_count
    assert snapshot.sum == sum(float(index) for index in range(observation_count))


async def test_the_wal_and_applier_record_every_batch(tmp_path: Path):
    """Every op is in exactly one WAL batch and one applied batch, so the record and op
    histograms sum to the ops written; each batch is one fsync and one apply latency."""
    catalog = await open_catalog(tmp_path)
    try:
        await catalog.create("c", single_vector_config())
        collection = catalog.get("c")
        before = collection.metrics()
        assert (before.appended_op_id, before.applied_op_id) == (-1, -1)
        ops = [upsert([index], [[1.0, 0.0, 0.0, float(index)]]) for index in range(30)]
        await asyncio.gather(*(collection.update(op, wait=True, timeout_s=None) for op in ops))
        after = collection.metrics()
        assert after.appended_op_id == after.durable_op_id == after.applied_op_id == 29
        assert after.unapplied_bytes == 0
        assert after.index_vector_counts == {"": 30}
        assert after.wal_batch_record_count.sum == 30
        assert after.wal_fsync_latency_s.count == after.wal_batch_record_count.count >= 1
        assert after.apply_batch_op_count.sum == 30
        assert after.apply_batch_latency_s.count == after.apply_batch_op_count.count >= 1
        assert after.checkpoint_age_s >= 0
        assert collection.vector_counts() == {"": 30}
    finally:
        await catalog.close()
