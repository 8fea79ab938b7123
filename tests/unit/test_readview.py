"""The read view (engine/readview/): what searches read instead of LMDB.

Goal: the view a collection keeps up to date batch by batch is, after any mix of writes,
exactly the view loaded afresh from LMDB, and a filtered search through it answers what an
exact scan answers. Method: random writes (upserts, deletes, payload edits, index creation
and removal) in batches, comparing the incremental view with `ReadView.load` after each;
unit checks of each structure; searches racing with writes only ever see committed points.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine import readview
from engine.errors import CorruptionError
from engine.filters.conditions import compile_filter
from engine.ops import (
    CollectionConfig,
    CreateFieldIndex,
    DeleteFieldIndex,
    DeletePoints,
    HnswSettings,
    PayloadMode,
    PayloadSelector,
    SearchRequest,
    UpdatePayload,
    point_key,
)
from engine.query.reads import compile_filter_with_indexes
from engine.readview import ReadView
from engine.readview.labels import LabelTable
from engine.readview.postings import FieldPostings, Postings
from engine.readview.vectors import VectorCache
from engine.store import payload_index
from engine.store.payload_index import AllOf, AnyOf, IndexSpec, KeySet, ValueEqual, ValueRange
from engine.store.store import IndexDelta, Store
from engine.vectors.hnsw import VectorIndex
from server.wire.filters import parse_filter
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert


def test_vector_cache_reuses_rows_and_drops_unknown_labels() -> None:
    cache = VectorCache(2)
    cache.put([0, 1, 2], np.array([[0, 0], [1, 1], [2, 2]], dtype=np.float32))
    cache.remove([1])
    cache.put([5], np.array([[5, 5]], dtype=np.float32))  # takes row 1 back
    labels, vectors = cache.vectors(np.array([5, 1, 2, 99, 0]))
    assert labels.tolist() == [5, 2, 0]
    assert vectors.tolist() == [[5, 5], [2, 2], [0, 0]]
    seen = {int(label): row.tolist() for chunk in cache.chunks(2) for label, row in zip(*chunk)}
    assert seen == {0: [0, 0], 5: [5, 5], 2: [2, 2]}
    assert cache.live_count == 3
    many = np.arange(10, 3000)
    cache.put(many, np.repeat(many[:, None], 2, axis=1).astype(np.float32))  # grows
    assert cache.vectors(np.array([2999]))[1].tolist() == [[2999, 2999]]


def test_vector_cache_raises_for_a_damaged_vector_only_when_it_is_read() -> None:
    cache = VectorCache(2)
    cache.put([0], np.zeros((1, 2), dtype=np.float32))
    cache.damaged[1] = "LMDB value fails its checksum: database=v: key=01"
    assert cache.vectors(np.array([0]))[0].tolist() == [0]
    with pytest.raises(CorruptionError, match="checksum"):
        cache.vectors(np.array([0, 1]))
    with pytest.raises(CorruptionError, match="checksum"):
        list(cache.chunks(10))
    cache.remove([1])  # the point was overwritten: its damaged vector is gone
    assert len(list(cache.chunks(10))) == 1


def test_label_table_maps_both_ways_and_forgets_dead_labels() -> None:
    table = LabelTable()
    table.add(3, b"\x00a", 7)
    table.add(4, b"\x00b", 8)
    table.add(5, b"\x00a", 9)  # a new version of point a
    table.kill(3)
    assert table.key_of(3) is None and table.key_of(5) == b"\x00a" and table.key_of(10**6) is None
    assert table.label_of(b"\x00a") == 5 and table.version_of(5) == 9
    assert table.is_live(np.array([3, 4, 5, 10**6])).tolist() == [False, True, True, False]
    assert table.labels_of([b"\x00b", b"\x00zz", b"\x00a"]).tolist() == [4, 5]
    assert table.live_count == 2


def test_label_table_gives_point_ids_in_bulk_and_decodes_uuids() -> None:
    table = LabelTable()
    ids = [0, 1, 2**63, 2**64 - 1]
    for label, point_id in enumerate(ids):
        table.add(label, point_key(point_id), 1)
    table.add(5000, point_key(42), 1)  # past the initial capacity: the ids grow with it
    assert table.ids_of(np.array([3, 5000, 0, 2])) == [2**64 - 1, 42, 0, 2**63]
    assert all(type(point_id) is int for point_id in table.ids_of(np.array([1, 2])))
    some_uuid = uuid.UUID("5c56c793-69f3-4fbf-87e6-c4bf54c28c26")
    table.add(6000, point_key(some_uuid), 1)
    assert table.ids_of(np.array([6000, 1])) == [some_uuid, 1]
    table.kill(6000)
    assert table.ids_of(np.array([5000, 1])) == [42, 1]


def test_postings_resolve_lookups_to_live_labels() -> None:
    table = LabelTable()
    for label in range(6):
        table.add(label, bytes([0, label]), label)
    postings = Postings()
    words = FieldPostings(IndexSpec("w", "keyword", None))
    numbers = FieldPostings(IndexSpec("n", "integer", None))
    postings.fields = {"w": words, "n": numbers}
    word = payload_index.encode_keyword
    number = payload_index.encode_float
    for label in range(6):
        words.add(word("even" if label % 2 == 0 else "odd"), label, label)
        numbers.add(number(float(label)), label, label)
    table.kill(2)
    table.set_version(0, 10)  # a payload edit: label 0's entries above are no longer current
    words.add(word("even"), 0, 10)
    numbers.add(number(0.0), 0, 10)
    resolve = postings.resolve
    assert resolve(ValueEqual("w", word("even")), table).tolist() == [0, 4]
    assert resolve(ValueEqual("w", word("none")), table).tolist() == []
    assert resolve(ValueRange("n", number(1.0), number(3.0)), table).tolist() == [1, 3]
    both = AllOf((ValueEqual("w", word("odd")), ValueRange("n", number(2.0), number(9.0))))
    assert resolve(both, table).tolist() == [3, 5]
    either = AnyOf((ValueEqual("w", word("odd")), ValueEqual("n", number(0.0))))
    assert resolve(either, table).tolist() == [0, 1, 3, 5]
    assert resolve(KeySet(frozenset({bytes([0, 4]), bytes([0, 2])})), table).tolist() == [4]
    # A field the view does not mirror: LMDB must answer, never a superset.
    assert resolve(AllOf((ValueEqual("w", word("odd")), ValueEqual("t", b"x"))), table) is None
    assert postings.estimate(ValueEqual("w", word("even"))) == 4  # old entries count
    compacted = words.compacted(table)
    assert compacted.entry_count == 5 and compacted.entries_at_build == 5
    assert compacted.labels_equal(word("even"), table).tolist() == [0, 4]


def _snapshot(view: ReadView) -> dict:
    """Everything a view holds, in a comparable form."""
    table = view.labels
    live = np.nonzero(table.live_mask)[0].tolist()
    vectors = {}
    for name, cache in view.vectors.items():
        rows = {}
        for labels, matrix in cache.chunks(1 << 20):
            rows.update({int(label): row.tolist() for label, row in zip(labels, matrix)})
        vectors[name] = rows
    postings = {
        name: {value: field.labels_equal(value, table).tolist() for value in field.by_value}
        for name, field in list(view.postings.fields.items())
        if not field.is_implicit  # compared with a fresh scan instead
    }
    postings = {
        name: {value: labels for value, labels in field.items() if labels}
        for name, field in postings.items()
    }
    return {
        "labels": {label: (table.key_of(label), table.version_of(label)) for label in live},
        "vectors": vectors,
        "postings": postings,
    }


async def test_the_view_kept_by_the_applier_is_the_view_loaded_from_lmdb(tmp_path: Path) -> None:
    """Random batches while a thread searches with filters on the same fields, indexed or
    not (so the view builds implicit postings for unindexed ones, racing with the batches):
    after each batch the view equals a fresh load, and each implicit field equals a fresh
    scan of the payloads."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    rng = np.random.default_rng(11)
    ops_of_kind = {
        "upsert": lambda: upsert(
            rng.integers(0, 200, 20).tolist(),
            rng.standard_normal((20, 4)),
            [{"k": f"v{rng.integers(4)}", "n": int(rng.integers(10))} for _ in range(20)],
        ),
        "delete": lambda: DeletePoints(rng.integers(0, 200, 10).tolist()),
        "delete_by_filter": lambda: DeletePoints(
            [], parse_filter({"must": [{"key": "n", "match": {"value": int(rng.integers(10))}}]})
        ),
        "set_payload": lambda: UpdatePayload(
            None,
            PayloadMode.SET,
            {"k": f"v{rng.integers(4)}"},
            filter=parse_filter({"must": [{"key": "n", "range": {"lt": int(rng.integers(10))}}]}),
        ),
        "create_index": lambda: CreateFieldIndex(
            *[("k", "keyword"), ("n", "integer")][rng.integers(2)]
        ),
        "drop_index": lambda: DeleteFieldIndex(["k", "n"][rng.integers(2)]),
    }
    kinds = list(ops_of_kind)
    stop = threading.Event()
    search_filters = [
        parse_filter({"must": [{"key": "k", "match": {"value": "v1"}}]}),
        parse_filter({"must": [{"key": "n", "range": {"gte": 3, "lte": 6}}]}),
    ]

    def search_until_stopped() -> None:
        while not stop.is_set():
            for filter_ in search_filters:
                query = np.ones(4, dtype=np.float32)
                collection._reader.search(SearchRequest("", query, limit=5, filter=filter_))

    searcher = threading.Thread(target=search_until_stopped)
    searcher.start()
    implicit_seen = set()
    try:
        for _round in range(40):
            count = int(rng.integers(1, 5))
            ops = [ops_of_kind[kinds[rng.integers(len(kinds))]]() for _ in range(count)]
            assert await collection.update_many(ops, wait=True, timeout_s=None)
            with collection._visibility_lock.shared():
                view = collection.read_view
                kept = _snapshot(view)
                loaded_view = ReadView.load(collection._store, collection.config)
                loaded = _snapshot(loaded_view)
                implicit = {n: f for n, f in view.postings.fields.items() if f.is_implicit}
                for name, field_postings in implicit.items():
                    fresh = loaded_view._scanned(collection._store, field_postings.spec)
                    assert _entries(field_postings, view) == _entries(fresh, view), name
                    implicit_seen.add(name)
            assert kept == loaded
    finally:
        stop.set()
        searcher.join()
    assert kept["labels"] and implicit_seen, "the rounds exercised nothing"
    await catalog.close()


