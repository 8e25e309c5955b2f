"""Durations read from gateway.yaml and printed back."""

from __future__ import annotations

import pytest

from gateway.units import duration_text, seconds


@pytest.mark.parametrize("text, expected", [("700ms", 0.7), ("9ms", 0.009), ("250ms", 0.25),
                                            ("1.5s", 1.5), ("5m", 300.0), (2, 2.0)])
def test_durations_are_exact_seconds(text, expected):
    """700ms is 0.7 (not 0.7000000000000001), so admin JSON and explanations show it as written."""
    assert seconds(text) == expected


@pytest.mark.parametrize("value, text", [(0.49968, "0.5s"), (0.125, "0.125s"), (30.0, "30s"),
                                         (3600.0, "3600s"), (0.0001, "0.001s"), (0.0, "0s")])
def test_durations_are_printed_to_the_millisecond(value, text):
    assert duration_text(value) == text
