"""server/config.py: defaults, the example file, precedence, and errors that name the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from engine import limits
from engine.limits import EngineSettings
from server.config import (
    ENGINE_KEYS,
    ConfigError,
    Settings,
    load_settings,
    render_toml,
    to_nested,
)
from tests.keel_process import REPO_ROOT

EXAMPLE_PATH = REPO_ROOT / "config.example.toml"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keel.toml"
    path.write_text(text)
    return path


def test_defaults_match_qdrant_and_the_engine():
    settings = load_settings(environ={})
    assert settings == Settings()
    assert (settings.host, settings.http_port) == ("127.0.0.1", 6333)
    assert settings.storage_path == Path("./storage")
    assert settings.max_request_size_bytes == limits.REQUEST_BODY_BYTES_MAX
    assert settings.engine == EngineSettings()


def test_example_file_holds_exactly_the_defaults():
    """config.example.toml documents every setting; it must load to the defaults and name
    every key the defaults have, so it can't drift from the code."""
    assert load_settings(EXAMPLE_PATH, environ={}) == Settings()
    with open(EXAMPLE_PATH, "rb") as example_file:
        example_keys = set(flat_keys(tomllib.load(example_file)))
    assert example_keys == set(flat_keys(to_nested(Settings())))


def flat_keys(table: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys = []
    for name, value in table.items():
        if isinstance(value, dict):
            keys.extend(flat_keys(value, (*prefix, name)))
        else:
            keys.append((*prefix, name))
    return keys


def test_every_example_setting_has_a_comment():
    lines = EXAMPLE_PATH.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[index - 1].startswith("#"), f"no comment above {line!r}"


def test_every_engine_setting_has_a_config_key():
    engine_fields = {field.name for field in dataclasses.fields(EngineSettings)}
    assert {field_name for field_name, _ in ENGINE_KEYS.values()} == engine_fields


def test_file_sets_engine_settings_in_config_units(tmp_path):
    path = write_config(
        tmp_path,
        "[storage.wal]\nsegment_mb_target = 4\n"
        "[storage.performance]\ncheckpoint_every_s = 5\nlmdb_map_mb_initial = 64\n",
    )
    engine = load_settings(path, environ={}).engine
    assert engine.segment_bytes_target == 4 * limits.MIB
    assert engine.checkpoint_every_s == 5.0
    assert isinstance(engine.checkpoint_every_s, float)
    assert engine.lmdb_map_bytes_initial == 64 * limits.MIB


def test_precedence_is_defaults_then_file_then_env_then_flags(tmp_path):
    path = write_config(
        tmp_path,
        '[service]\nhttp_port = 7001\nhost = "0.0.0.0"\n'
        '[storage]\nstorage_path = "/from/file"\n[log]\nlevel = "DEBUG"\n',
    )
    environ = {"KEEL__SERVICE__HTTP_PORT": "7002", "KEEL__STORAGE__STORAGE_PATH": "/from/env"}
    overrides = {("service", "http_port"): 7003}
    settings = load_settings(path, environ, overrides)
    assert settings.http_port == 7003  # flag beats env and file
    assert settings.storage_path == Path("/from/env")  # env beats file
    assert settings.host == "0.0.0.0"  # file beats default
    assert settings.log_level == "DEBUG"
    assert settings.max_request_size_mb == 32  # default
    assert load_settings(path, environ).http_port == 7002
    assert load_settings(path, {}).http_port == 7001


def test_env_reaches_nested_sections_and_parses_by_the_default_type():
    environ = {
        "KEEL__STORAGE__WAL__SEGMENT_MB_TARGET": "2",
        "KEEL__STORAGE__PERFORMANCE__BACKPRESSURE_DEADLINE_S": "1.5",
        "KEEL__LOG__FORMAT": "json",
        "KEEL__LOG__REQUESTS": "Errors",
        "KEEL_FAILPOINTS": "wal.after_write",  # one underscore: not a setting, ignored
    }
    settings = load_settings(environ=environ)
    assert settings.engine.segment_bytes_target == 2 * limits.MIB
    assert settings.engine.backpressure_deadline_s == 1.5
    assert settings.log_format == "json"
    assert settings.log_requests == "errors"


def test_recovery_wait_is_a_bounded_setting_in_seconds(tmp_path):
    assert load_settings(environ={}).recovery_wait_s == limits.RECOVERY_WAIT_S
    environ = {"KEEL__SERVICE__RECOVERY_WAIT_S": "2.5"}
    assert load_settings(environ=environ).recovery_wait_s == 2.5
    path = write_config(tmp_path, "[service]\nrecovery_wait_s = 0\n")
    assert load_settings(path, environ={}).recovery_wait_s == 0.0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[service]\nport = 1\n", "service.port"),
        ("[servic]\nhttp_port = 1\n", "servic"),
        ("[storage.wal]\nwal_capacity_mb = 32\n", "storage.wal.wal_capacity_mb"),
        ("[service]\nhttp_port = '7000'\n", "service.http_port"),
        ("[service]\nhttp_port = true\n", "service.http_port"),
        ("[service]\nhttp_port = 70000\n", "service.http_port"),
        ("[service]\nmax_request_size_mb = 64\n", "service.max_request_size_mb"),
        ("[service]\nrecovery_wait_s = 601\n", "service.recovery_wait_s"),
        ("[service]\nrecovery_wait_s = -1\n", "service.recovery_wait_s"),
        ("[log]\nlevel = 'LOUD'\n", "log.level"),
        ("[log]\nrequests = 'some'\n", "log.requests"),
        ("[storage.wal]\nsegment_mb_target = 100000\n", "storage.wal.segment_mb_target"),
        ("[storage.performance]\ncheckpoint_every_ops = 0\n", "checkpoint_every_ops"),
        ("storage = 1\n", "storage"),
    ],
)
def test_bad_file_settings_fail_naming_the_key(tmp_path, text, named):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(path, environ={})


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"KEEL__SERVICE__PORT": "7000"}, "KEEL__SERVICE__PORT"),
        ({"KEEL__SERVICE__HTTP_PORT": "seven"}, "KEEL__SERVICE__HTTP_PORT"),
        ({"KEEL__NOPE__X": "1"}, "KEEL__NOPE__X"),
        ({"KEEL__STORAGE__WAL": "1"}, "KEEL__STORAGE__WAL"),
    ],
)
def test_bad_env_settings_fail_naming_the_variable(environ, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=environ)


