"""The systems under test: each is a row group in the results table.

A System says how to start something that serves the OpenAI API on 127.0.0.1 in front of the fake
upstream, how to tell it is ready, and which headers clients must send it. To add one, write a
function that turns a Setup into argv (writing any config file it needs into setup.workdir) and
add a System to SYSTEMS. Every system process also gets BENCH_UPSTREAM_URL (``http://127.0.0.1:U/v1``)
in its environment, so a config file can point at the fake upstream with ``${BENCH_UPSTREAM_URL}``.

Every system serves the same model names (MODELS): ``bench-model`` for the load, and the
``slow-<MS>x<N>`` models of the streaming checks, which the fake upstream streams slowly.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import peers

BENCH_DIR = Path(__file__).resolve().parent
MODEL = "bench-model"
GAP_DELAY_MS, GAP_CHUNKS = 50, 10  # chunks forwarded as they arrive: 10 chunks 50 ms apart
SOAK_DELAY_MS, SOAK_CHUNKS = 100, 100  # many slow streams: a chunk every 100 ms for 10 s
GAP_MODEL = f"slow-{GAP_DELAY_MS}x{GAP_CHUNKS}"
SOAK_MODEL = f"slow-{SOAK_DELAY_MS}x{SOAK_CHUNKS}"
MODELS = (MODEL, GAP_MODEL, SOAK_MODEL)
# Upstream connections per provider in the generated gateway configs. The gateway's default (256)
# would queue the soak's 1,000 concurrent streams behind 256 upstream connections.
POOL = 1024
# The virtual key of gateway-prod; only its SHA-256 goes into the config.
PROD_KEY = "sk-bench-prod-0123456789abcdef"
PROD_METADATA = '{"tier": "premium"}'


@dataclass(frozen=True)
class Setup:
    """What a system needs to know to start."""

    port: int
    upstream_url: str  # http://127.0.0.1:U/v1
    workdir: Path  # a private temporary directory, also the process's working directory
    gateway_config: Path | None  # --gateway-config, if given


@dataclass(frozen=True)
class System:
    name: str
    description: str
    argv: Callable[[Setup], list[str]] | None  # None: the fake upstream itself, nothing to start
    ready_path: str = "/readyz"
    kind: str = "ours"  # reference (direct, the bare floors), ours (the gateway), peer
    headers: Callable[[Setup], dict[str, str]] = lambda setup: {}  # sent with every request
    expect: dict[str, str] = field(default_factory=dict)  # response headers the check requires
    env: dict[str, str] = field(default_factory=dict)
    # None when it can run here; else why not (a peer that is not installed)
    unavailable: Callable[[], str | None] = lambda: None


# -- Bodhi Gateway ----------------------------------------------------------------------------------

GATEWAY_CONFIG = """\
version: 1
server: {{host: 127.0.0.1, port: {port}}}
providers:
  up: {{type: openai-compatible, base_url: {upstream_url}, max_connections: {pool}}}
routes:
{routes}
observability: {{request_log: false}}
"""

# Production-shaped: a conditional route over a fallback, a virtual key with a rate limit and a
# budget (both far from triggering), every built-in middleware on (key auth, limits and budgets
# with usage accounting, the request log, metrics) and the first-party plugins in their
# pass-through modes. `default:` names another provider, so x-gateway-target shows that the
# condition matched.
PROD_CONFIG = """\
version: 1
server: {{host: 127.0.0.1, port: {port}, state: memory}}
providers:
  primary: {{type: openai-compatible, base_url: {upstream_url}, max_connections: {pool}}}
  secondary: {{type: openai-compatible, base_url: {upstream_url}, max_connections: {pool}}}
  other: {{type: openai-compatible, base_url: {upstream_url}, max_connections: {pool}}}
routes:
{routes}
keys:
  bench:
    key_sha256: {key_sha256}
    routes: ["*"]
    metadata: {{team: bench}}
    limits: {{requests_per_minute: 10000000, tokens_per_minute: 100000000000}}
    budget: {{usd: 1000000000, period: monthly}}
pricing:
  primary/fake-model: {{input: 0.15, output: 0.6}}
  secondary/fake-model: {{input: 0.15, output: 0.6}}
plugins:
  - name: pii-redact
    config: {{mode: log}}
  - name: output-guard
    config: {{deny: ["(?i)bench-deny-rule-that-never-matches"], on_fail: flag}}
