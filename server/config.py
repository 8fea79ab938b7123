"""Keel's configuration: defaults < TOML file < `KEEL__SECTION__KEY` environment < CLI flags.

Owns: the names of every setting, their defaults, parsing and checking them, and rendering
the effective configuration back to TOML (`keel config`).
Not here: the hard limits and engine tunables themselves (engine/limits.py); the file and
environment only choose values inside those limits.

Sections follow Qdrant's config.yaml where Qdrant has the setting (`service.host`,
`service.http_port`, `service.max_request_size_mb`, `storage.storage_path`, `log.level`).
Keel's own engine tunables live in `[storage.wal]` and `[storage.performance]`; sizes are
in MiB in the file and in bytes in `EngineSettings`:

| config key                                  | EngineSettings field      |
|---------------------------------------------|---------------------------|
| storage.wal.segment_mb_target               | segment_bytes_target      |
| storage.wal.fsync_slow_s                    | fsync_slow_s              |
| storage.wal.follower_retention_mb_max       | follower_retention_bytes_max |
| storage.performance.unapplied_mb_max        | unapplied_bytes_max       |
| storage.performance.backpressure_deadline_s | backpressure_deadline_s   |
| storage.performance.apply_batch_ops_max     | apply_batch_ops_max       |
| storage.performance.checkpoint_every_ops    | checkpoint_every_ops      |
| storage.performance.checkpoint_every_s      | checkpoint_every_s        |
| storage.performance.lmdb_map_mb_initial     | lmdb_map_bytes_initial    |
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import limits
from engine.limits import EngineSettings

log = logging.getLogger(__name__)

ENV_PREFIX = "KEEL__"
ENV_SEPARATOR = "__"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
# Which requests get an INFO line (server/request_log.py); the others are logged at DEBUG.
LOG_REQUESTS = ("off", "errors", "all")
REQUEST_SIZE_MB_MAX = limits.REQUEST_BODY_BYTES_MAX // limits.MIB

# Config key (path of TOML tables + key) -> (EngineSettings field, bytes per config unit).
ENGINE_KEYS: dict[tuple[str, ...], tuple[str, int]] = {
    ("storage", "wal", "segment_mb_target"): ("segment_bytes_target", limits.MIB),
    ("storage", "wal", "fsync_slow_s"): ("fsync_slow_s", 1),
    ("storage", "wal", "follower_retention_mb_max"): ("follower_retention_bytes_max", limits.MIB),
    ("storage", "performance", "unapplied_mb_max"): ("unapplied_bytes_max", limits.MIB),
    ("storage", "performance", "backpressure_deadline_s"): ("backpressure_deadline_s", 1),
    ("storage", "performance", "apply_batch_ops_max"): ("apply_batch_ops_max", 1),
    ("storage", "performance", "checkpoint_every_ops"): ("checkpoint_every_ops", 1),
    ("storage", "performance", "checkpoint_every_s"): ("checkpoint_every_s", 1),
    ("storage", "performance", "lmdb_map_mb_initial"): ("lmdb_map_bytes_initial", limits.MIB),
}


class ConfigError(ValueError):
    """A setting is unknown or its value is wrong; the message names the key and its source."""


@dataclass(frozen=True)
class Settings:
    """Everything `keel serve` needs; build it with `load_settings`, never by hand in prod."""

    host: str = "127.0.0.1"
    http_port: int = 6333
    max_request_size_mb: int = REQUEST_SIZE_MB_MAX
    storage_path: Path = Path("./storage")
    # Qdrant's storage.snapshots_path: collection snapshots, in <snapshots_path>/<collection>/.
    # Unset (or empty) in the file: `snapshots` beside storage_path (default_snapshots_path).
    snapshots_path: Path = Path("./snapshots")
    log_level: str = "INFO"
    log_format: str = "text"
    log_requests: str = "off"
    # Qdrant's service.api_key / service.read_only_api_key; empty means no key.
    api_key: str = ""
    read_only_api_key: str = ""
    # Serving a non-loopback address with no key is refused unless this says it's on purpose.
    unsafe_allow_public_without_api_key: bool = False
    # How long a request arriving during recovery waits for the storage to open; then 503.
    recovery_wait_s: float = limits.RECOVERY_WAIT_S
    # With a key configured, /metrics needs it too; False leaves /metrics open like /healthz.
    metrics_require_api_key: bool = True
    # Qdrant's service.enable_snapshot_url_recovery: false refuses to recover a snapshot from
    # an http(s):// location (a server that can reach internal addresses is an SSRF risk).
    enable_snapshot_url_recovery: bool = True
    # Qdrant's service.enable_tls with tls.cert / tls.key: PEM files, HTTPS on http_port.
    enable_tls: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    engine: EngineSettings = field(default_factory=EngineSettings)

    @property
    def max_request_size_bytes(self) -> int:
        return self.max_request_size_mb * limits.MIB


def load_settings(
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, ...], Any] | None = None,
) -> Settings:
    """Merge defaults, the TOML file, `KEEL__...` variables of `environ` and `overrides`.

    `overrides` maps config keys such as ("service", "http_port") to values (the CLI flags).
    Raises ConfigError naming the key, and where it came from, for an unknown key or a bad value.
    """
    values = to_nested(Settings())
    values["storage"]["snapshots_path"] = ""  # unset until a source sets it: beside the storage
    if config_path is not None:
        _merge(values, _read_file(config_path), source=str(config_path))
    for key, value in _read_environ(os.environ if environ is None else environ).items():
        _set(values, key, value, source=_env_name(key), is_text=True)
    for key, value in (overrides or {}).items():
        _set(values, key, value, source="command line")
    return from_nested(values)


def to_nested(settings: Settings) -> dict[str, Any]:
    """Settings as nested dicts of TOML tables, in config-file units (MiB, seconds)."""
    nested: dict[str, Any] = {
        "service": {
            "host": settings.host,
            "http_port": settings.http_port,
            "max_request_size_mb": settings.max_request_size_mb,
            "api_key": settings.api_key,
            "read_only_api_key": settings.read_only_api_key,
            "unsafe_allow_public_without_api_key": settings.unsafe_allow_public_without_api_key,
            "metrics_require_api_key": settings.metrics_require_api_key,
            "recovery_wait_s": settings.recovery_wait_s,
            "enable_snapshot_url_recovery": settings.enable_snapshot_url_recovery,
            "enable_tls": settings.enable_tls,
        },
        "tls": {"cert": settings.tls_cert, "key": settings.tls_key},
        "storage": {
            "storage_path": str(settings.storage_path),
            "snapshots_path": str(settings.snapshots_path),
            "wal": {},
            "performance": {},
        },
        "log": {
            "level": settings.log_level,
            "format": settings.log_format,
            "requests": settings.log_requests,
        },
    }
    for key, (field_name, unit_bytes) in ENGINE_KEYS.items():
        value = getattr(settings.engine, field_name)
        assert value % unit_bytes == 0, (field_name, value, unit_bytes)
        _table(nested, key[:-1])[key[-1]] = value // unit_bytes if unit_bytes != 1 else value
    return nested


def from_nested(nested: Mapping[str, Any]) -> Settings:
    """Check the values of nested tables (typed like `to_nested`'s) and build Settings."""
    service, storage, log_table = nested["service"], nested["storage"], nested["log"]
    _check(nested, ("service", "host"), service["host"] != "", "must not be empty")
    _check(nested, ("service", "http_port"), 0 <= service["http_port"] <= 65535, "must be 0..65535")
    _check(
        nested,
        ("service", "max_request_size_mb"),
        1 <= service["max_request_size_mb"] <= REQUEST_SIZE_MB_MAX,
        f"must be 1..{REQUEST_SIZE_MB_MAX} (Keel's hard limit)",
    )
    _check(
        nested,
        ("service", "recovery_wait_s"),
        0 <= service["recovery_wait_s"] <= limits.RECOVERY_WAIT_S_MAX,
        f"must be 0..{limits.RECOVERY_WAIT_S_MAX:g} (Keel's hard limit)",
    )
    _check(nested, ("storage", "storage_path"), storage["storage_path"] != "", "must not be empty")
    storage_path = Path(storage["storage_path"])
    snapshots_path = (
        Path(storage["snapshots_path"])
        if storage["snapshots_path"]
        else default_snapshots_path(storage_path)
    )
    if service["enable_tls"]:
        _check_tls(nested)
    level = log_table["level"].upper()
    _check(nested, ("log", "level"), level in LOG_LEVELS, f"must be one of {LOG_LEVELS}")
    log_format = log_table["format"].lower()
    _check(nested, ("log", "format"), log_format in LOG_FORMATS, f"must be one of {LOG_FORMATS}")
    log_requests = log_table["requests"].lower()
    is_known = log_requests in LOG_REQUESTS
    _check(nested, ("log", "requests"), is_known, f"must be one of {LOG_REQUESTS}")
    return Settings(
        host=service["host"],
        http_port=service["http_port"],
        max_request_size_mb=service["max_request_size_mb"],
        storage_path=storage_path,
        snapshots_path=snapshots_path,
        log_level=level,
        log_format=log_format,
        log_requests=log_requests,
        api_key=service["api_key"],
        read_only_api_key=service["read_only_api_key"],
        unsafe_allow_public_without_api_key=service["unsafe_allow_public_without_api_key"],
        metrics_require_api_key=service["metrics_require_api_key"],
        recovery_wait_s=float(service["recovery_wait_s"]),
        enable_snapshot_url_recovery=service["enable_snapshot_url_recovery"],
        enable_tls=service["enable_tls"],
        tls_cert=nested["tls"]["cert"],
        tls_key=nested["tls"]["key"],
        engine=_engine_settings(nested),
    )


def default_snapshots_path(storage_path: Path) -> Path:
    """`snapshots` beside the storage directory: where `keel serve` and `keel snapshot` both
    put snapshots when storage.snapshots_path is unset, whatever directory each runs in.
    For the default ./storage that is ./snapshots, Qdrant's default."""
    if storage_path.name in ("", ".."):  # ".", "/" or "..": name the directory first
        storage_path = Path(os.path.abspath(storage_path))
    return storage_path.parent / "snapshots"


SECRET_KEYS = ("api_key", "read_only_api_key")
SECRET_MASK = "********"


def render_toml(settings: Settings, is_masked: bool = True) -> str:
    """The effective configuration as a TOML document that `load_settings` reads back;
    API keys that are set are shown as a mask unless `is_masked` is False."""
    nested = to_nested(settings)
    for name in SECRET_KEYS:
        if is_masked and nested["service"][name]:
            nested["service"][name] = SECRET_MASK
    lines: list[str] = []
    _render_table(nested, (), lines)
    return "\n".join(lines).strip() + "\n"


def tls_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server-side TLS context from PEM files (raises OSError or ssl.SSLError)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def _check_tls(nested: Mapping[str, Any]) -> None:
    """With TLS on, both files must be set and load; fail start-up naming the key."""
    tls = nested["tls"]
    for name in ("cert", "key"):
        _check(nested, ("tls", name), tls[name] != "", "must be set when service.enable_tls")
        _check(nested, ("tls", name), Path(tls[name]).is_file(), "is not a readable file")
    try:
        tls_context(tls["cert"], tls["key"])
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            f"setting tls.cert={tls['cert']!r} / tls.key={tls['key']!r} do not load as a "
            f"PEM certificate chain and its private key: {error}"
        ) from error


