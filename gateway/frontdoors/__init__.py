"""Front doors: APIs in other shapes than OpenAI's chat (Anthropic's Messages, rerank, ...),
each a pure translation module plus a door (hookspecs.FrontDoor) served by the built-in plugin
gateway/builtin/frontdoors.py through the server's dispatcher. docs/frontdoors.md."""
