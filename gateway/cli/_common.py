"""What the gitops commands share: config and environment options, k=v pairs, the version
store of a config, and a small client for a running gateway's admin API."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from ..config.loader import LoadedConfig, load_bytes, read_file
from ..config.versions import VersionStore, data_dir_for, identity_for
from ..builtin.files_cli import NO_REDIRECTS, redirect_refused
from ..errors import ConfigErrors


def add_config_options(p, *, config_flag: bool = True) -> None:
    if config_flag:
        p.add_argument("--config", "-c", default="gateway.yaml",
                       help="config file (default: gateway.yaml)")
    p.add_argument("--env", "-e", dest="environment", metavar="NAME",
                   help="merge the environments.NAME overlay (default: $GATEWAY_ENV)")


FORMATS = ("human", "json")
_FORMAT_ALIASES = {"table": "human"}  # the spelling `keys list` and `usage` had: still accepted


def add_format_option(p) -> None:
    """The one --format of every command: human (default) or json."""
    p.add_argument("--format", "-f", choices=FORMATS, default="human", type=_format,
                   help="output for people (default) or JSON for machines")


def _format(value: str) -> str:
    return _FORMAT_ALIASES.get(value, value)


def add_admin_options(p) -> None:
    p.add_argument("--url", help="a running gateway (default: http://server.host:server.port "
                                 "of the config)")
    p.add_argument("--admin-token", help="bearer token for /admin/* (default: "
                                         "$GATEWAY_ADMIN_TOKEN, then server.admin_token)")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def fail(message: str, status: int = 2) -> int:
    print(f"gateway: {message}", file=sys.stderr)
    return status


def no_config_message(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    return (f"{path}: no such config file (in {folder}); pass --config FILE, or write one with "
            "`gateway init`")


def require_config(path: str) -> int | None:
    """For commands that read a config: when there is none, say so (exit 2) and create
    nothing; None when it exists."""
    return None if os.path.exists(path) else fail(no_config_message(path))


def print_errors(exc: ConfigErrors) -> None:
    for err in exc.errors:
        print(err, file=sys.stderr)  # looked up now: tests and callers may swap sys.stderr


def parse_pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``k=v`` pairs into a dict: values are JSON when they parse (5000, true, [a]) and strings
    otherwise; dotted keys nest (a.b=1 -> {"a": {"b": 1}})."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: write KEY=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{flag} {item!r}: {part} is already a value")
        node[parts[-1]] = value
    return out


def quiet_load(path: str, environment: str | None) -> LoadedConfig | None:
    """The config as the server would load it, or None when it does not load (then callers
    fall back to defaults: a broken file must not hide its history)."""
    try:
        return load_bytes(read_file(path), path, environment=environment)
    except (ConfigErrors, OSError):
        try:
            return load_bytes(read_file(path), path, environment=environment, keep_refs=True)
        except (ConfigErrors, OSError):
            return None


def store_for(config_path: str, environment: str | None = None) -> VersionStore:
    """The version store of a config, scoped to its identity (server.name, else its path)."""
    loaded = quiet_load(config_path, environment)
    data = loaded.data if loaded else None
    return VersionStore(data_dir_for(config_path, data), identity_for(config_path, data))


class AdminError(Exception):
    """The admin API could not be asked; the message says which URL and why."""


class AdminClient:
    def __init__(self, config_path: str, environment: str | None, url: str | None = None,
                 token: str | None = None, timeout: float = 5.0):
        loaded = None if url and token else quiet_load(config_path, environment)
        server = (loaded.data.get("server") if loaded and isinstance(loaded.data, dict) else None)
        server = server if isinstance(server, dict) else {}
        if url is None:
            host = server.get("host", "127.0.0.1")
            host = "127.0.0.1" if host in ("0.0.0.0", "", None) or not isinstance(host, str) \
                else ("[::1]" if host == "::" else host)
            port = server.get("port", 8080)
            url = f"http://{host}:{port}"
        self.url = url.rstrip("/")
        configured = server.get("admin_token")
        self.token = token or os.environ.get("GATEWAY_ADMIN_TOKEN") or (
            configured if isinstance(configured, str) and "${" not in configured else "")
        self.timeout = timeout

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with NO_REDIRECTS.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            message = redirect_refused(exc) if 300 <= exc.code < 400 else _error_message(exc)
            if exc.code == 401:
                message += " (pass --admin-token or set GATEWAY_ADMIN_TOKEN)"
            raise AdminError(f"{method} {self.url}{path}: {exc.code} {message}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"no gateway answered at {self.url} ({reason}); is `gateway "
                             "serve` running? (--url to ask another address)") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return exc.reason or ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return exc.reason or ""


def data_dir_of(config: str, override: str | None, environment: str | None = None) -> str:
    """--data-dir, else the config's server.data_dir (relative to its file), else .gateway
    beside it. The config need not be valid."""
    if override:
        return os.path.abspath(override)
    loaded = quiet_load(config, environment) if os.path.exists(config) else None
    return data_dir_for(config, loaded.data if loaded else None)


def add_location_args(parser) -> None:
    add_config_options(parser)
    parser.add_argument("--data-dir", help="the data directory, instead of the config's")
