"""Bodhi Gateway: an LLM API gateway driven by one declarative gateway.yaml."""

import pluggy

__version__ = "0.1.0"

# Plugins mark their hook implementations with this: `from gateway import hookimpl`.
hookimpl = pluggy.HookimplMarker("gateway")
