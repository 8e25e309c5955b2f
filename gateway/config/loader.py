"""YAML text -> plain data plus a SourceMap.

Built on ruamel.yaml's composer rather than its constructor, so that:
- every key and value keeps its line and column (for error messages);
- duplicate keys are errors (YAML parsers silently keep the last one);
- ``${VAR}`` and ``${VAR:-default}`` are interpolated with the position of the scalar they sit in;
- the result is plain dicts, lists, str, int, float, bool and None (YAML 1.2: ``on`` and ``yes``
  stay strings).

``include:`` and ``environments:`` are resolved here too (includes.py), so everything after the
loader sees one document whose SourceMap still names the file of every value.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, cast

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import ConfigError, ConfigErrors
from .composer import GuardedComposer, YAMLRefused
from .source import Path, SourceMap, format_path

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class LoadedConfig:
    """A parsed config file: plain data, positions, and the exact text it came from."""

    path: str
    text: str
    sha256: str  # of the file; with includes, of the file and every included file together
    data: Any
    source: SourceMap
    includes: tuple["IncludedFile", ...] = ()  # in the order they were read
    environment: str | None = None  # the environments: overlay merged into data, if any
    overlays: Mapping[str, Any] = field(default_factory=dict)  # every environment, as written


@dataclass(frozen=True)
class IncludedFile:
    path: str  # as read (relative to the including file's folder, joined onto it)
    name: str  # relative to the main file's folder, with "/": how versions store it
    text: str
    sha256: str


Reader = Callable[[str], bytes]


def read_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def load_file(path: str, env: Mapping[str, str] | None = None,
              environment: str | None = None) -> LoadedConfig:
    """Read and parse a config file; raises ConfigErrors naming the file on any problem."""
    try:
        raw = read_file(path)
    except OSError as exc:
        raise ConfigErrors([ConfigError(path, 1, 1, "$", f"cannot read config: {exc.strerror}")])
    return load_bytes(raw, path, env, environment)


def load_bytes(raw: bytes, path: str, env: Mapping[str, str] | None = None,
               environment: str | None = None, *, read: Reader = read_file,
               keep_refs: bool = False) -> LoadedConfig:
    """Parse a config given as bytes. ``environment`` selects an ``environments:`` overlay
    (default: $GATEWAY_ENV); included files are read with ``read``; ``keep_refs`` leaves
    ``${VAR}`` references as written instead of interpolating them (for diffs)."""
    from .includes import compose  # includes.py builds on parse(): imported here, not above

    text = decode(raw, path)
    return compose(raw, text, path, os.environ if env is None else env, environment,
                   read=read, keep_refs=keep_refs)


def decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigErrors([ConfigError(path, 1, 1, "$", f"not UTF-8 text: {exc.reason}")])


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def parse(text: str, file: str, env: Mapping[str, str], *, keep_refs: bool = False,
          unset: list[tuple[Path, ConfigError]] | None = None) -> tuple[Any, SourceMap]:
    """YAML text -> (data, SourceMap). With ``unset`` given, unset ${VAR}s are appended to it
    (path, error) instead of failing: the caller decides whether the value survives."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = GuardedComposer
    try:
        root = yaml.compose(text)
    except YAMLRefused as exc:
        raise ConfigErrors([ConfigError(file, exc.line, exc.column, "$", exc.message, exc.hint)])
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigErrors([ConfigError(file, line, col, "$", f"YAML syntax error: {problem}")])
    source = SourceMap(file)
    if root is None:
        raise ConfigErrors([ConfigError(file, 1, 1, "$", "the file is empty")])
    builder = _Builder(yaml, source, env, keep_refs, unset)
    data = builder.build(root, ())
    if builder.errors:
        raise ConfigErrors(builder.errors)
    return data, source


class _Builder:
    def __init__(self, yaml: YAML, source: SourceMap, env: Mapping[str, str],
                 keep_refs: bool = False, unset: list[tuple[Path, ConfigError]] | None = None):
        self.constructor = yaml.constructor
        self.source = source
        self.env = env
        self.keep_refs = keep_refs
        self.unset = unset
        self.errors: list[ConfigError] = []

    def build(self, node: Node, path: Path) -> Any:
        self.source.values.setdefault(path, _pos(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(cast(ScalarNode, node), path)  # the only other kind of node

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[Any, tuple[int, int]] = {}
        merges: list[MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.extend(_merge_sources(value_node))
                continue
            key = self._key(key_node, path)
            where = _pos(key_node)
            if key in seen:
                self.errors.append(
                    ConfigError(
                        self.source.file,
                        *where,
                        format_path(path + (key,)),
                        f"duplicate key '{key}' (first defined at line {seen[key][0]}); "
                        "YAML would silently keep only the last one",
                    )
                )
                continue
            seen[key] = where
            out[key] = self._entry(key_node, value_node, path + (key,))
        # `<<: *anchor` fills in only the keys the mapping does not set itself; their positions
        # are the anchor's, where the value is written.
        for source in merges:
            for key_node, value_node in source.value:
                key = self._key(key_node, path)
                if key not in out and key_node.tag != _MERGE_TAG:
                    out[key] = self._entry(key_node, value_node, path + (key,))
        return out

    def _entry(self, key_node: Node, value_node: Node, path: Path) -> Any:
        where = _pos(key_node)
        self.source.keys[path] = where
        if isinstance(value_node, ScalarNode) and value_node.value == "" and not value_node.style:
            # An empty value has no position of its own (YAML gives it the next token's): use
            # its key's, so `route:` with nothing after it is reported on its own line.
            self.source.values[path] = where
        return self.build(value_node, path)

    def _key(self, key_node: Node, path: Path) -> str:
        key = self._construct(key_node, path)
        if isinstance(key, str):
            return key
        return str(key) if isinstance(key, (int, float, bool)) or key is None else repr(key)

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        value = self._construct(node, path)
        if not isinstance(value, str) or "$" not in value or self.keep_refs:
            return value
        return self._interpolate(node, value, path)

    def _construct(self, node: Node, path: Path) -> Any:
        """The Python value of a node; a value its tag cannot read (``!!int abc``) is an error."""
        try:
            return self.constructor.construct_object(node, deep=True)
        except (MarkedYAMLError, ValueError, KeyError, TypeError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.errors.append(ConfigError(self.source.file, *_pos(node), format_path(path),
                                           f"cannot read this YAML value: {problem}"))
            return None

    def _interpolate(self, node: ScalarNode, text: str, path: Path) -> Any:
        whole = _VAR.fullmatch(text)

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            error = self.source.error(
                path,
                f"environment variable ${{{name}}} is not set",
                f"set {name}, or give a default: ${{{name}:-value}}",
            )
            if self.unset is None:
                self.errors.append(error)
            else:
                self.unset.append((path, error))
            return ""

        result = _VAR.sub(replace, text)
        # A plain scalar that is exactly one ${VAR} takes the YAML type of what it expands to,
        # so `port: ${PORT:-8080}` is a number. Quoted scalars always stay strings.
        if whole and whole.group(0) != "$$" and node.style is None and result:
            return _plain_scalar(result)
        return result


_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")


def _plain_scalar(text: str) -> Any:
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def _merge_sources(node: Node) -> list[MappingNode]:
    if isinstance(node, MappingNode):
        return [node]
    if isinstance(node, SequenceNode):
        return [n for n in node.value if isinstance(n, MappingNode)]
    return []


def _pos(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
