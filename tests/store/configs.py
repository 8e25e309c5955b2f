"""The smallest config the store tests serve: one mock route."""

MOCK = """
version: 1
providers:
  demo: {type: mock}
routes:
  chat: {target: {provider: demo, model: m}}
"""
