"""The dashboard in a real headless Chromium against a real Keel server with data.

Goal: every view loads without console errors and shows what the API says; the console
runs a query; the points browser pages and filters; a write on another connection moves
the durability view's op ids; a read-only key hides write actions; a bad key shows Keel's
401 text. Method: Selenium drives Debian's Chromium (conftest.py); each number on the page
is compared with the same number read from the API by urllib.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine import files
from engine.catalog import Catalog
from engine.collection import Collection
from engine.limits import EngineSettings
from server.app import create_app
from server.version import KEEL_VERSION
from tests.browser.conftest import API_KEY, READ_ONLY_KEY, api_call
from tests.keel_process import KeelProcess, wait_until

KEY_STORAGE = "keel-dashboard-api-key"  # server/dashboard/api.js
VIEWS = ("collections", "points", "console", "durability", "vectors", "snapshots")
# Network errors that are no fault of the page: the read-only probe (api.js probeAccess) is a
# write Keel refuses on purpose, and Chromium asks for /favicon.ico (which needs a key) for
# the priming page of open_view, sometimes after the log was drained (the dashboard's own
# page declares an inline icon).
EXPECTED_NETWORK_ERRORS = ("/collections/aliases", "/favicon.ico")
VIEW_TIMEOUT_S = 15.0
HOVER_FIRST_DOT = """
const canvas = document.getElementById("vectors-canvas");
const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
for (let index = 3; index < pixels.length; index += 4) {
  if (pixels[index] < 200) continue;
  const x = ((index - 3) / 4) % canvas.width;
  const y = Math.floor((index - 3) / 4 / canvas.width) + 2;  // 2 px into the dot
  const box = canvas.getBoundingClientRect();
  canvas.dispatchEvent(new MouseEvent("mousemove", {
    clientX: box.left + x * box.width / canvas.width,
    clientY: box.top + y * box.height / canvas.height,
    bubbles: true,
  }));
  return [x, y];
}
return null;
"""


def open_view(
    browser: Any, server: Any, view: str, key: str = API_KEY, *, wait: bool = True
) -> None:
    """Open `#/view` of `server` (anything with a `url`) with `key` already in session
    storage (as if typed earlier); with `wait`, until the view is drawn."""
    browser.get(f"{server.url}/dashboard/style.css")  # same origin, no API call
    browser.execute_script("sessionStorage.setItem(arguments[0], arguments[1])", KEY_STORAGE, key)
    # The priming page's own requests.
    wait_until(lambda: browser.execute_script("return document.readyState") == "complete")
    browser.get_log("browser")
    browser.get(f"{server.url}/dashboard#/{view}")
    if wait:
        wait_until(lambda: elements(browser, f"#view-{view.split('/')[0]}"), VIEW_TIMEOUT_S)


def elements(browser: Any, selector: str) -> list[Any]:
    return browser.find_elements("css selector", selector)


def text_of(browser: Any, selector: str) -> str:
    """The element's visible text, read in one script: the durability view redraws every 2 s,
    so an element found first and read after could already be gone."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
    return browser.execute_script(script, selector).strip()


def console_errors(browser: Any) -> list[dict]:
    """SEVERE browser log entries since the last call, minus the expected probe."""
    return [
        entry
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE"
        and not (
            entry["source"] == "network"
            and any(path in entry["message"] for path in EXPECTED_NETWORK_ERRORS)
        )
    ]


def scroll_ids(server: KeelProcess, body: dict) -> tuple[list[Any], Any]:
    status, answer = api_call(server.url, "POST", "/collections/cities/points/scroll", body)
    assert status == 200, answer
    return [point["id"] for point in answer["result"]["points"]], answer["result"][
        "next_page_offset"
    ]


def attribute_values(browser: Any, selector: str, attribute: str) -> list[str]:
    """`attribute` of every element matching `selector`, read in one script (a page redrawing
    meanwhile cannot leave a stale element between the find and the read)."""
    script = (
        "return [...document.querySelectorAll(arguments[0])]"
        ".map((element) => element.getAttribute(arguments[1]));"
    )
    return browser.execute_script(script, selector, attribute)


