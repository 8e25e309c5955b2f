"""Fixtures for output-guard's tests: the repository's gateway fixtures, and an upstream
whose answer text is scripted per model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

# The repository root (where the `tests` package lives) when pytest runs from elsewhere.
ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import gateway_app, gateway_factory, upstream  # noqa: E402,F401

from guard_upstream import ScriptedUpstream  # noqa: E402


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    fake = ScriptedUpstream().start()
    yield fake
    fake.stop()