def test_snapshots_default_to_beside_the_storage_unless_set(tmp_path):
    """Unset or empty, storage.snapshots_path follows storage_path (`keel serve` and `keel
    snapshot` then agree from any working directory); set, it is kept as written."""
    storage = {("storage", "storage_path"): "/var/lib/keel/storage"}
    assert load_settings(environ={}, overrides=storage).snapshots_path == Path(
        "/var/lib/keel/snapshots"
    )
    assert load_settings(environ={}).snapshots_path == Path("./snapshots")
    empty = write_config(tmp_path, "[storage]\nstorage_path = 'data/s'\nsnapshots_path = ''\n")
    assert load_settings(empty, environ={}).snapshots_path == Path("data/snapshots")
    environ = {"KEEL__STORAGE__SNAPSHOTS_PATH": "./snaps"}
    assert load_settings(environ=environ, overrides=storage).snapshots_path == Path("snaps")
    here = {("storage", "storage_path"): "."}  # named first: not ./snapshots inside it
    parent_snapshots = Path.cwd().parent / "snapshots"
    assert load_settings(environ={}, overrides=here).snapshots_path == parent_snapshots


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write_config(tmp_path, "[service\n"), environ={})


def test_rendered_toml_loads_back_to_the_same_settings(tmp_path):
    settings = load_settings(
        environ={"KEEL__SERVICE__HOST": 'with "quotes"', "KEEL__STORAGE__WAL__FSYNC_SLOW_S": "2"}
    )
    path = write_config(tmp_path, render_toml(settings))
    assert load_settings(path, environ={}) == settings
