"""The command line's HTTP clients (`gateway files|batches` with a virtual key, the admin
client of `gateway history|diff` with the admin token) never carry their credential to the
place a redirect points to: urllib copies every header to a redirect's new host unless told
otherwise."""

from __future__ import annotations

import pytest
from aiohttp import web

from ..background_app import BackgroundApp
from ..cli_runner import run_cli
from .test_provider_calls import Elsewhere

KEY = "sk-cli-redirect-SECRET-5a6b7c8d"
TOKEN = "admin-cli-redirect-SECRET-9e8f7a6b"


class Redirector(BackgroundApp):
    def __init__(self, target: str, status: int) -> None:
        super().__init__()
        self.target, self.status = target, status
        self.url = f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        async def away(request: web.Request) -> web.Response:
            return web.Response(status=self.status,
                                headers={"Location": self.target + request.path_qs})

        app.router.add_route("*", "/{tail:.*}", away)


@pytest.fixture(params=[301, 302, 307, 308])
def hosts(request):
    with Elsewhere() as elsewhere, \
            Redirector(f"http://127.0.0.1:{elsewhere.port}", request.param) as redirector:
        yield redirector, elsewhere


def _credentials_seen(elsewhere: Elsewhere) -> list[str]:
    return [auth for _, _, auth in elsewhere.seen if auth]


@pytest.mark.parametrize("args", [("files", "list"), ("batches", "status", "batch_1")])
def test_files_cli_never_sends_the_key_where_a_redirect_points(hosts, args):
    redirector, elsewhere = hosts
    result = run_cli(*args, "--url", redirector.url, "--key", KEY)
    assert result.code != 0
    assert _credentials_seen(elsewhere) == [], elsewhere.seen
    assert KEY not in result.text


def test_admin_client_never_sends_the_token_where_a_redirect_points(hosts, tmp_path):
    redirector, elsewhere = hosts
    config = tmp_path / "gateway.yaml"
    config.write_text("version: 1\nproviders:\n  demo: {type: mock}\nroutes:\n"
                      "  chat: {target: {provider: demo, model: m}}\n")
    result = run_cli("history", "--config", config, "--url", redirector.url,
                     "--admin-token", TOKEN)
    assert _credentials_seen(elsewhere) == [], elsewhere.seen
    assert TOKEN not in result.text
