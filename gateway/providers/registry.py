"""Provider type name -> adapter class."""

from __future__ import annotations

from .anthropic import AnthropicProvider
from .azure import AzureOpenAIProvider
from .base import Provider
from .bedrock import BedrockProvider
from .cohere import CohereProvider
from .gemini import GeminiProvider
from .mock import MockProvider
from .openai import PRESETS, OpenAIProvider


def provider_types() -> dict[str, type[Provider]]:
    types: dict[str, type[Provider]] = {name: OpenAIProvider for name in PRESETS}
    types["mock"] = MockProvider
    types["anthropic"] = AnthropicProvider
    types["azure-openai"] = AzureOpenAIProvider
    types["gemini"] = GeminiProvider
    types["cohere"] = CohereProvider
    types["bedrock"] = BedrockProvider
    return types
