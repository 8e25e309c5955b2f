"""Adapts plugins' request and response middleware into one layer of the pipeline.

A plugin's request middleware runs on the way in (list order), its response middleware on the
way out (reverse order), like the layers of an onion. Whatever a plugin raises, other than
GatewayError and UpstreamError, becomes a 500 naming the plugin, logged with its traceback;
in a stream that has started, the server ends it with an SSE error event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Coroutine, Iterable, Iterator, Sequence

from ..errors import GatewayError, UpstreamError, plugin_error
from ..logs import get_logger
from ..providers.base import UpstreamResponse
from ..types import Handler
from .context import RequestContext

if TYPE_CHECKING:
    from ..hookspecs import AttemptCheck

log = get_logger("gateway.plugins")

RESPONSE_METHODS = ("on_response", "on_chunk", "on_stream_end", "on_error")


def failure(plugin: str, exc: Exception) -> GatewayError:
    log.error("plugin_failed", plugin=plugin, exc_info=exc)
    return plugin_error(plugin, exc)


@dataclass(frozen=True, slots=True)
class NamedCheck:
    """A plugin's attempt check, with the plugin's name for messages."""

    plugin: str
    check: AttemptCheck

    async def reason(self, ctx: RequestContext, response: UpstreamResponse) -> str | None:
        try:
            return await self.check.check(ctx, response)
        except (GatewayError, UpstreamError):
            raise
        except Exception as exc:
            raise failure(self.plugin, exc) from exc


class AttemptChecks:
    """The attempt checks of one graph, shared by its targets. Plugins are set up after the
    routes (so they see them compiled), and the compiler fills this in once, before the graph
    is published; it never changes after."""

    __slots__ = ("checks",)

    def __init__(self, checks: tuple[NamedCheck, ...] = ()):
        self.checks = checks

    def __iter__(self) -> Iterator[NamedCheck]:
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)


def _drop_native(ctx: RequestContext, plugin: str) -> None:
    """A plugin rewrote the request (it assigned ctx.body): the front door's native body still
    holds what the client sent (the very text pii-redact masked, say), so it must not go
    upstream. Every target gets the translation of the rewritten body instead (the door
    keeps ctx.native for itself: it may need it to shape the answer)."""
    ctx.send_native = False
    log.info("native_body_dropped", plugin=plugin, route=ctx.route, request_id=ctx.request_id)


def plugins_may_rewrite_requests(middleware: Iterable[object]) -> bool:
    """Whether a plugin other than the gateway's own has request middleware, which may change
    what goes upstream (pii-redact masks prompts): a side channel that sends the client's body
    somewhere without running them (count_tokens) must not send it then."""
    return any(isinstance(m, PluginLayer) and m.before is not None and not m.builtin
               for m in middleware)


def plugins_see_traffic(middleware: Iterable[object]) -> bool:
    """Whether a plugin other than the gateway's own has middleware on requests or answers
    (pii-redact masking prompts, output-guard checking answers): work handed to a provider
    whole (a provider-native batch) would pass every one of them unseen."""
    return any(isinstance(m, PluginLayer) and not m.builtin
               and (m.before is not None or m.on_response is not None or m.on_chunk is not None)
               for m in middleware)


class PluginLayer:
    def __init__(self, name: str, before: Any | None, after: Any | None,
                 headers: Any | None = None, builtin: bool = False):
        self.name = name
        self.before = before
        self.builtin = builtin  # the gateway's own (auth, limits, cache): never rewrites bodies
        self.headers = getattr(headers, "headers", None)  # hookspecs.ResponseHeaders
        self.on_response = getattr(after, "on_response", None)
        self.on_chunk = getattr(after, "on_chunk", None)
        self.on_stream_end = getattr(after, "on_stream_end", None)
        self.on_error = getattr(after, "on_error", None)

    def __call__(self, ctx: RequestContext, call_next: Handler) -> Coroutine[Any, Any, UpstreamResponse]:
        return run_layers((self,), ctx, call_next)

    async def _error(self, ctx: RequestContext, exc: BaseException) -> None:
        if self.on_error is None:
            return
        try:
            await self.on_error(ctx, exc)
        except Exception as failed:  # never hide the original failure
            log.error("plugin_failed", plugin=self.name, exc_info=failed)

    async def _wrap(self, ctx: RequestContext, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass chunks through the plugin. A stream that does not end normally (an upstream
        failure, a plugin failure, the client leaving) reaches the plugin's on_error."""
        on_chunk, on_end = self.on_chunk, self.on_stream_end
        ended = False
        try:
            async for chunk in stream:
                out = on_chunk(ctx, chunk) if on_chunk is not None else chunk
                if out:
                    yield out
            if on_end is not None:
                tail = on_end(ctx)
                if tail:
                    yield tail
            ended = True
        except (GatewayError, UpstreamError):
            raise
        except Exception as exc:
            raise failure(self.name, exc) from exc
        finally:
            if not ended and self.on_error is not None:
                await self._error(ctx, GeneratorExit("the stream did not end normally"))


