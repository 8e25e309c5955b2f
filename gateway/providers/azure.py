"""Azure OpenAI: OpenAI's wire format at deployment URLs.

    POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}

``base_url`` is the resource endpoint (https://RESOURCE.openai.azure.com); the deployment is
the provider's ``deployment`` option, else the target's model. Auth is ``api_key`` (sent as the
``api-key`` header) or ``azure_ad_token``, a Microsoft Entra ID access token sent as
``Authorization: Bearer`` (it wins when both are set). Bodies and streams pass through
untouched, as for OpenAI; Azure's content-filter and context-length errors carry OpenAI's codes.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

from .base import (
    ENDPOINT_PATHS, ClientPool, Provider, ProviderSpec, UpstreamRequest, UpstreamResponse,
)
from .openai import pass_through, refuse_account_objects


class AzureOpenAIProvider(Provider):
    capabilities = frozenset({"chat", "completions", "stream", "tools", "vision", "json",
                              "reasoning", "embeddings"})
    hosted = True

    @classmethod
    def validate_options(cls, type_name: str, options: Mapping[str, Any]) -> list[str]:
        if not str(options.get("api_version") or "").strip():
            return ["azure-openai needs api_version, the api-version query parameter "
                    "(for example 2024-10-21)"]
        return []

    def __init__(self, spec: ProviderSpec, clients: ClientPool) -> None:
        super().__init__(spec, clients)
        base = spec.base_url.rstrip("/")
        if base.endswith("/openai"):
            base = base[: -len("/openai")]
        self._prefix = base + "/openai/deployments/"
        version = str(spec.options.get("api_version") or "")
        self._query = "?api-version=" + quote(version, safe="")
        self._deployment = spec.options.get("deployment")
        headers = {"Content-Type": "application/json", **spec.headers}
        token = spec.options.get("azure_ad_token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif spec.api_key:
            headers["api-key"] = spec.api_key
        self._headers = headers
        self._key = self.pool_key()
        self.account_objects = spec.options.get("account_objects") is True

    def url(self, endpoint: str, model: str) -> str:
        deployment = quote(str(self._deployment or model), safe="")
        return self._prefix + deployment + ENDPOINT_PATHS[endpoint] + self._query

    def health_url(self) -> str:
        """GET /openai/models?api-version=…: answers for valid credentials, costs nothing."""
        return self._prefix.removesuffix("deployments/") + "models" + self._query

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if not self.account_objects:  # as for OpenAI: file ids and vector stores of the account
            refuse_account_objects(request.body, self.name)
        url = self.url(request.endpoint, str(request.body.get("model") or ""))
        return await pass_through(self.clients.session(self._key), url, self._headers, request,
                                  streamed=request.stream)
