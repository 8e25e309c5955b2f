"""docs/providers.md's capability table is generated from the adapters' declarations."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.providers import capabilities
from gateway.providers.base import Provider
from gateway.providers.registry import provider_types

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"


def test_committed_table_matches_the_code():
    """The table in docs/providers.md is what the code declares (regenerate it if not)."""
    assert capabilities.section(DOC.read_text()) == capabilities.table(), (
        "run: python -m gateway.providers.capabilities --write docs/providers.md")


def test_every_type_is_a_row_with_its_capabilities(monkeypatch):
    """A newly registered type shows up with its own capabilities and no generator change."""

    class Fancy(Provider):
        capabilities = frozenset({"chat", "telepathy"})

        async def send(self, request):  # pragma: no cover - never called
            raise NotImplementedError

    real = provider_types()
    monkeypatch.setattr(capabilities, "provider_types", lambda: {**real, "fancy": Fancy})
    lines = capabilities.table().splitlines()
    assert lines[0].endswith("| rerank | telepathy |")
    row = next(line for line in lines if line.startswith("| `fancy` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:] == ["yes"] + ["–"] * 11 + ["yes"]
    assert len(lines) == len(real) + 3


def test_replace_section_needs_markers():
    """Writing into a document without the markers is refused, not appended somewhere."""
    with pytest.raises(ValueError):
        capabilities.replace_section("# no markers\n", "table")
    text = f"a\n{capabilities.START}\nold\n{capabilities.END}\nb\n"
    assert capabilities.replace_section(text, "new\n") == (
        f"a\n{capabilities.START}\nnew\n{capabilities.END}\nb\n")
