"""Placeholders for one request, and the prompt texts of each endpoint.

A ``Vault`` belongs to one request: it hands out placeholders such as ``[EMAIL_1]`` (the same
value always gets the same placeholder), remembers the originals and puts them back. Its repr
shows only how many values it holds, so it is safe to keep in the request's PiiState.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Collection, Iterable

from .detect import KINDS, find

LABELS = {"email": "EMAIL", "phone": "PHONE", "card": "CARD", "iban": "IBAN", "ip": "IP"}
PLACEHOLDER = re.compile(r"\[(EMAIL|PHONE|CARD|IBAN|IP)_([1-9][0-9]{0,5})\]")
# The longest placeholder text: "[EMAIL_999999]".
MAX_PLACEHOLDER = 1 + max(map(len, LABELS.values())) + 1 + 6 + 1


class Vault:
    __slots__ = ("kinds", "counts", "_by_key", "_originals", "_next", "_taken")

    def __init__(self, kinds: Collection[str], texts: Iterable[str] = ()):
        self.kinds = kinds
        self.counts: Counter[str] = Counter()  # findings per kind (occurrences)
        self._by_key: dict[tuple[str, str], str] = {}  # (kind, normalised value) -> placeholder
        self._originals: dict[str, str] = {}  # placeholder -> the value as first written
        self._next: Counter[str] = Counter()
        # Placeholders the client wrote itself are never handed out, so that restoring
        # cannot turn the client's own "[EMAIL_1]" into somebody's address.
        self._taken = {m.group() for t in texts for m in PLACEHOLDER.finditer(t)}

    def __repr__(self) -> str:
        return f"<pii-redact vault: {len(self._originals)} values>"

    def __len__(self) -> int:
        return len(self._originals)

    def mask(self, text: str) -> str:
        findings = find(text, self.kinds)
        if not findings:
            return text
        out, at = [], 0
        for f in findings:
            self.counts[f.kind] += 1
            out.append(text[at:f.start])
            out.append(self._placeholder(f.kind, f.key, f.value))
            at = f.end
        out.append(text[at:])
        return "".join(out)

    def _placeholder(self, kind: str, key: str, value: str) -> str:
        placeholder = self._by_key.get((kind, key))
        if placeholder is None:
            while True:
                self._next[kind] += 1
                placeholder = f"[{LABELS[kind]}_{self._next[kind]}]"
                if placeholder not in self._taken:
                    break
            self._by_key[(kind, key)] = placeholder
            self._originals[placeholder] = value
        return placeholder

    def restore(self, text: str) -> str:
        """Put the originals back for every placeholder this vault handed out."""
        if "[" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self._originals.get(m.group(), m.group()), text)

    def restore_prefix(self, text: str) -> tuple[str, str]:
        """Restore ``text`` as far as it is safe in a stream: returns (text to send now, tail to
        hold back), where the tail is a trailing piece that may still become a placeholder once
        the next piece arrives ("... [EMA")."""
        at = text.rfind("[")
        if at == -1 or len(text) - at > MAX_PLACEHOLDER or not could_continue(text[at:]):
            return self.restore(text), ""
        return self.restore(text[:at]), text[at:]


def could_continue(piece: str) -> bool:
    """Whether ``piece`` (starting with "[") is the beginning of a placeholder, not a whole one."""
    body = piece[1:]
    for label in LABELS.values():
        if label.startswith(body):
            return True
        if body.startswith(label + "_"):
            number = body[len(label) + 1:]
            return (number == "" or (number.isdigit() and number[0] != "0")) and len(number) <= 6
    return False


# -- prompt texts per endpoint ---------------------------------------------------------------

def map_prompts(endpoint: str, body: dict, fn: Callable[[str], str]) -> dict:
    """A copy of ``body`` with ``fn`` applied to every prompt text: chat message contents
    (strings, and the ``text`` of content parts), the legacy ``prompt``, embeddings ``input``.
    Containers are copied only where something changed; the client's body is never mutated."""
    if endpoint == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            new = [_map_message(m, fn) for m in messages]
            if any(a is not b for a, b in zip(new, messages)):
                return {**body, "messages": new}
    elif endpoint in ("completions", "embeddings"):
        field = "prompt" if endpoint == "completions" else "input"
        value = body.get(field)
        new_value = _map_strings(value, fn)
        if new_value is not value:
            return {**body, field: new_value}
    return body


def _map_message(message, fn):
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    if isinstance(content, str):
        new = fn(content)
        return message if new == content else {**message, "content": new}
    if isinstance(content, list):
        parts = [_map_part(p, fn) for p in content]
        if any(a is not b for a, b in zip(parts, content)):
            return {**message, "content": parts}
    return message


def _map_part(part, fn):
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        new = fn(part["text"])
        return part if new == part["text"] else {**part, "text": new}
    return part


def _map_strings(value, fn):
    """A string, or a list of strings (token arrays are left alone)."""
    if isinstance(value, str):
        new = fn(value)
        return value if new == value else new
    if isinstance(value, list):
        items = [_map_strings(v, fn) if isinstance(v, str) else v for v in value]
        if any(a is not b for a, b in zip(items, value)):
            return items
    return value


def prompt_texts(endpoint: str, body: dict) -> list[str]:
    """The texts map_prompts() would pass to its function, in the same order (read on every
    request: written out rather than through map_prompts)."""
    texts: list[str] = []
    if endpoint == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if not isinstance(message, dict):
                    continue
                content = message.get("content")
                if isinstance(content, str):
                    texts.append(content)
                elif isinstance(content, list):
                    texts.extend(part["text"] for part in content
                                 if isinstance(part, dict) and part.get("type") == "text"
                                 and isinstance(part.get("text"), str))
    elif endpoint in ("completions", "embeddings"):
        value = body.get("prompt" if endpoint == "completions" else "input")
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts.extend(v for v in value if isinstance(v, str))
    return texts


def _collected(endpoint: str, body: dict) -> list[str]:
    """What map_prompts() passes to its function (tests check prompt_texts against it)."""
    texts: list[str] = []

    def collect(text: str) -> str:
        texts.append(text)
        return text

    map_prompts(endpoint, body, collect)
    return texts


def count(texts: Iterable[str], kinds: Collection[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(f.kind for f in find(text, kinds))
    return counts


def ordered(counts: Counter[str]) -> dict[str, int]:
    """Counts in the canonical kind order, without zeros."""
    return {k: counts[k] for k in KINDS if counts.get(k)}
