"""The HTTP layer: Starlette app, OpenAI-compatible endpoints, admin API, reload, serving."""