def _entries(field_postings: FieldPostings, view: ReadView) -> dict[bytes, list[int]]:
    found = {
        value: field_postings.labels_equal(value, view.labels).tolist()
        for value in field_postings.by_value
    }
    return {value: labels for value, labels in found.items() if labels}


async def test_filtered_searches_through_the_view_answer_as_an_exact_scan(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    rng = np.random.default_rng(3)
    count = 3000
    payloads = [{"k": f"v{i % 50}", "half": f"h{i % 2}", "n": i % 100} for i in range(count)]
    await collection.update(
        upsert(list(range(count)), rng.standard_normal((count, 4)), payloads),
        wait=True,
        timeout_s=None,
    )
    for op in [CreateFieldIndex("k", "keyword"), CreateFieldIndex("half", "keyword")]:
        await collection.update(op, wait=True, timeout_s=None)
    await collection.wait_indexed()
    filters_ = [
        {"must": [{"key": "k", "match": {"value": "v7"}}]},  # indexed, exact, 2 %
        {
            "must": [
                {"key": "k", "match": {"any": ["v1", "v2"]}},
                {"key": "half", "match": {"value": "h1"}},
            ]
        },
        {"must": [{"key": "half", "match": {"value": "h0"}}]},  # indexed, 50 %: the graph
        {"must": [{"key": "n", "range": {"gte": 10, "lt": 60}}]},  # unindexed, 50 %
        {"must": [{"key": "n", "match": {"value": 3}}]},  # unindexed, 1 %
        {"must": [{"key": "k", "match": {"value": "v7"}}], "must_not": [{"has_id": [7, 57]}]},
    ]
    found_count = wanted_count = 0
    for data in filters_:
        filter_ = parse_filter(data)
        for _ in range(8):
            query = rng.standard_normal(4).astype(np.float32)
            searched = await collection.search(
                SearchRequest(
                    "", query, limit=10, filter=filter_, with_payload=PayloadSelector(False)
                )
            )
            exact = await collection.search(
                SearchRequest("", query, limit=10, filter=filter_, is_exact=True)
            )
            exact_ids = [hit.id for hit in exact]
            assert len(searched) == len(exact)
            found_count += len({hit.id for hit in searched} & set(exact_ids))
            wanted_count += len(exact_ids)
            check = compile_filter(filter_)
            matching = {i for i in range(count) if check(i, payloads[i], [""])}
            assert {hit.id for hit in searched} <= matching, data
            for hit in searched:
                assert hit.version is not None and hit.payload is None
    assert found_count >= 0.95 * wanted_count, (found_count, wanted_count)
    await catalog.close()


async def test_searches_racing_with_writes_see_only_committed_points(tmp_path: Path) -> None:
    """A writer replaces and deletes points while searches run in threads: every hit is a
    point that exists with a payload matching the filter at some committed state."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    rng = np.random.default_rng(9)
    await collection.update(CreateFieldIndex("k", "keyword"), wait=True, timeout_s=None)
    await collection.update(
        upsert(list(range(400)), rng.standard_normal((400, 4)), [{"k": "a"}] * 400),
        wait=True,
        timeout_s=None,
    )
    stop = threading.Event()
    failures: list[str] = []
    filter_ = parse_filter({"must": [{"key": "k", "match": {"value": "a"}}]})

    def search_until_stopped() -> None:
        local = np.random.default_rng(1)
        while not stop.is_set():
            query = local.standard_normal(4).astype(np.float32)
            for request in [
                SearchRequest("", query, limit=20, filter=filter_),
                SearchRequest("", query, limit=20),
            ]:
                for hit in collection._reader.search(request):
                    if hit.id >= 400 or (request.filter and hit.payload != {"k": "a"}):
                        failures.append(f"{hit.id} {hit.payload}")

    threads = [threading.Thread(target=search_until_stopped) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(30):
            ids = rng.integers(0, 400, 50).tolist()
            payload = {"k": "b"} if round_ % 2 else {"k": "a"}
            await collection.update(
                upsert(ids, rng.standard_normal((50, 4)), [payload] * 50), wait=True, timeout_s=None
            )
            await collection.update(DeletePoints(ids[:5]), wait=True, timeout_s=None)
            await asyncio.sleep(0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    await catalog.close()


def test_implicit_postings_built_between_prepare_and_commit_get_the_batch(
    tmp_path: Path,
) -> None:
    """The race `ReadView.apply` covers: a search builds implicit postings (a scan that
    cannot see the batch) after the applier prepared the batch's entries without them."""
    store = Store(tmp_path / "lmdb", [""], 1 << 22)
    config = single_vector_config()
    filter_ = parse_filter({"must": [{"key": "u", "match": {"value": "x"}}]})
    first = upsert([1, 2], np.ones((2, 4)), [{"u": "x"}, {"u": "y"}])
    store.write_batch([(0, first)], compile_filter=compile_filter_with_indexes)
    view = ReadView.load(store, config)
    prepared = []

    def before_commit(delta: IndexDelta) -> None:
        prepared.append(view.prepare(delta))
        view.ensure_implicit(filter_, store.index_specs, store)  # the racing search

    second = upsert([3, 2], np.ones((2, 4)), [{"u": "x"}, {"u": "x"}])
    store.write_batch(
        [(1, second)],
        compile_filter=compile_filter_with_indexes,
        on_prepared=before_commit,
        on_committed=lambda delta: view.apply(delta, prepared[-1], store),
    )
    field_postings = view.postings.fields["u"]
    labels = field_postings.labels_equal(payload_index.encode_keyword("x"), view.labels)
    keys = sorted(view.labels.key_of(label) for label in labels.tolist())
    assert keys == [point_key(1), point_key(2), point_key(3)]
    store.close()


async def test_an_unindexed_field_with_too_many_values_is_not_mirrored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readview, "IMPLICIT_VALUES_MAX", 5)
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    payloads = [{"few": f"f{i % 3}", "many": f"m{i}"} for i in range(40)]
    await collection.update(
        upsert(list(range(40)), np.ones((40, 4)), payloads), wait=True, timeout_s=None
    )
    query = np.ones(4, dtype=np.float32)
    for data, expected in [
        ({"key": "many", "match": {"value": "m7"}}, [7]),
        ({"key": "few", "match": {"value": "f1"}}, list(range(1, 40, 3))),
    ]:
        filter_ = parse_filter({"must": [data]})
        hits = await collection.search(SearchRequest("", query, limit=40, filter=filter_))
        assert sorted(hit.id for hit in hits) == expected
    assert set(collection.read_view.postings.fields) == {"few"}
    await catalog.close()


