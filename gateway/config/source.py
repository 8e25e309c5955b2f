"""Where each value of a config came from: file, line and column per JSON path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError

Path = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Path) -> str:
    """('routes', 'smart', 'targets', 0) -> $.routes.smart.targets[0]"""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.match(part):
            out.append(f".{part}")
        else:
            out.append(f'["{part}"]')
    return "".join(out)


@dataclass
class SourceMap:
    """Positions (1-based line and column) of every key and value, by path.

    ``file`` is the file a path comes from unless ``files`` names another one for it: a config
    put together from several files (``include:``, ``environments:``) records, for each path
    that came from elsewhere, the file its key and value are written in.
    """

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    files: dict[Path, str] = field(default_factory=dict)

    def position(self, path: Path) -> tuple[int, int]:
        """The position of the value at ``path``, or of its nearest known ancestor."""
        return self.values.get(self._known(path), (1, 1))

    def file_of(self, path: Path) -> str:
        """The file the value at ``path`` (or its nearest known ancestor) is written in."""
        return self.files.get(self._known(path), self.file)

    def _known(self, path: Path) -> Path:
        path = tuple(path)
        while path and path not in self.values:
            path = path[:-1]
        return path

    def key_position(self, path: Path) -> tuple[int, int]:
        """The position of the mapping key that ends ``path`` (falls back to the value)."""
        return self.keys.get(tuple(path)) or self.position(path)

    def error(
        self, path: Path, message: str, hint: str | None = None, *, at_key: bool = False,
        severity: str = "error",
    ) -> ConfigError:
        path = tuple(path)
        if at_key and path in self.keys:
            (line, col), file = self.keys[path], self.files.get(path, self.file)
        else:
            (line, col), file = self.position(path), self.file_of(path)
        return ConfigError(file, line, col, format_path(path), message, hint, severity)
