"""Joining a continuation to the text a client already has: repeats dropped, whitespace not
doubled, words kept apart in the prompt form, and held back only while it could be a repeat."""

from __future__ import annotations

import random

import pytest

from gateway.graph.stream_seam import Seam, join, overlap


def test_overlap_is_the_longest_end_of_sent_that_starts_the_continuation():
    """Checked against the obvious quadratic definition on random short strings."""
    rng = random.Random(7)
    for _ in range(3000):
        sent = "".join(rng.choice("ab ") for _ in range(rng.randint(0, 12)))
        more = "".join(rng.choice("ab ") for _ in range(rng.randint(0, 12)))
        expected = max(k for k in range(min(len(sent), len(more)) + 1)
                       if sent.endswith(more[:k]))
        assert overlap(sent, more) == expected, (sent, more)


@pytest.mark.parametrize("sent, continuation, prompt_form, joined", [
    ("w1 w2 w3", " w4", False, " w4"),  # a prefill continued exactly
    ("w1 w2 w3", "w2 w3 w4", True, " w4"),  # the last words repeated
    ("w1 w2 w3", "w1 w2 w3 w4", True, " w4"),  # started over
    ("ab", "ab cd", True, " cd"),  # started over, however short
    ("the end of a", "a b", False, "a b"),  # a short coincidence is not a repeat
    ("foo bar ", " baz", False, "baz"),  # whitespace not doubled
    ("para one.\n\n", "\n\nPara two", False, "Para two"),
    ("w1 w2 w3", "w4 w5", True, " w4 w5"),  # the prompt form starts a new word
    ("w1 w2 w3", "w4 w5", False, "w4 w5"),  # a prefill's continuation is taken as written
    ("它说", "你好", True, "你好"),  # no space between words that have none
    ("w1 w2 w3", "", True, ""),
])
def test_join(sent, continuation, prompt_form, joined):
    assert join(sent, continuation, join_words=prompt_form) == joined


def test_seam_holds_back_only_while_the_text_could_be_a_repeat():
    """A repeat is held back until it is known to be one; then the rest passes at once."""
    seam = Seam("one two three four", join_words=True)
    assert seam.feed("three") == ""  # could be the start of a repeat
    assert seam.feed(" four") == ""
    assert seam.feed(" five") == " five"
    assert seam.feed(" six") == " six"


def test_seam_lets_an_ordinary_continuation_through_after_its_first_word():
    seam = Seam("one two three", join_words=False)
    assert seam.feed(" th") == ""  # as in " three": could be a repeat
    assert seam.feed("irty") == " thirty"  # " thirty" is not in the sent text: decided
    assert seam.feed(" one") == " one"


def test_seam_flushes_what_it_holds_when_the_continuation_ends():
    seam = Seam("one two three", join_words=False)
    assert seam.feed(" two") == ""
    assert seam.flush() == " two"  # under 4 characters and not the whole: not a repeat
    assert Seam("", join_words=True).feed("all") == "all"
