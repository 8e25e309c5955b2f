"""The ops plugin under a second name, to test that two authenticators are refused."""

from .ops import (  # noqa: F401
    admin_routes, authenticator, metrics_collector, plugin_config_schema, readiness_check,
    request_finished, response_headers,
)
