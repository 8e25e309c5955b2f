"""The shape every provider adapter speaks, and the pooled HTTP clients they share.

An adapter receives an OpenAI-shaped request body for one endpoint and returns an
OpenAI-shaped answer (a whole body, or an async iterator of SSE bytes), or raises UpstreamError.
Adapters are built by the compiler from frozen config; the HTTP sessions they use are
per-process resources that outlive any one config (see ClientPool).
"""

from __future__ import annotations

import asyncio
import io
import socket
from urllib.parse import urlsplit
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, BinaryIO, Callable, Mapping

import aiohttp
import orjson

from ..units import duration_text
from .redirects import redirect_message

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


# What providers share an aiohttp session by: (provider name, base_url, max_connections).
PoolKey = tuple[str, str, int]

# Endpoint name -> path below an OpenAI-style base_url.
ENDPOINT_PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "images": "/images/generations",
    "speech": "/audio/speech",
    "transcriptions": "/audio/transcriptions",
    "moderations": "/moderations",
    "rerank": "/rerank",  # Cohere-shaped, as vLLM, llama.cpp and Together serve it
}
# The capability a provider must declare to serve an endpoint.
ENDPOINT_CAPABILITY = {
    "chat": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
    "images": "images",
    "speech": "audio",
    "transcriptions": "audio",
    "moderations": "moderations",
    "rerank": "rerank",
}


@dataclass(frozen=True, slots=True)
class Upload:
    """A file of a multipart request (audio to transcribe), spooled by the server."""

    field: str
    filename: str
    content_type: str
    file: BinaryIO  # seekable

    def rewind(self) -> _KeepOpen:
        """The file from its start, behind a wrapper the HTTP client may close without closing
        the spooled file itself (a retry or a fallback sends it again)."""
        self.file.seek(0)
        return _KeepOpen(self.file)


class _KeepOpen(io.RawIOBase):
    def __init__(self, file: BinaryIO):
        super().__init__()
        self._file = file

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._file.read(len(view))
        view[: len(data)] = data
        return len(data)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``total`` bounds one attempt; for streams it bounds the wait for the first byte,
    and ``idle`` bounds each gap between chunks after that."""

    connect: float
    first_byte: float
    idle: float
    total: float

    def clipped(self, remaining: float) -> "Timeouts":
        """The same timeouts, none longer than what is left of the request's deadline."""
        if remaining >= self.total:
            return self
        return Timeouts(
            min(self.connect, remaining),
            min(self.first_byte, remaining),
            self.idle,
            remaining,
        )


@dataclass(frozen=True, slots=True)
class NativeBody:
    """The client's own request, as a front door received it in a provider's wire format
    (``api``: "anthropic.messages"). A provider that speaks that API sends it instead of
    translating ``UpstreamRequest.body`` (the same request in OpenAI's shape), and answers in
    that API too (``UpstreamResponse.api``): nothing is lost on the way."""

    api: str
    body: dict[str, Any]
    # Headers of that API the client sent and the provider forwards (anthropic-beta);
    # never credentials.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UpstreamRequest:
    endpoint: str
    body: dict[str, Any]  # JSON body, or the form fields of a multipart request
    stream: bool
    timeouts: Timeouts
    files: tuple[Upload, ...] = ()
    native: NativeBody | None = None  # model and override_params applied, like ``body``


_UNPARSED: Any = object()  # UpstreamResponse._json before the body was parsed


class UpstreamResponse:
    """A successful upstream answer. Exactly one of ``body`` and ``stream`` is set.

    A whole body is parsed once, by whoever asks first (rate limits and budgets, the response
    cache, a canary's counts, plugins such as output-guard and pii-redact): ``json()`` and
    ``usage`` share that one value, and assigning ``body`` drops it. The value is shared, so
    read it; to change the answer, change the value and hand it back with ``set_json`` (or
    assign new bytes to ``body``), never leave it changed under the old body.
    """

    __slots__ = ("status", "stream", "media_type", "headers", "target", "api", "_body", "_json")

    def __init__(self, status: int, body: bytes | None = None,
                 stream: AsyncIterator[bytes] | None = None,
                 media_type: str = "application/json", headers: dict[str, str] | None = None,
                 target: str = "", api: str = "openai"):
        self.status = status
        self._body = body
        self._json: Any = _UNPARSED
        self.stream = stream
        self.media_type = media_type
        self.headers: dict[str, str] = {} if headers is None else headers
        self.target = target
        self.api = api  # the wire format of the answer: a NativeBody's api when sent natively

    @property
    def body(self) -> bytes | None:
        return self._body

    @body.setter
    def body(self, value: bytes | None) -> None:
        self._body = value
        self._json = _UNPARSED

    def json(self) -> Any:
        """The body's JSON value, parsed on the first call and kept; None when there is no
        whole body or it is not JSON."""
        value = self._json
        if value is _UNPARSED:
            value = None
            if self._body is not None:
                try:
                    value = orjson.loads(self._body)
                except orjson.JSONDecodeError:
                    value = None
            self._json = value
        return value

    @property
    def usage(self) -> dict[str, Any] | None:
        """The answer's ``usage`` object as the provider reported it, or None."""
        data = self.json()
        usage = data.get("usage") if isinstance(data, dict) else None
        return usage if isinstance(usage, dict) else None

    def set_json(self, value: Any) -> None:
        """Make ``value`` the answer: the body becomes its JSON, and ``json()`` returns it
        without parsing again."""
        self._body = orjson.dumps(value)
        self._json = value

    def __repr__(self) -> str:
        kind = "stream" if self.stream is not None else f"body={len(self._body or b'')} bytes"
        return (f"UpstreamResponse(status={self.status}, {kind}, media_type={self.media_type!r}, "
                f"target={self.target!r})")


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider's resolved config. ``options`` holds type-specific settings."""

    name: str
    type: str
    base_url: str
    api_key: str | None
    headers: Mapping[str, str]
    max_connections: int
    options: Mapping[str, Any]


