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
    """Positions (1-based line and column) of every key and value, by path."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path) -> tuple[int, int]:
        """The position of the value at ``path``, or of its nearest known ancestor."""
        path = tuple(path)
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), (1, 1))

    def key_position(self, path: Path) -> tuple[int, int]:
        """The position of the mapping key that ends ``path`` (falls back to the value)."""
        return self.keys.get(tuple(path)) or self.position(path)

    def error(
        self, path: Path, message: str, hint: str | None = None, *, at_key: bool = False,
        severity: str = "error",
    ) -> ConfigError:
        line, col = self.key_position(path) if at_key else self.position(path)
        return ConfigError(self.file, line, col, format_path(path), message, hint, severity)