def row_ids(browser: Any, selector: str = "#points-rows tr[data-point-id]") -> list[int]:
    return [int(value) for value in attribute_values(browser, selector, "data-point-id")]


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_loads_without_console_errors(
    browser: Any, keel_server: KeelProcess, screenshots_dir: Path, view: str
) -> None:
    open_view(browser, keel_server, view)
    ready_selector = {
        "collections": "#collections-table tr[data-collection]",
        "points": "#points-rows tr[data-point-id]",
        "console": "#console-examples li",
        "durability": "#durability-body [data-collection='cities']",
        "vectors": "#vectors-count",
        "snapshots": "#full-snapshots",
    }[view]
    wait_until(lambda: elements(browser, ready_selector), VIEW_TIMEOUT_S)
    assert text_of(browser, "#banner") == ""
    browser.save_screenshot(str(screenshots_dir / f"dashboard-{view}.png"))
    assert console_errors(browser) == []


def test_the_collections_view_shows_the_apis_numbers(
    browser: Any, keel_server: KeelProcess
) -> None:
    open_view(browser, keel_server, "collections")
    wait_until(lambda: elements(browser, "#collections-table tr[data-collection]"), VIEW_TIMEOUT_S)
    for name in ("cities", "named"):
        status, info = api_call(keel_server.url, "GET", f"/collections/{name}")
        assert status == 200
        row = f"#collections-table tr[data-collection='{name}']"
        shown = text_of(browser, f"{row} [data-field='points_count']")
        assert shown == str(info["result"]["points_count"])
    assert "city: keyword" in text_of(browser, "#collections-table tr[data-collection='cities']")
    assert "text: 4 Cosine" in text_of(browser, "#collections-table tr[data-collection='named']")


def test_the_console_runs_a_query(browser: Any, keel_server: KeelProcess) -> None:
    open_view(browser, keel_server, "console")
    editor = elements(browser, "#console-input")[0]
    count_example = [
        item for item in elements(browser, "#console-examples li") if item.text == "Count"
    ]
    count_example[0].click()
    assert editor.get_attribute("value").startswith("POST collections/my_collection/points/count")
    editor.clear()
    editor.send_keys(
        'POST collections/cities/points/query\n{"query": [0.2, 0.1, 0.9, 0.7], "limit": 3}'
    )
    elements(browser, "#console-run")[0].click()
    wait_until(lambda: text_of(browser, "#console-status"), VIEW_TIMEOUT_S)
    assert text_of(browser, "#console-status") == "HTTP 200"
    assert text_of(browser, "#console-time").endswith(" ms")
    shown = json.loads(text_of(browser, "#console-answer"))
    _, expected = api_call(
        keel_server.url,
        "POST",
        "/collections/cities/points/query",
        {"query": [0.2, 0.1, 0.9, 0.7], "limit": 3},
    )
    assert [hit["id"] for hit in shown["result"]["points"]] == [
        hit["id"] for hit in expected["result"]["points"]
    ]
    history = browser.execute_script(
        "return localStorage.getItem('keel-dashboard-console-history')"
    )
    assert "POST collections/cities/points/query" in history


def test_the_console_shows_keels_error_for_bad_input(
    browser: Any, keel_server: KeelProcess
) -> None:
    open_view(browser, keel_server, "console")
    editor = elements(browser, "#console-input")[0]
    editor.clear()
    editor.send_keys("GET collections/no_such_collection")
    elements(browser, "#console-run")[0].click()
    wait_until(lambda: text_of(browser, "#console-status"), VIEW_TIMEOUT_S)
    _, expected = api_call(keel_server.url, "GET", "/collections/no_such_collection")
    assert text_of(browser, "#console-status") == "HTTP 404"
    assert expected["status"]["error"] in text_of(browser, "#console-output .error-box")