async def test_broad_exact_filters_post_filter_the_graph_by_membership(tmp_path: Path) -> None:
    """With the full scan threshold at 1 KiB every filter here is "broad": the graph is
    searched and its hits kept if the postings (real or implicit) hold them."""
    catalog = await open_catalog(tmp_path)
    config = single_vector_config()
    await catalog.create("c", CollectionConfig(config.vectors, HnswSettings(full_scan_threshold=1)))
    collection = catalog.get("c")
    rng = np.random.default_rng(21)
    count = 3000
    payloads = [{"half": f"h{i % 2}", "third": f"t{i % 3}", "u": f"u{i % 2}"} for i in range(count)]
    await collection.update(
        upsert(list(range(count)), rng.standard_normal((count, 4)), payloads),
        wait=True,
        timeout_s=None,
    )
    for field_name in ("half", "third"):
        await collection.update(CreateFieldIndex(field_name, "keyword"), wait=True, timeout_s=None)
    await collection.wait_indexed()
    filters_ = [
        {"must": [{"key": "half", "match": {"value": "h1"}}]},
        {
            "must": [
                {"key": "half", "match": {"value": "h0"}},
                {"key": "third", "match": {"value": "t1"}},
            ]
        },
        {"must": [{"key": "u", "match": {"value": "u0"}}]},  # unindexed: implicit postings
    ]
    found_count = wanted_count = 0
    for data in filters_:
        filter_ = parse_filter(data)
        check = compile_filter(filter_)
        for _ in range(10):
            query = rng.standard_normal(4).astype(np.float32)
            searched = await collection.search(SearchRequest("", query, limit=10, filter=filter_))
            exact = await collection.search(
                SearchRequest("", query, limit=10, filter=filter_, is_exact=True)
            )
            assert all(check(hit.id, payloads[hit.id], [""]) for hit in searched), data
            assert len(searched) == 10
            found_count += len({hit.id for hit in searched} & {hit.id for hit in exact})
            wanted_count += len(exact)
    assert found_count >= 0.95 * wanted_count, (found_count, wanted_count)
    assert "u" in collection.read_view.postings.fields
    await catalog.close()


