"""Fixtures of the front-door tests."""

from __future__ import annotations

import pytest

from ..providers.fake_anthropic import FakeAnthropic


@pytest.fixture
def fake():
    """The validating fake Anthropic API."""
    server = FakeAnthropic().start()
    yield server
    assert server.rejections == []  # every request that reached it was valid for the real API
    server.stop()