def _engine_settings(nested: Mapping[str, Any]) -> EngineSettings:
    engine_values = {
        field_name: _get(nested, key) * unit_bytes
        for key, (field_name, unit_bytes) in ENGINE_KEYS.items()
    }
    engine = EngineSettings(**engine_values)
    try:
        return engine.validated()
    except ValueError as error:
        # Name the config key, not the engine field: that is what the user can edit.
        match = re.match(r"setting (\w+)=", str(error))
        field_name = match.group(1) if match else None
        keys = [key for key, (name, _) in ENGINE_KEYS.items() if name == field_name]
        assert len(keys) == 1, f"EngineSettings error names no known field: {error}"
        raise ConfigError(
            f"setting {'.'.join(keys[0])}={_get(nested, keys[0])!r} is out of bounds ({error})"
        ) from error


def _read_file(config_path: Path) -> dict[str, Any]:
    try:
        with open(config_path, "rb") as config_file:
            return tomllib.load(config_file)
    except FileNotFoundError as error:
        raise ConfigError(f"config file not found: {config_path}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {config_path} is not valid TOML: {error}") from error


def _read_environ(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """`KEEL__SERVICE__HTTP_PORT=7000` -> {("service", "http_port"): "7000"}."""
    found = {}
    for name, value in environ.items():
        if name.upper().startswith(ENV_PREFIX):
            key = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_SEPARATOR))
            found[key] = value
    return found