def test_the_points_browser_pages_and_filters(browser: Any, keel_server: KeelProcess) -> None:
    open_view(browser, keel_server, "points/cities")
    wait_until(lambda: row_ids(browser), VIEW_TIMEOUT_S)
    first_page, next_offset = scroll_ids(keel_server, {"limit": 20})
    assert row_ids(browser) == first_page
    elements(browser, "#points-next")[0].click()
    second_page, _ = scroll_ids(keel_server, {"limit": 20, "offset": next_offset})
    wait_until(lambda: row_ids(browser) == second_page, VIEW_TIMEOUT_S)

    city_filter = {"must": [{"key": "city", "match": {"value": "Rome"}}]}
    filtered, _ = scroll_ids(keel_server, {"limit": 20, "filter": city_filter})
    filter_input = elements(browser, "#points-filter")[0]
    filter_input.clear()
    filter_input.send_keys(json_text(city_filter))
    elements(browser, "#points-apply")[0].click()
    wait_until(lambda: row_ids(browser) == filtered, VIEW_TIMEOUT_S)
    assert filtered and all(point_id % 6 == 3 for point_id in filtered)  # Rome: CITIES[3]

    refused = {"must": [{"key": "city", "match": {"nonsense": 1}}]}
    status, answer = api_call(
        keel_server.url, "POST", "/collections/cities/points/scroll", {"filter": refused}
    )
    assert status in (400, 422)
    filter_input.clear()
    filter_input.send_keys(json_text(refused))
    elements(browser, "#points-apply")[0].click()
    wait_until(lambda: text_of(browser, "#points-filter-error"), VIEW_TIMEOUT_S)
    assert text_of(browser, "#points-filter-error") == answer["status"]["error"]


def test_find_similar_runs_a_query_by_id(browser: Any, keel_server: KeelProcess) -> None:
    open_view(browser, keel_server, "points/cities")
    wait_until(lambda: row_ids(browser), VIEW_TIMEOUT_S)
    first_id = row_ids(browser)[0]
    elements(browser, f"#points-rows tr[data-point-id='{first_id}'] .find-similar")[0].click()
    wait_until(lambda: elements(browser, "#similar tr[data-point-id]"), VIEW_TIMEOUT_S)
    _, expected = api_call(
        keel_server.url,
        "POST",
        "/collections/cities/points/query",
        {"query": first_id, "limit": 10},
    )
    shown = row_ids(browser, "#similar tr[data-point-id]")
    assert shown == [hit["id"] for hit in expected["result"]["points"]]

    elements(browser, f"#points-rows tr[data-point-id='{first_id}'] .open-point")[0].click()
    wait_until(lambda: text_of(browser, "#point-opened pre"), VIEW_TIMEOUT_S)
    _, point = api_call(keel_server.url, "GET", f"/collections/cities/points/{first_id}")
    assert json.loads(text_of(browser, "#point-opened pre")) == point["result"]


def test_find_similar_uses_the_first_named_vector(browser: Any, keel_server: KeelProcess) -> None:
    open_view(browser, keel_server, "points/named")
    wait_until(lambda: row_ids(browser), VIEW_TIMEOUT_S)
    elements(browser, "#points-rows tr[data-point-id='1'] .find-similar")[0].click()
    wait_until(lambda: elements(browser, "#similar"), VIEW_TIMEOUT_S)
    assert '"using":"image"' in text_of(browser, "#similar")  # the first name Keel lists
    assert elements(browser, "#similar .error-box") == []


def test_a_write_elsewhere_moves_the_durability_views_op_ids(
    browser: Any, keel_server: KeelProcess
) -> None:
    open_view(browser, keel_server, "durability")
    card = "#durability-body [data-collection='cities']"
    wait_until(lambda: text_of(browser, f"{card} [data-field='applied_op_id']"), VIEW_TIMEOUT_S)
    status, before = api_call(keel_server.url, "GET", "/durability")
    assert status == 200
    (cities,) = [c for c in before["result"]["collections"] if c["name"] == "cities"]
    assert text_of(browser, f"{card} [data-field='applied_op_id']") == str(cities["applied_op_id"])
    point = {"id": 10_000, "vector": [0.1, 0.2, 0.3, 0.4], "payload": {"city": "Lima"}}
    status, written = api_call(
        keel_server.url, "PUT", "/collections/cities/points?wait=true", {"points": [point]}
    )
    assert status == 200, written
    op_id = str(written["result"]["operation_id"])
    assert op_id != str(cities["applied_op_id"])
    for field in ("appended_op_id", "durable_op_id", "applied_op_id"):
        wait_until(lambda f=field: text_of(browser, f"{card} [data-field='{f}']") == op_id, 10)


