"""Keep secrets out of what the gateway shows: config texts (admin API) and values (diffs).

A secret field (``api_key``, ``admin_token``, the AWS keys, an alert ``webhook`` and its
``secret``, any value under a provider's ``headers``) may be shown only as a reference:
``${VAR}``, ``secret:NAME``, or text around ``${VAR}`` such as ``Bearer ${TOKEN}``. A value
written literally is replaced by ``***``, and so is the default of ``${VAR:-default}``. In
any other value, the userinfo of a URL (``http://user:pass@host``) is replaced by ``***``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .schema import SECRET_FIELDS
from .userinfo import mask_userinfo, userinfo_secrets

SECRET_KEYS = SECRET_FIELDS | {"webhook", "secret"}
SECRET_PARENTS = frozenset({"headers"})  # every value under these mappings
MASK = "***"

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_REF = re.compile(r"^secret:[A-Za-z0-9_.-]+$")
_LINE = re.compile(r"^(\s*-?\s*[\"']?(?:%s)[\"']?\s*:\s*)(\S.*)$" % "|".join(sorted(SECRET_KEYS)))


def is_secret_key(key: Any, parent: Any = None) -> bool:
    return key in SECRET_KEYS or parent in SECRET_PARENTS


def mask_value(value: Any) -> Any:
    """The value as it may be shown: references stay, literals become ***."""
    if not isinstance(value, str):
        return MASK if value is not None else None
    if _SECRET_REF.match(value.strip()):
        return value
    if not _REF.search(value):
        return MASK if value else value
    return _REF.sub(lambda m: f"${{{m.group(1)}:-{MASK}}}" if m.group(2) else m.group(0), value)


def mask_data(data: Any, parent: Any = None) -> Any:
    """A copy of loaded data with every secret field masked (for data loaded with keep_refs)."""
    if isinstance(data, dict):
        return {k: (mask_value(v) if is_secret_key(k, parent) and not isinstance(v, (dict, list))
                    else mask_data(v, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_data(v, parent) for v in data]
    if isinstance(data, str):
        return mask_userinfo(data)
    return data


def secret_values(data: Any, parent: Any = None) -> set[str]:
    """Every credential value in resolved config data (``${VAR}`` and ``secret:`` already
    replaced): what upstream error text is scrubbed of (providers/scrub.py)."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if is_secret_key(key, parent):
                found.update(_strings(value))
            else:
                found.update(secret_values(value, key))
    elif isinstance(data, list):
        for item in data:
            found.update(secret_values(item, parent))
    elif isinstance(data, str):
        found.update(userinfo_secrets(data))
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def redact_text(text: str) -> str:
    """``text`` with every literal secret value replaced by ***, all else byte for byte."""
    yaml = YAML(typ="safe", pure=True)
    try:
        root = yaml.compose(text)
    except YAMLError:
        return _redact_lines(text)
    spans: dict[int, tuple[int, str]] = {}
    _walk(root, None, spans, set())
    out = text
    for start in sorted(spans, reverse=True):
        end, replacement = spans[start]
        out = out[:start] + replacement + out[end:]
    return out


def _walk(node: Node | None, parent: Any, spans: dict[int, tuple[int, str]],
          seen: set[int]) -> None:
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if isinstance(value_node, ScalarNode) and is_secret_key(key, parent):
                _mask_scalar(value_node, spans)
            elif key in SECRET_KEYS and not isinstance(value_node, ScalarNode):
                _walk(value_node, "headers", spans, seen)  # mask everything inside
            else:
                _walk(value_node, key, spans, seen)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _walk(item, parent, spans, seen)
    elif isinstance(node, ScalarNode) and parent in SECRET_PARENTS:
        _mask_scalar(node, spans)
    elif isinstance(node, ScalarNode) and mask_userinfo(node.value) != node.value:
        spans[node.start_mark.index] = (node.end_mark.index, json.dumps(mask_userinfo(node.value)))


def _mask_scalar(node: ScalarNode, spans: dict[int, tuple[int, str]]) -> None:
    value = node.value
    masked = mask_value(value)
    if masked == value or not value:
        return
    spans[node.start_mark.index] = (node.end_mark.index, json.dumps(masked))


def _redact_lines(text: str) -> str:
    """Fallback for a text that does not parse: mask the value after any secret key."""
    out = []
    for line in text.splitlines(keepends=True):
        line = mask_userinfo(line)
        match = _LINE.match(line.rstrip("\n"))
        if match and mask_value(match.group(2).strip("\"' ")) != match.group(2).strip("\"' "):
            line = match.group(1) + json.dumps(MASK) + ("\n" if line.endswith("\n") else "")
        out.append(line)
    return "".join(out)