observability: {{request_log: true, metrics: true}}
"""

PROD_ROUTE = """\
  {route}:
    conditional:
      rules:
        - when: {{metadata.tier: premium}}
          then:
            fallback:
              targets:
                - target: {{provider: primary, model: {model}}}
                - target: {{provider: secondary, model: {model}}}
      default: {{target: {{provider: other, model: {model}}}}}
"""


def _upstream_model(route: str) -> str:
    """The model a route asks the fake upstream for: slow-* models keep their name (it tells the
    upstream how to stream), the load model becomes fake-model."""
    return route if route.startswith("slow-") else "fake-model"


def gateway_config(setup: Setup) -> str:
    routes = "".join(
        f"  {route}: {{target: {{provider: up, model: {_upstream_model(route)}}}}}\n" for route in MODELS
    )
    return GATEWAY_CONFIG.format(port=setup.port, upstream_url=setup.upstream_url, pool=POOL, routes=routes.rstrip())


def cache_config(setup: Setup) -> str:
    """The plain config with the response cache on for the load model: wrk sends one body over
    and over, so after the first request every answer is a hit (streamed ones replayed). The
    slow-* routes of the streaming checks keep the cache off: they measure pacing."""
    routes = "".join(
        f"  {route}: {{target: {{provider: up, model: {_upstream_model(route)}}}"
        + (", cache: {mode: off}" if route.startswith("slow-") else "") + "}\n"
        for route in MODELS
    )
    return (GATEWAY_CONFIG.format(port=setup.port, upstream_url=setup.upstream_url, pool=POOL,
                                  routes=routes.rstrip())
            + "cache: {mode: simple, ttl: 1h}\n")


def _gateway_cache_argv(setup: Setup) -> list[str]:
    config = setup.workdir / "gateway-cache.yaml"
    config.write_text(cache_config(setup))
    return _serve(config, setup)


def prod_config(setup: Setup) -> str:
    routes = "".join(PROD_ROUTE.format(route=route, model=_upstream_model(route)) for route in MODELS)
    return PROD_CONFIG.format(
        port=setup.port, upstream_url=setup.upstream_url, pool=POOL, routes=routes.rstrip(),
        key_sha256=hashlib.sha256(PROD_KEY.encode()).hexdigest(),
    )


def gateway_executable() -> Path:
    """The `gateway` script beside the running interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "gateway"
    if beside.exists():
        return beside
    found = shutil.which("gateway")
    if found is None:
        raise FileNotFoundError(f"no `gateway` beside {sys.executable} nor on PATH: install the project (pip install -e .)")
    return Path(found)


def _serve(config: Path, setup: Setup, *extra: str) -> list[str]:
    return [
        str(gateway_executable()), "serve", "--config", str(config.resolve()),
        "--host", "127.0.0.1", "--port", str(setup.port), *extra,
    ]


def _gateway_argv(setup: Setup, *extra: str) -> list[str]:
    config = setup.gateway_config
    if config is None:
        config = setup.workdir / "gateway.yaml"
        config.write_text(gateway_config(setup))
    return _serve(config, setup, *extra)


def _write_prod(setup: Setup) -> Path:
    config = setup.workdir / "gateway.yaml"
    config.write_text(prod_config(setup))
    return config


def _gateway_prod_argv(setup: Setup) -> list[str]:
    return _serve(_write_prod(setup), setup)


def _prod_headers(setup: Setup) -> dict[str, str]:
    return {"Authorization": f"Bearer {PROD_KEY}", "x-gateway-metadata": PROD_METADATA}


PROD_EXPECT = {"x-gateway-target": "primary/fake-model"}  # the condition chose the fallback


def _gateway_prod_nolog_argv(setup: Setup) -> list[str]:
    """gateway-prod without the request log: issue 14's production shape (keys, limits, both
    first-party plugins), which predates the request log."""
    config = setup.workdir / "gateway-prod-nolog.yaml"
    text = prod_config(setup)
    assert "request_log: true" in text
    config.write_text(text.replace("request_log: true", "request_log: false"))
    return _serve(config, setup)


# -- the floors -------------------------------------------------------------------------------------


def _bare_aiohttp_argv(setup: Setup) -> list[str]:
    return [sys.executable, str(BENCH_DIR / "bare_proxy.py"), "--port", str(setup.port), "--upstream", setup.upstream_url]