def test_a_read_only_key_hides_write_actions(browser: Any, keel_server: KeelProcess) -> None:
    open_view(browser, keel_server, "collections", key=API_KEY)
    wait_until(lambda: elements(browser, "#create-form"), VIEW_TIMEOUT_S)
    assert elements(browser, "#create-form")[0].is_displayed()
    assert any(button.is_displayed() for button in elements(browser, "[data-action='delete']"))
    open_view(browser, keel_server, "collections", key=READ_ONLY_KEY)
    wait_until(lambda: text_of(browser, "#access") == "read-only", VIEW_TIMEOUT_S)
    wait_until(lambda: elements(browser, "#collections-table"), VIEW_TIMEOUT_S)
    assert not elements(browser, "#create-form")[0].is_displayed()
    assert not any(button.is_displayed() for button in elements(browser, "[data-action='delete']"))
    open_view(browser, keel_server, "snapshots", key=READ_ONLY_KEY)
    wait_until(lambda: elements(browser, "#full-snapshots"), VIEW_TIMEOUT_S)
    assert not elements(browser, "#snapshot-create")[0].is_displayed()
    assert elements(browser, "#full-snapshots")[0].is_displayed()


def test_a_bad_key_shows_keels_401_text(browser: Any, keel_server: KeelProcess) -> None:
    _, expected = api_call(keel_server.url, "GET", "/collections", key="not-the-key")
    assert expected == "Invalid API key or JWT"
    open_view(browser, keel_server, "collections", key="not-the-key", wait=False)
    wait_until(lambda: text_of(browser, "#banner"), VIEW_TIMEOUT_S)
    assert text_of(browser, "#banner") == f"401: {expected}"
    key_input = elements(browser, "#api-key")[0]
    key_input.send_keys(API_KEY)
    elements(browser, "#key-form button")[0].click()
    wait_until(lambda: elements(browser, "#collections-table"), VIEW_TIMEOUT_S)
    assert text_of(browser, "#banner") == ""


def test_the_vectors_view_projects_the_sample(browser: Any, keel_server: KeelProcess) -> None:
    open_view(browser, keel_server, "vectors/cities")
    wait_until(lambda: text_of(browser, "#vectors-count"), VIEW_TIMEOUT_S)
    _, count = api_call(
        keel_server.url, "POST", "/collections/cities/points/count", {"exact": True}
    )
    assert text_of(browser, "#vectors-count").startswith(f"{count['result']['count']} points")
    select = elements(browser, "#colour-field")[0]
    select.find_element("css selector", "option[value='city']").click()
    wait_until(lambda: "Berlin" in text_of(browser, "#vectors-legend"), VIEW_TIMEOUT_S)
    # Hover the first drawn pixel of a dot: the tooltip names that point and its payload.
    hovered = browser.execute_script(HOVER_FIRST_DOT)
    assert hovered is not None
    wait_until(lambda: text_of(browser, "#vectors-tooltip").startswith("id "), VIEW_TIMEOUT_S)
    point_id = int(text_of(browser, "#vectors-tooltip").split()[1])
    _, point = api_call(keel_server.url, "GET", f"/collections/cities/points/{point_id}")
    assert point["result"]["payload"]["city"] in text_of(browser, "#vectors-tooltip")


def test_the_snapshots_view_creates_and_lists(browser: Any, keel_server: KeelProcess) -> None:
    open_view(browser, keel_server, "snapshots/cities")
    wait_until(lambda: elements(browser, "#snapshot-create"), VIEW_TIMEOUT_S)
    elements(browser, "#snapshot-create")[0].click()
    wait_until(lambda: elements(browser, "#collection-snapshots tr[data-snapshot]"), 30)
    _, listed = api_call(keel_server.url, "GET", "/collections/cities/snapshots")
    shown = attribute_values(browser, "#collection-snapshots tr[data-snapshot]", "data-snapshot")
    assert shown == [snapshot["name"] for snapshot in listed["result"]]


def json_text(value: Any) -> str:
    return json.dumps(value)


def test_the_snapshots_view_downloads_and_restores_by_upload(
    browser: Any, keel_server: KeelProcess, tmp_path: Path, downloads_dir: Path
) -> None:
    status, created = api_call(keel_server.url, "POST", "/collections/named/snapshots?wait=true")
    assert status == 200, created
    snapshot_name = created["result"]["name"]
    download = urllib.request.Request(
        f"{keel_server.url}/collections/named/snapshots/{snapshot_name}",
        headers={"api-key": API_KEY},
    )
    snapshot_file = tmp_path / snapshot_name
    with urllib.request.urlopen(download, timeout=30) as response:
        snapshot_file.write_bytes(response.read())
    open_view(browser, keel_server, "snapshots/named")
    row = f"#collection-snapshots tr[data-snapshot='{snapshot_name}']"
    wait_until(lambda: elements(browser, row), VIEW_TIMEOUT_S)
    elements(browser, f"{row} .download")[0].click()
    wait_until(lambda: f"downloaded {snapshot_name}" in text_of(browser, "#snapshots-status"))
    downloaded = downloads_dir / snapshot_name
    wait_until(lambda: downloaded.is_file() and downloaded.stat().st_size > 0)
    assert downloaded.read_bytes() == snapshot_file.read_bytes()
    elements(browser, "#snapshot-file")[0].send_keys(str(snapshot_file))
    elements(browser, "#snapshot-upload")[0].click()
    restored = f"named restored from {snapshot_name}"
    wait_until(lambda: restored in text_of(browser, "#snapshots-status"), 30)
    _, count = api_call(keel_server.url, "POST", "/collections/named/points/count", {"exact": True})
    assert count["result"]["count"] == 1