async def test_a_broad_filter_first_asks_the_graph_for_wanted_over_selectivity_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post-filtered search's first graph search at hnsw_ef 32 asks for 10 / selectivity x
    OVERFETCH_FACTOR hits, at an ef at least that: 40 at 50 % (not only the 32 candidates
    an unfiltered search looks at, which lost recall), 200 at 10 %."""
    catalog = await open_catalog(tmp_path)
    config = single_vector_config()
    await catalog.create("c", CollectionConfig(config.vectors, HnswSettings(full_scan_threshold=1)))
    collection = catalog.get("c")
    count = 2000
    payloads = [{"half": f"h{i % 2}", "tenth": f"t{i % 10}"} for i in range(count)]
    rng = np.random.default_rng(5)
    await collection.update(
        upsert(list(range(count)), rng.standard_normal((count, 4)), payloads),
        wait=True,
        timeout_s=None,
    )
    await collection.wait_indexed()
    searches: list[tuple[int, int]] = []
    search = VectorIndex.search

    def spy(self: VectorIndex, vector: np.ndarray, k: int, ef: int, label_filter=None):
        searches.append((k, ef))
        return search(self, vector, k, ef, label_filter)

    monkeypatch.setattr(VectorIndex, "search", spy)
    for field_name, value, expected in [("half", "h1", (40, 40)), ("tenth", "t3", (200, 200))]:
        searches.clear()
        filter_ = parse_filter({"must": [{"key": field_name, "match": {"value": value}}]})
        request = SearchRequest("", np.ones(4, dtype=np.float32), limit=10, filter=filter_)
        hits = await collection.search(replace(request, hnsw_ef=32))
        assert len(hits) == 10 and all(payloads[hit.id][field_name] == value for hit in hits)
        assert searches[0] == expected, field_name
    await catalog.close()


async def test_numeric_ranges_through_postings_keep_their_strict_bounds(tmp_path: Path) -> None:
    """Ranges are exact lookups (no payload check): `gt 5` must not take 5 or 5.0, `lt 5`
    not -0.0 < 5 wrongly, and arrays match by any element; indexed and implicit alike."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    values = [5, 5.0, 5.5, 4, -0.0, 0, 6, [1, 9], [5], 2**53 + 1, "5", True, None]
    count = len(values)
    payloads = [{"n": value, "m": value} for value in values]
    await collection.update(
        upsert(list(range(count)), np.ones((count, 4)), payloads), wait=True, timeout_s=None
    )
    await collection.update(CreateFieldIndex("n", "float"), wait=True, timeout_s=None)
    ranges = [{"gt": 5}, {"gte": 5}, {"lt": 5}, {"lte": 5.5}, {"gt": 0}, {"lt": 0},
              {"gt": 4, "lt": 6}, {"gte": 2**53}]  # fmt: skip
    for bounds in ranges:
        for key in ("n", "m"):  # indexed, and unindexed (implicit postings)
            filter_ = parse_filter({"must": [{"key": key, "range": bounds}]})
            check = compile_filter(filter_)
            expected = sorted(i for i in range(count) if check(i, payloads[i], [""]))
            request = SearchRequest("", np.ones(4, dtype=np.float32), limit=50, filter=filter_)
            found = sorted(hit.id for hit in await collection.search(request))
            assert found == expected, (key, bounds)
    await catalog.close()


