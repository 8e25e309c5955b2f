"""GET /v1/models/{model} through the official openai client (`client.models.retrieve`), in
process: a route the caller's key may use, else 404 model_not_found in OpenAI's shape."""

from __future__ import annotations

import openai
import pytest

from .inprocess import app_client

PASSWORD_SHA256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
OPEN_CONFIG = """
version: 1
providers:
  demo: {type: mock}
routes:
  smart: {target: {provider: demo, model: m}}
  openai/gpt-4o: {target: {provider: demo, model: gpt}}
"""
KEYED_CONFIG = OPEN_CONFIG + f"""
keys:
  research:
    key_sha256: {PASSWORD_SHA256}
    routes: [smart]
"""


def openai_client(http, api_key: str = "password") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://127.0.0.1/v1", api_key=api_key, http_client=http,
                              max_retries=0)


async def test_retrieve_a_route(tmp_path):
    """models.retrieve returns the route as an OpenAI model object, slashes in names included."""
    async with app_client(OPEN_CONFIG, tmp_path) as http:
        client = openai_client(http)
        model = await client.models.retrieve("smart")
        slashed = await client.models.retrieve("openai/gpt-4o")
        listed = [m.id for m in (await client.models.list()).data]
    assert (model.id, model.object, model.owned_by) == ("smart", "model", "gateway")
    assert isinstance(model.created, int) and model.created > 0
    assert slashed.id == "openai/gpt-4o"
    assert sorted(listed) == ["openai/gpt-4o", "smart"]


async def test_retrieve_an_unknown_route_is_404_model_not_found(tmp_path):
    """An unknown name is 404 in OpenAI's error shape, with a suggestion."""
    async with app_client(OPEN_CONFIG, tmp_path) as http:
        with pytest.raises(openai.NotFoundError) as info:
            await openai_client(http).models.retrieve("smrt")
    error = info.value.body
    assert info.value.status_code == 404
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert "did you mean 'smart'?" in error["message"]


async def test_retrieve_follows_the_keys_routes(tmp_path):
    """Same key rules as the list: a route the key may not use is 404 (and never suggested),
    no key is 401."""
    async with app_client(KEYED_CONFIG, tmp_path) as http:
        client = openai_client(http)
        assert (await client.models.retrieve("smart")).id == "smart"
        assert [m.id for m in (await client.models.list()).data] == ["smart"]
        with pytest.raises(openai.NotFoundError) as hidden:
            await client.models.retrieve("openai/gpt-4o")
        with pytest.raises(openai.NotFoundError) as near:
            await client.models.retrieve("openai/gpt-4")
        with pytest.raises(openai.AuthenticationError) as anonymous:
            await openai_client(http, api_key="wrong").models.retrieve("smart")
    assert hidden.value.body["code"] == "model_not_found"
    assert "gpt-4o" not in near.value.body["message"]  # no hint at a route the key cannot use
    assert anonymous.value.body["code"] == "invalid_api_key"