class Provider(ABC):
    """One named upstream connection. Immutable after construction."""

    capabilities: frozenset[str] = frozenset({"chat", "completions", "embeddings", "stream"})

    # Most adapters serve one type: they set these two; adapters of several types (the OpenAI
    # presets) override the classmethods below instead.
    base_url: str | None = None  # used when the config gives none; None makes base_url required
    hosted: bool = False  # refuses requests without a key (a warning when the config has none)
    prefill: bool = False  # continues a final assistant message (accepts_prefill)

    @classmethod
    def default_base_url(cls, type_name: str) -> str | None:
        """The endpoint used when the config gives no base_url; None makes base_url required."""
        return cls.base_url

    @classmethod
    def capabilities_of(cls, type_name: str) -> frozenset[str]:
        """What a provider of this type serves (``capabilities``, unless types differ)."""
        return frozenset(cls.capabilities)

    @classmethod
    def needs_key(cls, type_name: str) -> bool:
        """True for hosted APIs that refuse requests without a key (a warning when absent)."""
        return cls.hosted

    @classmethod
    def accepts_prefill(cls, type_name: str) -> bool:
        """Whether the provider continues a final assistant message (a prefill) rather than
        answering after it: how stream_recovery asks it to continue a broken answer."""
        return cls.prefill

    @classmethod
    def validate_options(cls, type_name: str, options: Mapping[str, Any]) -> list[str]:
        """Problems with the type-specific settings (``ProviderSpec.options``), one message
        each; the compiler reports them at the provider and refuses the config."""
        return []

    def __init__(self, spec: ProviderSpec, clients: "ClientPool"):
        self.spec = spec
        self.name = spec.name
        self.clients = clients

    @abstractmethod
    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Call the upstream; raise UpstreamError on any failure.

        ``request.body`` may share nested values with the client's body (a later fallback
        target starts from it): build new objects, never mutate it in place.
        """

    def health_url(self) -> str:
        """What an active health check asks: OpenAI's `GET {base_url}/models` by default;
        adapters whose API lists models elsewhere override this."""
        return self.spec.base_url.rstrip("/") + "/models"

    async def check_health(self, timeout: float) -> str | None:
        """One active health check: None when healthy, else what went wrong."""
        session = self.clients.session(self.pool_key())
        headers = {k: v for k, v in getattr(self, "_headers", {}).items() if k != "Content-Type"}
        url = self.health_url()
        try:
            async with session.get(url, headers=headers, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status < 300:
                    return None
                if resp.status < 400:  # never followed: the key would go to the other host
                    return redirect_message(resp.status, resp.headers.get("Location", ""), url)
                base = self.spec.base_url.rstrip("/")
                path = url[len(base):] if url.startswith(base) else urlsplit(url).path
                return f"GET {path.split('?')[0]} answered {resp.status}"
        except asyncio.TimeoutError:
            return f"no answer within {duration_text(timeout)}"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"

    def passthrough_headers(self) -> dict[str, str] | None:
        """The headers that carry this provider's credentials (and its fixed headers, such
        as anthropic-version) on a call to one of its own endpoints through
        /v1/passthrough; None when its requests cannot be passed through (signed per call)."""
        headers: Mapping[str, str] = getattr(self, "_headers", self.spec.headers)
        return {k: v for k, v in headers.items() if k.lower() != "content-type"}

    def pool_key(self) -> PoolKey:
        """Providers with the same key share one aiohttp session across reloads."""
        return (self.spec.name, self.spec.base_url, self.spec.max_connections)


class ClientPool:
    """One aiohttp ClientSession per provider, kept across config reloads, closed on shutdown.

    Sessions are created lazily on the event loop (compilation runs in a worker thread).
    """

    def __init__(self) -> None:
        self._sessions: dict[PoolKey, aiohttp.ClientSession] = {}

    def session(self, key: PoolKey) -> aiohttp.ClientSession:
        session = self._sessions.get(key)
        if session is None or session.closed:
            session = self._sessions[key] = self._new_session(limit=key[-1])
        return session

    @staticmethod
    def _new_session(limit: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=limit,
            limit_per_host=limit,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            family=socket.AF_UNSPEC,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def prune(self, live_keys: Callable[[], set[PoolKey]], grace: float = 30.0) -> None:
        """Close sessions no provider uses any more, after in-flight requests had time to end.

        ``live_keys`` is asked again after the grace period: a reload in between may have
        brought a provider back.
        """
        if all(k in live_keys() for k in self._sessions):
            return
        await asyncio.sleep(grace)
        live = live_keys()
        for key in [k for k in self._sessions if k not in live]:
            await self._sessions.pop(key).close()

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