def test_vector_cache_loads_rows_in_chunks_and_notes_damaged_ones() -> None:
    rows = [(label, np.full(3, label, dtype="<f4").tobytes(), "") for label in range(10_000)]
    rows[5_000] = (5_000, None, "LMDB value fails its checksum: database=v: key=1388")
    cache = VectorCache(3)
    cache.load(iter(rows))
    assert cache.live_count == 9_999 and set(cache.damaged) == {5_000}
    labels, vectors = cache.vectors(np.array([0, 4_097, 9_999]))
    assert labels.tolist() == [0, 4_097, 9_999]
    assert vectors[:, 0].tolist() == [0.0, 4_097.0, 9_999.0]


async def test_no_implicit_postings_past_the_points_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readview, "IMPLICIT_POINTS_MAX", 10)
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    payloads = [{"u": f"u{i % 2}"} for i in range(20)]
    await collection.update(
        upsert(list(range(20)), np.ones((20, 4)), payloads), wait=True, timeout_s=None
    )
    filter_ = parse_filter({"must": [{"key": "u", "match": {"value": "u1"}}]})
    request = SearchRequest("", np.ones(4, dtype=np.float32), limit=20, filter=filter_)
    hits = await collection.search(request)
    assert sorted(hit.id for hit in hits) == list(range(1, 20, 2))
    assert collection.read_view.postings.fields == {}
    await catalog.close()
