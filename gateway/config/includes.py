"""``include:`` and ``environments:``: several YAML files and overlays -> one document.

Rules (docs/config.md has the user's version):

- ``include:`` (a file name or a list of them, relative to the including file's folder) pulls
  in other YAML files; they may include further files. A cycle, a missing file or a file that
  does not parse is an error at the ``include:`` entry (or inside the included file). A file
  included twice is read once.
- Sections merge, values do not: a top-level section written as a mapping (``providers``,
  ``routes``, ``server``, ...) is combined entry by entry across files, but the same entry in
  two files is an error naming both places. An include never overrides anything silently;
  ``version`` may be repeated with the same value.
- ``environments: {NAME: overlay}`` is set aside; the selected overlay (``--env NAME`` or
  ``$GATEWAY_ENV``) is merged onto the result: mappings merge key by key, any other value
  (scalars, lists such as ``targets`` or ``rules``) replaces the base value whole, ``null``
  removes the key, and a node kind in the overlay (``target``, ``fallback``, ...) replaces a
  different node kind in the base.
- ``${VAR}`` that are unset are errors only if their value ends up in the result: a variable
  used only by another environment's overlay, or by a base value an overlay replaces, need
  not be set.

Every value keeps the file, line and column it was written at.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Mapping

from ..errors import ConfigError, ConfigErrors
from ..types import CONFIG_NODE_KINDS
from .loader import IncludedFile, LoadedConfig, Reader, decode, parse, read_file, sha256_of
from .source import Path, SourceMap
from .suggest import did_you_mean

_NOT_IN_OVERLAY = ("include", "environments")


def compose(raw: bytes, text: str, path: str, variables: Mapping[str, str],
            environment: str | None = None, *, read: Reader = read_file,
            keep_refs: bool = False) -> LoadedConfig:
    """The LoadedConfig of ``path`` with its includes and the selected environment merged."""
    if environment is None:
        environment = variables.get("GATEWAY_ENV") or None
    unset: list[tuple[Path, ConfigError]] = []
    try:
        data, source = parse(text, path, variables, keep_refs=keep_refs, unset=unset)
    except ConfigErrors as exc:  # report unset variables too, all errors at once
        raise ConfigErrors([*exc.errors, *(e for p, e in unset if p[:1] != ("environments",))])
    plain = not isinstance(data, dict) or not ({"include", "environments"} & set(data))
    if plain and (environment is None or not isinstance(data, dict)):
        if unset:
            raise ConfigErrors([e for _, e in unset])
        return LoadedConfig(path, text, sha256_of(raw), data, source)
    composer = _Composer(path, variables, read, keep_refs)
    composer.unset.extend((path, p, e) for p, e in unset)
    composer.add(path, data, source, [_identity(path)])
    overlays = composer.select(environment)
    errors = composer.errors + composer.surviving_unset()
    if errors:
        raise ConfigErrors(errors)
    files = tuple(composer.files)
    return LoadedConfig(path, text, _bundle_sha256(raw, files), composer.data, composer.source,
                        includes=files, environment=environment, overlays=overlays)


def _bundle_sha256(raw: bytes, files: tuple[IncludedFile, ...]) -> str:
    if not files:
        return sha256_of(raw)
    digest = hashlib.sha256(raw)
    for f in files:
        digest.update(b"\n\0include " + f.name.encode() + b"\0" + f.text.encode())
    return digest.hexdigest()


def _identity(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


class _Composer:
    def __init__(self, main: str, variables: Mapping[str, str], read: Reader, keep_refs: bool):
        self.main = main
        self.variables = variables
        self.read = read
        self.keep_refs = keep_refs
        self.data: dict[str, Any] = {}
        self.source = SourceMap(main)
        self.errors: list[ConfigError] = []
        self.unset: list[tuple[str, Path, ConfigError]] = []  # (file, path in that file, error)
        self.files: list[IncludedFile] = []
        self.seen: set[str] = {_identity(main)}

    # -- includes ----------------------------------------------------------------------------

    def add(self, file: str, data: Any, source: SourceMap, stack: list[str]) -> None:
        if not isinstance(data, dict):
            self.errors.append(source.error(
                (), "an included file must be a mapping of top-level sections, such as "
                    "providers: or routes:"))
            return
        if file == self.main and () in source.values:
            self.source.values[()] = source.values[()]
        accepted: list[Path] = []
        for key, value in data.items():
            if key != "include":
                accepted.extend(self._merge_section(file, key, value, source))
        self._copy(source, file, accepted)
        for _, name, at in self._include_names(data.get("include"), source):
            self._include(file, name, at, source, stack)

    def _include_names(self, value: Any, source: SourceMap) -> list[tuple[int, str, Path]]:
        if value is None:
            return []
        if isinstance(value, str):
            items: list[tuple[int, Any, Path]] | None = [(0, value, ("include",))]
        elif isinstance(value, list):
            items = [(i, v, ("include", i)) for i, v in enumerate(value)]
        else:
            items = None
        if items is None or any(not isinstance(v, str) or not v.strip() for _, v, _ in items):
            self.errors.append(source.error(("include",),
                                            "include must be a file name or a list of file names",
                                            "write include: [providers.yaml, routes/chat.yaml]"))
            return []
        return items

    def _include(self, file: str, name: str, at: Path, source: SourceMap, stack: list[str]) -> None:
        target = os.path.normpath(os.path.join(os.path.dirname(file), name))
        identity = _identity(target)
        if identity in stack:
            chain = [os.path.basename(p) for p in stack[stack.index(identity):]]
            self.errors.append(source.error(
                at, f"include cycle: {' -> '.join(chain + [os.path.basename(target)])}",
                "a file may not include itself, directly or through other files"))
            return
        if identity in self.seen:
            return  # included twice (a diamond): its sections are already in
        self.seen.add(identity)
        try:
            raw = self.read(target)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.errors.append(source.error(
                at, f"cannot read included file '{name}' ({target}): {reason}",
                "include paths are relative to the folder of the file that includes them"))
            return
        unset: list[tuple[Path, ConfigError]] = []
        try:
            text = decode(raw, target)
            data, sub = parse(text, target, self.variables, keep_refs=self.keep_refs, unset=unset)
        except ConfigErrors as exc:
            self.errors.extend(exc.errors)
            self.errors.extend(e for p, e in unset if p[:1] != ("environments",))
            return
        self.unset.extend((target, p, e) for p, e in unset)
        stored = os.path.relpath(target, os.path.dirname(self.main) or ".").replace(os.sep, "/")
        self.files.append(IncludedFile(target, stored, text, sha256_of(raw)))
        self.add(target, data, sub, stack + [identity])

    def _merge_section(self, file: str, key: str, value: Any, source: SourceMap) -> list[Path]:
        """Merge one top-level section of ``file``; returns the paths it contributed."""
        existing = self.data.get(key)
        if key not in self.data or existing is None:
            self.data[key] = value
            return [(key,)]
        if value is None or (key == "version" and existing == value):
            return []
        if isinstance(existing, dict) and isinstance(value, dict):
            added: list[Path] = []
            for name, entry in value.items():
                if name in existing:
                    self._conflict(source, (key, name))
                    continue
                existing[name] = entry
                added.append((key, name))
            return added
        self._conflict(source, (key,))
        return []

    def _conflict(self, source: SourceMap, path: Path) -> None:
        line, col = self.source.key_position(path)
        first = f"{self.source.files.get(path, self.main)}:{line}:{col}"
        self.errors.append(source.error(
            path, f"{'.'.join(map(str, path))} is already defined at {first}",
            "included files may add sections and entries but not redefine them; remove one, "
            "or use environments: to change a value per environment", at_key=True))

    def _copy(self, source: SourceMap, file: str, prefixes: list[Path]) -> None:
        """Copy the positions under ``prefixes`` from a file's SourceMap into the result's."""
        wanted = set(prefixes)
        if not wanted:
            return
        depths = sorted({len(p) for p in wanted})
        for table, mine in ((source.values, self.source.values), (source.keys, self.source.keys)):
            for path, where in table.items():
                if any(path[:d] in wanted for d in depths):
                    mine[path] = where
                    if file != self.main:
                        self.source.files[path] = file

    # -- environments ------------------------------------------------------------------------

    def select(self, environment: str | None) -> dict[str, Any]:
        """Set ``environments:`` aside and merge the selected overlay; returns every overlay."""
        envs = self.data.pop("environments", None)
        where: Path = ("environments",)
        if envs is not None and not isinstance(envs, dict):
            self.errors.append(self.source.error(
                where, "environments must map environment names to overlays",
                "write environments: {prod: {server: {port: 80}}}"))
            return {}
        envs = envs or {}
        if environment is None:
            self._drop_unset(lambda p: p[:1] == where)
            return envs
        if environment not in envs:
            self._unknown_environment(environment, envs)
            return envs
        overlay = envs[environment]
        base = ("environments", environment)
        self._drop_unset(lambda p: p[:1] == where and p[:2] != base)
        if overlay is None:
            return envs
        if not isinstance(overlay, dict):
            self.errors.append(self.source.error(base, f"environment '{environment}' must be a "
                                                       "mapping of sections to change"))
            return envs
        for key in _NOT_IN_OVERLAY:
            if key in overlay:
                self.errors.append(self.source.error(
                    base + (key,), f"an environment overlay cannot contain {key}:",
                    "put include: and environments: at the top level", at_key=True))
        body = {k: v for k, v in overlay.items() if k not in _NOT_IN_OVERLAY}
        self._overlay(self.data, body, (), base)
        return envs

    def _unknown_environment(self, environment: str, envs: dict[str, Any]) -> None:
        names = ", ".join(sorted(envs)) or "none"
        if not envs:
            self.errors.append(ConfigError(
                self.main, 1, 1, "$",
                f"environment '{environment}' is selected (--env or GATEWAY_ENV) but the config "
                "defines no environments:", "add environments: or unset GATEWAY_ENV"))
            return
        self.errors.append(self.source.error(
            ("environments",), f"unknown environment '{environment}' (defined: {names})",
            did_you_mean(environment, list(envs)), at_key=True))

    def _overlay(self, base: dict[str, Any], over: dict[str, Any], path: Path, opath: Path) -> None:
        if any(k in CONFIG_NODE_KINDS for k in over):
            for kind in CONFIG_NODE_KINDS:
                if kind in base and kind not in over:
                    del base[kind]
                    self._forget(path + (kind,))
        for key, value in over.items():
            here, there = path + (key,), opath + (key,)
            current = base.get(key)
            if value is None:
                if key in base:
                    del base[key]
                    self._forget(here)
            elif isinstance(current, dict) and isinstance(value, dict):
                self._overlay(current, value, here, there)
            else:
                if key in base:
                    self._forget(here)
                base[key] = value
                self._rebase(there, here)

    def _forget(self, prefix: Path) -> None:
        n = len(prefix)
        for table in (self.source.values, self.source.keys, self.source.files):
            for path in [p for p in table if p[:n] == prefix]:
                del table[path]

    def _rebase(self, there: Path, here: Path) -> None:
        """Positions of the overlay's ``there`` become those of ``here`` in the result."""
        n = len(there)
        files = self.source.files
        for table in (self.source.values, self.source.keys):
            for path, where in [(p, w) for p, w in table.items() if p[:n] == there]:
                new = here + path[n:]
                table[new] = where
                if path in files:
                    files[new] = files[path]
                else:
                    files.pop(new, None)

    # -- unset variables ---------------------------------------------------------------------

    def _drop_unset(self, gone: Callable[[Path], bool]) -> None:
        self.unset = [(f, p, e) for f, p, e in self.unset if not gone(p)]

    def surviving_unset(self) -> list[ConfigError]:
        """Unset ${VAR} errors whose value is still in the result, at the same place."""
        out = []
        for file, path, error in self.unset:
            if path[:1] == ("environments",):
                path = path[2:]  # the selected overlay's values now live at the top
            if self.source.values.get(path) == (error.line, error.column) and \
                    self.source.files.get(path, self.main) == file:
                out.append(error)
        return out
