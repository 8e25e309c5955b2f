"""The built-in provider types: type name -> adapter class. The built-in plugin
gateway/builtin/providers.py registers them through ``register_providers``, like a
third-party plugin's, so the compiler asks only the plugin manager."""

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
