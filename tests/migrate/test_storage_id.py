"""The id a Keel reports in `GET /telemetry`: its storage's, written once per storage
directory, the same after a restart and different for another storage. `keel migrate` and
`keel import` compare it to refuse a target that is their own source."""

from __future__ import annotations

import uuid

import httpx

from tests.keel_process import KeelProcess


def telemetry_id(server: KeelProcess) -> str:
    answer = httpx.get(f"{server.url}/telemetry", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["id"]


def test_the_storage_id_is_the_telemetry_id_and_survives_a_restart(tmp_path):
    first = KeelProcess.start(tmp_path / "one")
    other = KeelProcess.start(tmp_path / "two")
    first_id = telemetry_id(first)
    assert first_id == str(uuid.UUID((tmp_path / "one" / "storage_id").read_text().strip()))
    assert telemetry_id(other) != first_id
    assert first.terminate() == 0
    again = KeelProcess.start(tmp_path / "one")
    assert telemetry_id(again) == first_id
