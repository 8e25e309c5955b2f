"""The rules an answer must pass, compiled once from the plugin's config.

``Rules.check(text)`` returns None for a text that passes, or the first rule it breaks, as a
short reason: "deny[0] matched", "max_length 200 exceeded (245 characters)", "json_schema:
'name' is a required property". The order is deny, max_length, json_schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

MAX_REASON = 200  # characters; reasons end up in headers, error messages and logs


class RuleError(ValueError):
    """The config's rules cannot be compiled (a bad regex, a bad JSON Schema, no rule)."""


@dataclass(frozen=True, slots=True)
class Rules:
    deny: tuple[re.Pattern[str], ...]
    max_length: int | None
    schema_validator: Any | None  # a jsonschema validator, or None

    @classmethod
    def from_config(cls, config: dict) -> "Rules":
        deny = []
        for i, pattern in enumerate(config.get("deny") or ()):
            try:
                deny.append(re.compile(pattern))
            except re.error as exc:
                raise RuleError(f"deny[{i}] is not a valid regular expression: {exc}") from None
        validator = None
        if "json_schema" in config:
            schema = config["json_schema"]
            cls_ = validator_for(schema, default=Draft202012Validator)
            try:
                cls_.check_schema(schema)
            except SchemaError as exc:
                where = "".join(f"[{p!r}]" for p in exc.absolute_path) or " (top level)"
                raise RuleError(f"json_schema is not a valid JSON Schema: at {where}: "
                                f"{exc.message}") from None
            validator = cls_(schema)
        rules = cls(tuple(deny), config.get("max_length"), validator)
        if not rules.deny and rules.max_length is None and rules.schema_validator is None:
            raise RuleError("no rule to check: set deny, max_length or json_schema")
        return rules

    # -- checks ----------------------------------------------------------------------------

    def check(self, text: str) -> str | None:
        """All rules, on a whole answer: check_deny, check_length, check_schema in turn (the
        rules a config leaves out cost nothing)."""
        for i, pattern in enumerate(self.deny):
            if pattern.search(text) is not None:
                return f"deny[{i}] matched"
        if self.max_length is not None and len(text) > self.max_length:
            return self.check_length_of(len(text))
        return self.check_schema(text) if self.schema_validator is not None else None

    def check_deny(self, text: str, start: int = 0) -> str | None:
        """Deny patterns; ``start`` lets a stream search only near the new text (look-behind
        still sees what comes before it)."""
        for i, pattern in enumerate(self.deny):
            if pattern.search(text, start) is not None:
                return f"deny[{i}] matched"
        return None

    def check_length(self, text: str) -> str | None:
        return self.check_length_of(len(text))

    def check_length_of(self, length: int) -> str | None:
        if self.max_length is not None and length > self.max_length:
            return f"max_length {self.max_length} exceeded ({length} characters)"
        return None

    def check_schema(self, text: str) -> str | None:
        if self.schema_validator is None:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            return shorten(f"json_schema: the answer is not valid JSON ({exc})")
        errors = sorted(self.schema_validator.iter_errors(value), key=_relevance)
        if not errors:
            return None
        err = errors[0]
        where = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in err.absolute_path)
        return shorten(f"json_schema: {'$' + where + ': ' if where else ''}{err.message}")

    def check_response(self, body: Any) -> str | None:
        """A whole answer (parsed JSON): every choice's text."""
        texts = answer_texts(body)
        if len(texts) == 1:  # most answers: one choice, named in no reason
            return self.check(texts[0][1])
        for index, text in texts:
            reason = self.check(text)
            if reason:
                return f"choices[{index}]: {reason}"
        return None


def _relevance(err) -> tuple:
    # The shallowest error first (the most general problem), then by message.
    return (len(err.absolute_path), err.message)


def answer_texts(body: Any) -> list[tuple[int, str]]:
    """(choice index, text) of each choice of a chat or legacy completion answer. A native
    answer sent back as it came behind a front door is one choice: an Anthropic message (the
    text of its text blocks), an OpenAI response (the output_text of its message items)."""
    if not isinstance(body, dict):
        return []
    if body.get("type") == "message" and isinstance(body.get("content"), list):
        return [(0, _texts(body["content"], "text"))]
    if body.get("object") == "response" and isinstance(body.get("output"), list):
        return [(0, "".join(_texts(item.get("content"), "output_text") for item in body["output"]
                            if isinstance(item, dict) and item.get("type") == "message"))]
    choices = body.get("choices")
    if not isinstance(choices, list):
        return []
    texts = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            if isinstance(content := message.get("content"), str):
                texts.append((choice.get("index", position), content))
        elif isinstance(text := choice.get("text"), str):
            texts.append((choice.get("index", position), text))
    return texts


def _texts(blocks: Any, kind: str) -> str:
    """The text of the ``kind`` blocks of a content list."""
    if not isinstance(blocks, list):
        return ""
    return "".join(b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == kind
                   and isinstance(b.get("text"), str))


def shorten(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 3] + "..."


def header_value(reason: str) -> str:
    """A reason as an HTTP header value: one line, ASCII (other characters escaped)."""
    return shorten(reason).encode("ascii", "backslashreplace").decode("ascii")
