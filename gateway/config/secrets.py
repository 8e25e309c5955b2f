"""``secret:NAME`` references in provider and alert settings, resolved from the vault at compile
time.

Any string value under ``providers.<name>`` (``api_key``, ``azure_ad_token``, the ``aws_*``
keys, a header value, ...) or ``observability`` (an alert webhook's ``secret``, the OTLP
exporter's headers) that is exactly ``secret:NAME`` is replaced by the value stored in
the vault of the config's ``data_dir``. The config text itself keeps the reference: only the
compiled graph holds the value. A config without any reference never opens the vault, so
``gateway validate`` needs no vault (nor master key) for it.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any, Mapping

from ..errors import ConfigError
from ..vault import NAME_PATTERN, Vault, VaultError
from .source import Path, SourceMap
from .suggest import did_you_mean

PREFIX = "secret:"
_REF = re.compile(re.escape(PREFIX) + "(" + NAME_PATTERN + ")")
# Where references are resolved: provider settings, and alert webhooks (their HMAC secret).
REFERENCE_SECTIONS = ("providers", "observability")


def find_references(data: Any) -> list[tuple[Path, str | None]]:
    """(path, name) of every ``secret:`` value under ``providers`` and ``observability``;
    name is None when what follows ``secret:`` is not a valid name."""
    found: list[tuple[Path, str | None]] = []

    def walk(value: Any, path: Path) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, path + (i,))
        elif isinstance(value, str) and value.startswith(PREFIX):
            match = _REF.fullmatch(value)
            found.append((path, match.group(1) if match else None))

    if isinstance(data, dict):
        for section in REFERENCE_SECTIONS:
            value = data.get(section)
            if isinstance(value, dict):
                walk(value, (section,))
    return found


def resolve_secrets(data: Any, source: SourceMap, data_dir: str,
                    env: Mapping[str, str] | None = None) -> tuple[Any, list[ConfigError]]:
    """(data with every reference replaced, errors). ``data`` itself is never changed: when
    there are references, the result is a copy whose ``providers`` are a deep copy (the
    loaded config is kept by its callers and must not carry secret values). Without any
    reference ``data`` is returned as is and the vault is not opened."""
    refs = find_references(data)
    if not refs:
        return data, []
    errors: list[ConfigError] = []
    for path, name in refs:
        if name is None:
            errors.append(source.error(
                path, "'secret:' must be followed by the name of a secret in the vault",
                "names are letters, digits, '.', '_' and '-', for example secret:openai-prod"))
    wanted = [(path, name) for path, name in refs if name is not None]
    if not wanted:
        return data, errors
    vault = Vault(data_dir, os.environ if env is None else env)
    try:
        values, names = vault.resolve({name for _, name in wanted})
    except VaultError as exc:
        path, name = wanted[0]
        errors.append(source.error(path, f"cannot resolve secret:{name}: {exc}"))
        return data, errors
    resolved = dict(data)
    for section in {path[0] for path, _ in wanted}:
        resolved[section] = copy.deepcopy(data[section])
    for path, name in wanted:
        if name not in values:
            errors.append(_unknown(source, path, name, names, vault.path))
            continue
        _assign(resolved, path, values[name])
    return resolved, errors


def _unknown(source: SourceMap, path: Path, name: str, names: list[str],
             vault_path: str) -> ConfigError:
    store = f"store it with: gateway secrets set {name}"
    if not names:
        where = f"there is no vault at {vault_path}" if not os.path.exists(vault_path) \
            else f"the vault at {vault_path} is empty"
        return source.error(path, f"unknown secret '{name}': {where}", store)
    hint = did_you_mean(name, names) or store
    return source.error(path, f"unknown secret '{name}' (not in the vault at {vault_path})", hint)


def _assign(data: Any, path: Path, value: str) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value