def _merge(values: dict[str, Any], updates: Mapping[str, Any], source: str) -> None:
    for key, value in _flatten(updates, ()):
        _set(values, key, value, source)


def _flatten(table: Mapping[str, Any], prefix: tuple[str, ...]) -> list[tuple[tuple, Any]]:
    items: list[tuple[tuple, Any]] = []
    for name, value in table.items():
        if isinstance(value, dict):
            items.extend(_flatten(value, (*prefix, name)))
        else:
            items.append(((*prefix, name), value))
    return items


def _set(
    values: dict[str, Any], key: tuple[str, ...], raw: Any, source: str, is_text: bool = False
) -> None:
    """Replace the value at `key` by `raw`, of the type of the default there.

    `is_text`: raw is an environment variable's text, parsed as that type; otherwise raw must
    already have that type (a TOML `http_port = "7000"` is a mistake worth reporting).
    """
    table: Any = values
    for index, part in enumerate(key):
        if not isinstance(table, dict) or part not in table:
            known = ", ".join(sorted(table)) if isinstance(table, dict) else "none (not a table)"
            raise ConfigError(
                f"unknown setting {'.'.join(key[: index + 1])} in {source}; known here: {known}"
            )
        if index < len(key) - 1:
            table = table[part]
    if isinstance(table[key[-1]], dict):
        raise ConfigError(f"setting {'.'.join(key)} in {source} is a table, not a value")
    table[key[-1]] = _convert(raw, table[key[-1]], key, source, is_text)


