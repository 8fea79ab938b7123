"""A real Keel server with data and a real headless Chromium, for the dashboard's tests.

Chromium is Debian's (`apt-get install chromium chromium-driver`), driven by Selenium from
PyPI (the test extra). Where either is missing the browser tests skip with the reason printed
at the end of the run, except under CI (`CI` set, as `.ci/run` sets it), where they fail:
CI installs them, so a missing browser there is a broken CI, not a reason to skip.

The server runs with both keys (read-write and read-only) and two collections: `cities`
(4-d Dot vectors, a payload with city, country and n) and `named` (named vectors).
Screenshots of each view go to $KEEL_SCREENSHOTS_DIR, or to a temporary directory whose path
is printed; they are for people, nothing asserts on them.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.keel_process import KeelProcess

API_KEY = "dashboard-rw-key"
READ_ONLY_KEY = "dashboard-ro-key"
CITIES = ["Berlin", "London", "Paris", "Rome", "Madrid", "Oslo"]
CITY_POINTS = 120
SEED_BATCH_POINTS = 20
CHROMIUM_NAMES = ("chromium", "chromium-browser")
BROWSER_LOAD_TIMEOUT_S = 20

_skip_reasons: list[str] = []
_screenshot_dirs: list[Path] = []


def api_call(url: str, method: str, path: str, body: Any = None, key: str = API_KEY) -> Any:
    """One JSON call to the server: (status, parsed body or text)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    if key:
        headers["api-key"] = key
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def city_vector(point_id: int) -> list[float]:
    """Near its city's centre, so the vectors view shows one cluster per city."""
    city_index = point_id % len(CITIES)
    noise = random.Random(point_id)
    centre = [math.cos(city_index), math.sin(city_index), city_index / 6, 1 - city_index / 6]
    return [round(value + noise.uniform(-0.15, 0.15), 4) for value in centre]


def seed(url: str) -> None:
    """`cities`: CITY_POINTS points with a payload index on city; `named`: two named vectors."""
    api_call(url, "PUT", "/collections/cities", {"vectors": {"size": 4, "distance": "Dot"}})
    api_call(
        url, "PUT", "/collections/cities/index", {"field_name": "city", "field_schema": "keyword"}
    )
    points = [
        {
            "id": point_id,
            "vector": city_vector(point_id),
            "payload": {"city": CITIES[point_id % len(CITIES)], "n": point_id},
        }
        for point_id in range(1, CITY_POINTS + 1)
    ]
    # Several upserts, so the durability view has op ids and batches to show.
    for first in range(0, len(points), SEED_BATCH_POINTS):
        batch = {"points": points[first : first + SEED_BATCH_POINTS]}
        status, answer = api_call(url, "PUT", "/collections/cities/points?wait=true", batch)
        assert status == 200, answer
    named = {"text": {"size": 4, "distance": "Cosine"}, "image": {"size": 4, "distance": "Cosine"}}
    api_call(url, "PUT", "/collections/named", {"vectors": named})
    api_call(
        url,
        "PUT",
        "/collections/named/points?wait=true",
        {
            "points": [
                {"id": 1, "vector": {"text": [0.1, 0.2, 0.3, 0.4], "image": [0.5, 0.6, 0.7, 0.8]}}
            ]
        },
    )


@pytest.fixture(scope="module")
def keel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeelProcess]:
    storage_dir = tmp_path_factory.mktemp("dashboard") / "storage"
    storage_dir.mkdir()
    env = {"KEEL__SERVICE__API_KEY": API_KEY, "KEEL__SERVICE__READ_ONLY_API_KEY": READ_ONLY_KEY}
    server = KeelProcess.start(storage_dir, extra_env=env)
    seed(server.url)
    yield server
    server.terminate()


def chromium_or_reason() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or why the browser tests cannot run here."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    chromium = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        return "Chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
    return chromium, driver


@pytest.fixture(scope="module")
def downloads_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser saves downloads (the snapshots view's), not the user's ~/Downloads."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads_dir: Path) -> Iterator[Any]:
    found = chromium_or_reason()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {found}")
        _skip_reasons.append(found)
        pytest.skip(found)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-background-networking",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads_dir)})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(BROWSER_LOAD_TIMEOUT_S)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("KEEL_SCREENSHOTS_DIR")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    _screenshot_dirs.append(directory)
    return directory


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print why the browser tests were skipped, even without -rs, and where the
    screenshots are."""
    for reason in sorted(set(_skip_reasons)):
        terminalreporter.write_line(f"browser tests skipped: {reason}", yellow=True)
    for directory in _screenshot_dirs:
        terminalreporter.write_line(f"dashboard screenshots: {directory}")