class PluginLayers:
    """Consecutive PluginLayers as one stage of the pipeline (``run_layers``)."""

    __slots__ = ("layers", "name")

    def __init__(self, layers: Sequence[PluginLayer]):
        self.layers = tuple(layers)
        self.name = "+".join(layer.name for layer in self.layers)

    def __call__(self, ctx: RequestContext, call_next: Handler) -> Coroutine[Any, Any, UpstreamResponse]:
        return run_layers(self.layers, ctx, call_next)


async def run_layers(layers: tuple[PluginLayer, ...], ctx: RequestContext,
                     call_next: Handler) -> UpstreamResponse:
    """Layers of an onion, run flat: request hooks in list order, ``call_next``, then the
    answer sides in reverse order. Nested, each layer was one more coroutine frame that every
    resume of the upstream call went through; here there is one. The onion's semantics hold:
    a layer that answers by itself skips the layers after it and ``call_next`` but still runs
    its own answer side; a failure (a cancellation too: a reservation must be released)
    reaches the ``on_error`` of every layer it happened inside, innermost first, never the
    failing layer's own."""
    inside = 0  # what runs now runs inside layers[:inside] (within their call_next)
    try:
        response = None
        for layer in layers:
            if layer.before is not None:
                body = ctx.body
                try:
                    response = await layer.before.on_request(ctx)
                except (GatewayError, UpstreamError):
                    raise
                except Exception as exc:
                    raise failure(layer.name, exc) from exc
                if ctx.native is not None and ctx.send_native and ctx.body is not body:
                    _drop_native(ctx, layer.name)
                if response is not None:
                    break  # its own answer: the answer side starts at this layer
            inside += 1
        else:
            response = await call_next(ctx)
            inside -= 1
        while inside >= 0:
            layer = layers[inside]
            if response.stream is not None:
                if layer.on_chunk is not None or layer.on_stream_end is not None:
                    response.stream = layer._wrap(ctx, response.stream)
            elif layer.on_response is not None:
                try:
                    response = await layer.on_response(ctx, response)
                except (GatewayError, UpstreamError):
                    raise
                except Exception as exc:
                    raise failure(layer.name, exc) from exc
            if layer.headers is not None:
                try:
                    extra = layer.headers(ctx, response)
                except (GatewayError, UpstreamError):
                    raise
                except Exception as exc:
                    raise failure(layer.name, exc) from exc
                if extra:
                    response.headers.update(extra)
            inside -= 1
        return response
    except BaseException as exc:
        error = await _unwind(ctx, layers[:max(inside, 0)], exc)
        if error is exc:
            raise
        raise error


async def _unwind(ctx: RequestContext, entered: Sequence[PluginLayer],
                  exc: BaseException) -> BaseException:
    """The on_error of each layer a failure happened inside, innermost first; returns what
    the onion would have raised: ``exc``, unless an on_error was itself interrupted (a
    cancellation), which the layers further out then see instead."""
    error = exc
    for layer in reversed(entered):
        if layer.on_error is not None:
            try:
                await layer._error(ctx, error)
            except BaseException as newer:
                error = newer
    return error
