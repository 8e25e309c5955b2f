"""\"Did you mean …?\" hints for misspelled keys and names."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    options = sorted({c for c in choices if isinstance(c, str)})
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None
