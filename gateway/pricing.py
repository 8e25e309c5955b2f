"""Token prices (USD per 1M tokens) and the cost of an answer.

The shipped table (gateway/pricing.yaml) is keyed by provider type; `pricing:` in gateway.yaml
overrides and extends it, keyed "provider/model" by the provider's name or its type. Everything
is looked up once per target at compile time, never per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Mapping

from ruamel.yaml import YAML

# Provider Batch APIs (OpenAI's Batch API, Anthropic's Message Batches) bill a batch's requests
# at half the live price: the usage of a provider-native batch is costed at this share of the
# target's price (docs/files.md#usage-limits-and-budgets).
BATCH_PRICE = 0.5
FREE_TYPES = frozenset({"mock", "ollama", "vllm", "llamacpp", "lmstudio"})
ALIASES = {"azure-openai": "openai"}


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None

    def cost(self, usage: Mapping[str, Any]) -> float:
        """USD for an OpenAI-shaped usage object."""
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if type(prompt) is int and type(completion) is int and prompt >= 0:
            details = usage.get("prompt_tokens_details")
            if details is None or (type(details) is dict and not details.get("cached_tokens")):
                # Most answers, per request: two counts and nothing cached. The same float as
                # below (nothing cached adds an exact 0.0), without the general checks.
                return self.cost_of(prompt, completion)
        # _int written out for the two counts every answer has
        prompt = int(prompt) if isinstance(prompt, (int, float)) and not isinstance(prompt, bool) else 0
        completion = usage.get("completion_tokens")
        completion = (int(completion) if isinstance(completion, (int, float))
                      and not isinstance(completion, bool) else 0)
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        cached = min(cached, prompt)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((prompt - cached) * self.input + cached * cached_rate
                + completion * self.output) / 1_000_000

    def cost_of(self, prompt: int, completion: int) -> float:
        """``cost({"prompt_tokens": prompt, "completion_tokens": completion})``, the same float
        (no cached tokens), without building the usage object (limits' estimate per request)."""
        return (prompt * self.input + completion * self.output) / 1_000_000


FREE = Price(0.0, 0.0, 0.0)


@cache
def shipped() -> dict[str, dict[str, Price]]:
    text = resources.files("gateway").joinpath("pricing.yaml").read_text("utf-8")
    data = YAML(typ="safe", pure=True).load(text)
    return {ptype: {model: _price(v) for model, v in models.items()}
            for ptype, models in data.items()}


def _price(spec: Mapping[str, Any]) -> Price:
    return Price(float(spec["input"]), float(spec["output"]),
                 None if spec.get("cached_input") is None else float(spec["cached_input"]))


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


class PriceTable:
    def __init__(self, overrides: Mapping[str, Mapping[str, Any]] | None = None):
        self.overrides = {k: _price(v) for k, v in (overrides or {}).items()}

    def lookup(self, provider: str, provider_type: str, model: str) -> Price | None:
        """The price of a target, or None when nobody knows it (its cost counts as 0)."""
        for key in (f"{provider}/{model}", f"{provider_type}/{model}"):
            if key in self.overrides:
                return self.overrides[key]
        if provider_type in FREE_TYPES:
            return FREE
        table = shipped().get(ALIASES.get(provider_type, provider_type), {})
        if model in table:
            return table[model]
        # Dated or suffixed names: the longest known name the model starts with.
        prefixes = [m for m in table if model.startswith(m)]
        return table[max(prefixes, key=len)] if prefixes else None
