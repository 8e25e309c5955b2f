"""Bodhi Gateway: an LLM API gateway driven by one declarative gateway.yaml."""

__version__ = "0.1.0"
