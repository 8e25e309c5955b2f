"""The built-in features, as plugins: registered through the same hooks as third-party ones
(gateway/hookspecs.py; DEFAULT_PLUGINS in gateway/pluginmanager.py), so the server knows none
of them by name. ``auth``: virtual keys and /admin/keys; ``limits``: rate limits, budgets,
usage accounting and /admin/usage; ``providers``: the built-in provider types; ``cache``: the
response cache."""