def test_the_collections_form_creates_and_deletes_after_confirmation(
    browser: Any, keel_server: KeelProcess
) -> None:
    open_view(browser, keel_server, "collections")
    wait_until(lambda: elements(browser, "#create-form"), VIEW_TIMEOUT_S)
    elements(browser, "#create-name")[0].send_keys("from_the_form")
    size = elements(browser, "#create-size")[0]
    size.clear()
    size.send_keys("8")
    elements(browser, "#create-vector-name")[0].send_keys("v")
    body = json.loads(elements(browser, "#create-body")[0].get_attribute("value"))
    assert body == {"vectors": {"v": {"size": 8, "distance": "Cosine"}}}
    elements(browser, "#create-form button[type=submit]")[0].click()
    row = "#collections-table tr[data-collection='from_the_form']"
    wait_until(lambda: elements(browser, row), VIEW_TIMEOUT_S)
    _, info = api_call(keel_server.url, "GET", "/collections/from_the_form")
    assert info["result"]["config"]["params"]["vectors"]["v"]["size"] == 8

    elements(browser, "#create-name")[0].send_keys("from_the_form")  # exists: Keel's 409 text
    elements(browser, "#create-form button[type=submit]")[0].click()
    wait_until(lambda: text_of(browser, "#create-result"), VIEW_TIMEOUT_S)
    status, refused = api_call(
        keel_server.url,
        "PUT",
        "/collections/from_the_form",
        {"vectors": {"size": 4, "distance": "Dot"}},
    )
    assert status == 409
    assert text_of(browser, "#create-result") == refused["status"]["error"]

    elements(browser, f"{row} [data-action='delete']")[0].click()
    assert api_call(keel_server.url, "GET", "/collections/from_the_form")[0] == 200  # not yet
    elements(browser, f"{row} [data-action='confirm-delete']")[0].click()
    wait_until(lambda: not elements(browser, row), VIEW_TIMEOUT_S)
    assert api_call(keel_server.url, "GET", "/collections/from_the_form")[0] == 404


async def test_a_closed_write_path_is_shown_in_red_with_its_error(
    browser: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    """Goal: the durability view shows a write path closed by a storage error, in red, with
    the error every write now gets. Method: an in-process server (the fault is injected at
    engine.files, in this process: EIO on the WAL's fdatasync, which closes the write path
    for good); the browser is driven from a thread so the server's loop keeps answering."""
    catalog = Catalog(tmp_path / "storage", EngineSettings())
    await catalog.open()
    try:
        app = create_app(catalog, keel_version=KEEL_VERSION, api_key=API_KEY)
        server = await aiohttp_server(app)
        url = str(server.make_url("")).rstrip("/")
        body = {"vectors": {"size": 4, "distance": "Dot"}}
        assert (await asyncio.to_thread(api_call, url, "PUT", "/collections/broken", body))[
            0
        ] == 200

        def eio_on_wal_sync(event: files.FileEvent) -> None:
            if isinstance(event, files.Fdatasync) and event.path.endswith(".wal"):
                raise OSError(errno.EIO, os.strerror(errno.EIO))

        files.install_recorder(files.Recorder(fault=eio_on_wal_sync))
        try:
            points = {"points": [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4]}]}
            upsert = "/collections/broken/points?wait=true"
            status, refused = await asyncio.to_thread(api_call, url, "PUT", upsert, points)
        finally:
            files.install_recorder(None)
        assert status == 500, refused
        _, durability = await asyncio.to_thread(api_call, url, "GET", "/durability")
        (shown,) = durability["result"]["collections"]
        assert shown["status"] == "red"
        _, again = await asyncio.to_thread(api_call, url, "PUT", upsert, points)
        assert again["status"]["error"] == f"Service internal error: {shown['write_path_error']}"

        def check_page() -> str:
            open_view(browser, SimpleNamespace(url=url), "durability")
            card = "#durability-body .card-red[data-collection='broken']"
            wait_until(lambda: elements(browser, card), VIEW_TIMEOUT_S)
            return text_of(browser, f"{card} .error-box")

        assert await asyncio.to_thread(check_page) == (
            f"write path closed: {shown['write_path_error']}"
        )
    finally:
        await catalog.close()


