"""Fixtures for pii-redact's tests: the repository's gateway fixtures, and an upstream
that echoes the prompt back (streamed a few characters at a time, so placeholders split)."""

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

from pii_upstream import EchoUpstream  # noqa: E402


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    fake = EchoUpstream().start()
    yield fake
    fake.stop()