def _convert(raw: Any, default: Any, key: tuple[str, ...], source: str, is_text: bool) -> Any:
    """`raw` (a TOML value, or text from the environment) as the type of `default`."""
    expected = type(default)
    name = ".".join(key)
    if is_text and expected is bool:
        if raw.strip().lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"setting {name} in {source}: expected true or false, got {raw!r}")
        return raw.strip().lower() in ("true", "1")
    if is_text and expected is not str:
        try:
            return expected(raw.strip())
        except ValueError:
            raise ConfigError(
                f"setting {name} in {source}: expected {expected.__name__}, got {raw!r}"
            ) from None
    # bool is an int subclass in Python, but `http_port = true` is a mistake, not 1.
    is_number_ok = expected is float and type(raw) in (int, float)
    if type(raw) is not expected and not is_number_ok:
        raise ConfigError(
            f"setting {name} in {source}: expected {expected.__name__}, "
            f"got {type(raw).__name__} {raw!r}"
        )
    return expected(raw)


def _check(nested: Mapping[str, Any], key: tuple[str, ...], is_ok: bool, message: str) -> None:
    if not is_ok:
        raise ConfigError(f"setting {'.'.join(key)}={_get(nested, key)!r} {message}")


def _get(nested: Mapping[str, Any], key: tuple[str, ...]) -> Any:
    value: Any = nested
    for part in key:
        value = value[part]
    return value


def _table(nested: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    table = nested
    for part in path:
        table = table.setdefault(part, {})
    return table


def _env_name(key: tuple[str, ...]) -> str:
    return ENV_PREFIX + ENV_SEPARATOR.join(part.upper() for part in key)


def _render_table(table: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    scalars = [(name, value) for name, value in table.items() if not isinstance(value, dict)]
    if path and scalars:
        lines.append(f"[{'.'.join(path)}]")
    for name, value in scalars:
        lines.append(f"{name} = {_toml_value(value)}")
    if scalars:
        lines.append("")
    for name, value in table.items():
        if isinstance(value, dict):
            _render_table(value, (*path, name), lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string literal is a valid TOML basic string (same escapes).
        return json.dumps(value)
    assert isinstance(value, (int, float)), (type(value), value)
    return repr(value)


assert {name for name, _ in ENGINE_KEYS.values()} == {
    engine_field.name for engine_field in dataclasses.fields(EngineSettings)
}, "every EngineSettings field needs a config key"
