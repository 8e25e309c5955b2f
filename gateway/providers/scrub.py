"""Upstream error text is scrubbed of credentials before it reaches a client or a log line.

A provider that echoes the request (its headers, a key in the URL) in an error body would
otherwise hand the gateway's key to every client that makes it fail. The compiler builds one
Scrubber per graph from every configured credential value (resolved ``${VAR}`` and vault
secrets included); the target node applies it to every UpstreamError a provider raises, and the
server once more to what it answers and logs. Besides the configured values, anything shaped
like a token (``Bearer …``, ``sk-…``, Google's ``AIza…``) is masked too, and a key a provider
quoted half-masked (``sk-proj-****abcd``: its prefix and last characters are still the key's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import quote

from ..errors import UpstreamError

MASK = "***"
# Shorter values are not searched for: they would match ordinary words of the message.
MIN_SECRET_LENGTH = 6
_TOKEN_SHAPES = re.compile(
    r"(?P<bearer>\b[Bb]earer\s+)[^\s\"'\\,;]+"  # the scheme stays, so the text still reads
    r"|\bsk-[A-Za-z0-9_\-]*\*{3,}[A-Za-z0-9_\-]*"  # one a provider quoted masked: sk-proj-***abcd
    r"|\bsk-[A-Za-z0-9_\-]{8,}"  # OpenAI/Anthropic-style keys
    r"|\bAIza[A-Za-z0-9_\-]{30,}"  # Google API keys (Gemini takes them in the URL: ?key=)
)


@dataclass(frozen=True, slots=True)
class Scrubber:
    secrets: frozenset[str] = frozenset()
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        variants = {v for s in self.secrets for v in (s, quote(s, safe="")) if len(s) >= MIN_SECRET_LENGTH}
        if variants:  # longest first: a secret that contains another is masked whole
            alternatives = "|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True))
            object.__setattr__(self, "_pattern", re.compile(alternatives))

    @classmethod
    def of(cls, values: Iterable[str]) -> "Scrubber":
        return cls(frozenset(v for v in values if isinstance(v, str) and v))

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _TOKEN_SHAPES.sub(_mask_token, text)

    def body(self, raw: bytes) -> bytes:
        text = raw.decode("utf-8", "replace")
        clean = self.text(text)
        return raw if clean == text else clean.encode()

    def error(self, err: UpstreamError) -> UpstreamError:
        """The same error, its message and body scrubbed (in place: it is raised on)."""
        err.message = self.text(err.message)
        err.args = (err.message,)
        if err.body is not None:
            err.body = self.body(err.body)
        return err


def _mask_token(match: re.Match[str]) -> str:
    return (match.group("bearer") or "") + MASK


NO_SECRETS = Scrubber()