async def test_recovery_progress_shows_until_the_catalog_is_open(
    browser: Any,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Goal: while Keel recovers, the durability view shows how far (the page loads and
    polls although every other call waits for recovery). Method: an in-process server whose
    catalog opens its second collection only when the test says so."""
    # The progress comes from the engine's INFO events, which `keel serve` logs by default.
    caplog.set_level(logging.INFO, logger="engine")
    storage = tmp_path / "storage"
    catalog = Catalog(storage, EngineSettings())
    await catalog.open()
    app = create_app(catalog, keel_version=KEEL_VERSION, api_key=API_KEY)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    for name in ("first", "second"):
        body = {"vectors": {"size": 4, "distance": "Dot"}}
        assert (await asyncio.to_thread(api_call, url, "PUT", f"/collections/{name}", body))[
            0
        ] == 200
    await server.close()
    await catalog.close()

    release = asyncio.Event()
    open_collection = Collection.open.__func__
    opened_names: list[str] = []

    async def held_open(cls: type, directory: Path, name: str, settings: Any) -> Collection:
        if opened_names:
            await release.wait()  # the second collection: recovery stays in progress
        opened_names.append(name)
        return await open_collection(cls, directory, name, settings)

    monkeypatch.setattr(Collection, "open", classmethod(held_open))
    catalog = Catalog(storage, EngineSettings())
    server = await aiohttp_server(create_app(catalog, keel_version=KEEL_VERSION, api_key=API_KEY))
    url = str(server.make_url("")).rstrip("/")
    recovery = asyncio.create_task(catalog.open())
    try:

        def recovering_text() -> str:
            open_view(browser, SimpleNamespace(url=url), "durability")
            wait_until(lambda: elements(browser, "#recovery"), VIEW_TIMEOUT_S)
            return text_of(browser, "#recovery")

        assert "collections opened: 1 / 2" in await asyncio.to_thread(recovering_text)
        assert text_of(browser, "#access") == "recovering"
        release.set()
        await recovery

        def cards_after_recovery() -> list[str]:
            wait_until(lambda: not elements(browser, "#recovery"), VIEW_TIMEOUT_S)
            card = "#durability-body [data-collection]"
            wait_until(lambda: len(elements(browser, card)) == 2, VIEW_TIMEOUT_S)
            wait_until(lambda: text_of(browser, "#access") == "read-write", VIEW_TIMEOUT_S)
            return attribute_values(browser, card, "data-collection")

        assert await asyncio.to_thread(cards_after_recovery) == ["first", "second"]
    finally:
        release.set()
        await recovery
        await catalog.close()


def test_the_durability_view_lists_followers_with_their_lag(
    browser: Any, keel_server: KeelProcess
) -> None:
    follower = "/keel/collections/cities/followers/dashboard-mirror"
    status, registered = api_call(keel_server.url, "PUT", follower, {"next_op_id": 0})
    assert status == 200, registered
    try:
        _, durability = api_call(keel_server.url, "GET", "/durability")
        (cities,) = [c for c in durability["result"]["collections"] if c["name"] == "cities"]
        (shown,) = cities["followers"]
        assert shown["name"] == "dashboard-mirror"
        assert shown["lag_ops"] == cities["durable_op_id"] + 1  # it has copied nothing yet
        assert 0 < shown["retained_bytes"] <= cities["wal"]["bytes"]
        open_view(browser, keel_server, "durability")
        row = "#durability-body [data-collection='cities'] .followers tbody tr"
        wait_until(lambda: elements(browser, row), VIEW_TIMEOUT_S)
        assert text_of(browser, row).split()[:2] == ["dashboard-mirror", str(shown["lag_ops"])]
    finally:
        api_call(keel_server.url, "DELETE", follower)
