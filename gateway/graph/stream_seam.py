"""Where a continuation's text joins the text a client already has (stream_recovery.py).

A model asked to continue a reply does not always start exactly where the reply stopped: it
may repeat the last words, start the whole answer again, or (asked in a new message rather
than through a prefill) begin a new word without the space that separates it from the last
one. ``Seam`` holds back the start of the continuation until it can tell, then gives out only
the new text:

- a repeat of at least ``MIN_OVERLAP`` characters that ends the sent text (the longest one;
  the whole sent text when the continuation starts over) is dropped;
- whitespace the sent text ends with is not doubled by whitespace the continuation starts
  with (a prefill sent to Anthropic loses its trailing whitespace, so the model writes it
  again);
- with ``join_words`` (the prompt form), a continuation that starts a word right after a word
  or a sentence's punctuation gets one space between them.

It waits only while the text so far could still turn out to be a repeat (it occurs in the
sent text), so an ordinary continuation passes after its first word or two.
"""

from __future__ import annotations

MIN_OVERLAP = 4  # characters: a shorter coincidence (" a", "s.") is not taken for a repeat
_ENDS_WORD = frozenset(".,;:!?)]}\"'")


class Seam:
    """Fed the continuation's text piece by piece; gives back what the client should get."""

    __slots__ = ("_sent", "_held", "_decided", "_join_words")

    def __init__(self, sent: str, *, join_words: bool) -> None:
        self._sent = sent
        self._held = ""
        self._decided = not sent  # nothing was sent: nothing can be repeated
        self._join_words = join_words

    def feed(self, text: str) -> str:
        if self._decided:
            return text
        self._held += text
        if len(self._held) < len(self._sent) and self._held in self._sent:
            return ""  # still possibly a repeat: wait for more
        return self._decide()

    def flush(self) -> str:
        """What is held back, once the continuation ends (or must be sent now)."""
        return "" if self._decided else self._decide()

    def _decide(self) -> str:
        self._decided = True
        held, self._held = self._held, ""
        return join(self._sent, held, join_words=self._join_words)


def join(sent: str, continuation: str, *, join_words: bool) -> str:
    """The part of ``continuation`` that follows ``sent`` (see the module docstring)."""
    if not continuation:
        return continuation
    k = overlap(sent, continuation)
    if k and (k >= MIN_OVERLAP or k == len(sent)) and not continuation[:k].isspace():
        return continuation[k:]
    trailing = len(sent) - len(sent.rstrip())
    leading = len(continuation) - len(continuation.lstrip())
    if trailing and leading:
        return continuation[min(trailing, leading):]
    if (join_words and not trailing and not leading and sent
            and (sent[-1].isalnum() or sent[-1] in _ENDS_WORD)
            and continuation[0].isascii() and continuation[0].isalnum()):
        return " " + continuation
    return continuation


def overlap(sent: str, continuation: str) -> int:
    """The length of the longest end of ``sent`` that ``continuation`` starts with, in linear
    time (the prefix function of ``continuation`` run over ``sent``)."""
    pattern = continuation[:len(sent)]
    if not pattern:
        return 0
    border = [0] * len(pattern)
    k = 0
    for i in range(1, len(pattern)):
        while k and pattern[i] != pattern[k]:
            k = border[k - 1]
        if pattern[i] == pattern[k]:
            k += 1
        border[i] = k
    k = 0
    for ch in sent[-len(pattern):]:  # a longer end could not be a prefix of the pattern
        while k and (k == len(pattern) or ch != pattern[k]):
            k = border[k - 1]
        if k < len(pattern) and ch == pattern[k]:
            k += 1
    return k
