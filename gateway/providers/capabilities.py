"""The capability table in docs/providers.md, generated from the adapters' own declarations
(each Provider class's ``capabilities_of``, ``default_base_url`` and ``needs_key``), so the
documentation cannot drift from the code:

    python -m gateway.providers.capabilities                           # print the table
    python -m gateway.providers.capabilities --write docs/providers.md # update it in place

A new provider type needs no change here: register its class in registry.py, declare its
capabilities, and regenerate. A capability name outside COLUMNS gets a column of its own.
tests/providers/test_capabilities.py fails when the committed table differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .registry import provider_types

COLUMNS = ("chat", "completions", "stream", "tools", "vision", "json", "reasoning",
           "embeddings", "images", "audio", "moderations", "rerank")
START = ("<!-- capabilities:start (generated: python -m gateway.providers.capabilities "
         "--write docs/providers.md) -->")
END = "<!-- capabilities:end -->"


def table() -> str:
    """The Markdown table, one row per provider type, sorted by type name."""
    types = provider_types()
    declared = set().union(*(cls.capabilities_of(name) for name, cls in types.items()))
    columns = COLUMNS + tuple(sorted(declared - set(COLUMNS)))
    lines = [
        "| type | adapter | default base_url | key | " + " | ".join(columns) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for name in sorted(types):
        cls = types[name]
        base_url = cls.default_base_url(name)
        cells = [
            f"`{name}`",
            f"`{cls.__module__.rsplit('.', 1)[-1]}.py`",
            f"`{base_url}`" if base_url else "required",
            "required" if cls.needs_key(name) else "optional",
            *("yes" if c in cls.capabilities_of(name) else "–" for c in columns),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_section(text: str, generated: str) -> str:
    """``text`` with everything between the START and END markers replaced by ``generated``."""
    head, found, rest = text.partition(START)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise ValueError("the document has no capabilities markers")
    return f"{head}{START}\n{generated}{END}{tail}"


def section(text: str) -> str:
    """The part of a document between the markers (what ``replace_section`` writes)."""
    return text.partition(START)[2].partition(END)[0].removeprefix("\n")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_section(path.read_text(), table()))
        return 0
    if argv:
        print("usage: python -m gateway.providers.capabilities [--write docs/providers.md]",
              file=sys.stderr)
        return 2
    sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
