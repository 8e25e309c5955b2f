"""Endpoints in OpenAI's error shape that the server does not serve itself: POST /v1/rerank
(Cohere's request and answer: Cohere, and the servers with a Cohere-shaped /rerank) and
POST /v1/moderations (OpenAI's), routed by their model like any other endpoint. A route whose
targets cannot serve the endpoint answers 400 naming them."""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

import orjson

from ..errors import GatewayError
from ..graph.context import RequestContext
from ..providers.base import NativeBody, UpstreamResponse
from ..errors import openai_error_body
from ..providers.http import error_type
from ..providers.sse import data_event
from .routes import FrontDoorRoute


class OpenAIShapedDoor:
    """Bodies and answers as they are; errors in OpenAI's shape."""

    name = "openai"
    endpoint = "chat"

    def inbound(self, body: dict[str, Any], headers: Mapping[str, str]
                ) -> tuple[dict[str, Any], NativeBody | None]:
        return body, None

    def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        return response.body or b""

    async def stream(self, ctx: RequestContext, response: UpstreamResponse
                     ) -> AsyncIterator[bytes]:
        assert response.stream is not None
        async for chunk in response.stream:
            yield chunk

    def error(self, status: int, message: str, openai: bytes | None = None) -> bytes:
        return openai if openai is not None else openai_error_body(message, error_type(status))

    def stream_error(self, status: int, message: str) -> bytes:
        return data_event(self.error(status, message))


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, code="invalid_value", param=param)


class RerankDoor(OpenAIShapedDoor):
    name = endpoint = "rerank"

    def inbound(self, body: dict[str, Any], headers: Mapping[str, str]
                ) -> tuple[dict[str, Any], NativeBody | None]:
        if not isinstance(body.get("query"), str) or not body["query"].strip():
            raise _invalid("'query' must be a non-empty string", "query")
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents or not all(
                isinstance(d, str) or (isinstance(d, dict) and isinstance(d.get("text"), str))
                for d in documents):
            raise _invalid("'documents' must be a non-empty list of strings (or of "
                           '{"text": ...} objects)', "documents")
        top_n = body.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool)
                                  or top_n < 1):
            raise _invalid("'top_n' must be a positive integer", "top_n")
        if body.get("stream"):
            raise _invalid("rerank cannot be streamed", "stream")
        return body, None

    def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        """With ``return_documents``, each result carries its document (Cohere's v2 API and
        some servers leave it out)."""
        raw = response.body or b""
        if not ctx.body.get("return_documents"):
            return raw
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        documents = ctx.body["documents"]
        results = answer.get("results") if isinstance(answer, dict) else None
        for result in results if isinstance(results, list) else ():
            index = result.get("index") if isinstance(result, dict) else None
            if "document" not in result and isinstance(index, int) \
                    and 0 <= index < len(documents):
                document = documents[index]
                result["document"] = document if isinstance(document, dict) else {"text": document}
        return orjson.dumps(answer)


class ModerationsDoor(OpenAIShapedDoor):
    name = endpoint = "moderations"

    def inbound(self, body: dict[str, Any], headers: Mapping[str, str]
                ) -> tuple[dict[str, Any], NativeBody | None]:
        given = body.get("input")
        if not (isinstance(given, str) and given) and not (isinstance(given, list) and given):
            raise _invalid("'input' must be a string or a non-empty list (of strings, or of "
                           "text and image_url parts)", "input")
        if body.get("stream"):
            raise _invalid("moderations cannot be streamed", "stream")
        return body, None


def routes() -> list[Any]:
    return [FrontDoorRoute("/v1/rerank", RerankDoor()),
            FrontDoorRoute("/v1/moderations", ModerationsDoor())]