def _bare_starlette_argv(setup: Setup) -> list[str]:
    return [sys.executable, str(BENCH_DIR / "bare_starlette.py"), "--port", str(setup.port), "--upstream", setup.upstream_url]


# -- peers ------------------------------------------------------------------------------------------

LITELLM_CONFIG = """\
model_list:
{models}
general_settings:
  master_key: {key}
litellm_settings:
  drop_params: true
"""
LITELLM_KEY = "sk-bench-litellm-0123456789abcdef0123456789abcdef"


def _litellm_argv(setup: Setup) -> list[str]:
    models = "".join(
        f"  - model_name: {route}\n"
        f"    litellm_params: {{model: openai/{_upstream_model(route)}, api_base: \"{setup.upstream_url}\", api_key: fake}}\n"
        for route in MODELS
    )
    config = setup.workdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(models=models.rstrip(), key=LITELLM_KEY))
    return [
        str(peers.LITELLM_BIN), "--config", str(config), "--host", "127.0.0.1", "--port", str(setup.port),
        "--num_workers", "1",
    ]


def _portkey_argv(setup: Setup) -> list[str]:
    return ["node", "--require", str(BENCH_DIR / "loopback.cjs"), str(peers.PORTKEY_SERVER), f"--port={setup.port}", "--headless"]


def _portkey_headers(setup: Setup) -> dict[str, str]:
    """Portkey routes by headers: the openai provider, at the fake upstream as a custom host."""
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": setup.upstream_url,
        "Authorization": "Bearer fake",
    }


SYSTEMS = {
    system.name: system
    for system in (
        System("direct", "the fake upstream itself, no proxy", None, ready_path="/v1/models", kind="reference"),
        System("bare-aiohttp", "bare aiohttp server + client pass-through", _bare_aiohttp_argv, kind="reference"),
        System(
            "bare-starlette", "bare Starlette + uvicorn/httptools (uvloop) + aiohttp pass-through, the floor for our stack",
            _bare_starlette_argv, kind="reference",
        ),
        System("gateway", "Bodhi Gateway, `gateway serve` on the default engine (uvicorn), a plain route (1 worker)", _gateway_argv),
        System(
            "gateway-prod",
            "Bodhi Gateway, production-shaped config: conditional over fallback, key with limits and budget, "
            "request log, metrics, pii-redact (log), output-guard (flag)",
            _gateway_prod_argv, headers=_prod_headers, expect=PROD_EXPECT,
        ),
        System(
            "gateway-prod-nolog",
            "Bodhi Gateway, gateway-prod without the request log (keys, limits and budget, metrics, "
            "both first-party plugins: the production shape of issue 14)",
            _gateway_prod_nolog_argv, headers=_prod_headers, expect=PROD_EXPECT,
        ),
        System(
            "gateway-cache", "Bodhi Gateway, the plain route with the response cache on: every "
            "measured request is a cache hit (answered without the upstream)", _gateway_cache_argv,
        ),
        System(
            "gateway-2w", "Bodhi Gateway, `gateway serve --workers 2`, the plain route",
            lambda setup: _gateway_argv(setup, "--workers", "2"),
        ),
        System(
            "gateway-hypercorn", "Bodhi Gateway on the hypercorn engine (h11, the default before uvicorn), the plain route",
            lambda setup: _gateway_argv(setup, "--engine", "hypercorn"),
        ),
        System(
            "gateway-granian", "Bodhi Gateway on the opt-in granian engine (Rust, embedded), the plain route",
            lambda setup: _gateway_argv(setup, "--engine", "granian"),
        ),
        System(
            "litellm", "LiteLLM proxy (1 worker, uvicorn)", _litellm_argv, ready_path="/health/liveliness", kind="peer",
            headers=lambda setup: {"Authorization": f"Bearer {LITELLM_KEY}"},
            env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True"},
            unavailable=peers.litellm_missing,
        ),
        System(
            "portkey", "Portkey gateway (Node)", _portkey_argv, ready_path="/", kind="peer",
            headers=_portkey_headers, env={"NODE_ENV": "production"}, unavailable=peers.portkey_missing,
        ),
    )
}
ALIASES = {"bare": "bare-aiohttp"}  # the name the aiohttp floor had before bare-starlette joined it
DEFAULT = [name for name, system in SYSTEMS.items() if system.kind != "peer"]
PEERS = [name for name, system in SYSTEMS.items() if system.kind == "peer"]
