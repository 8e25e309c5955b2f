"""The same stamp plugin under a second name, to test the order of two plugins."""

from .stamp import plugin_config_schema, request_middleware, response_middleware  # noqa: F401
