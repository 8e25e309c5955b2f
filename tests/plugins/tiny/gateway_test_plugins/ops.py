"""The hooks that reach the server: an authenticator, admin and API routes, a readiness check,
a metrics collector and response headers, each steered by the plugin's config."""

from gateway import hookimpl
from gateway.errors import GatewayError
from gateway.graph.graph import KeySpec
from gateway.hookspecs import Readiness
from prometheus_client.core import GaugeMetricFamily
from starlette.responses import JSONResponse
from starlette.routing import Route


@hookimpl
def plugin_config_schema():
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {"auth": {"type": "boolean"}, "ready": {"type": "boolean"},
                       "anonymous": {"type": "boolean"}, "bodies": {"type": "boolean"},
                       "finish": {"enum": ["keep", "raise"]}, "task": {"type": "boolean"},
                       "allow": {"type": "array", "items": {"type": "string"}}},
    }


class UserHeader:
    """x-test-user names the caller; it may use the routes in `allow`. With `anonymous`, a
    request without the header needs no key."""

    def __init__(self, allow, anonymous: bool = False):
        self.allow = frozenset(allow) if allow is not None else None
        self.anonymous = anonymous

    def identify(self, headers):
        user = headers.get("x-test-user")
        if not user and self.anonymous:
            return None
        if not user:
            raise GatewayError(401, "send x-test-user", type="authentication_error",
                               code="test_no_user")
        return KeySpec(name=user, sha256="", routes=self.allow)

    def required(self):
        return True


class Ready:
    name = "test-ops"

    def __init__(self, ready: bool):
        self.ready = ready

    async def check(self):
        return Readiness(self.ready, {"ready": self.ready},
                         "" if self.ready else "test-ops says not ready")


class Routes:
    def __init__(self, count: int):
        self.count = count

    def collect(self):
        gauge = GaugeMetricFamily("test_ops_routes", "Routes of the running config")
        gauge.add_metric([], self.count)
        yield gauge


class RouteHeader:
    def headers(self, ctx, response):
        return {"x-gateway-test-ops": f"{ctx.route} via {response.target}",
                "x-gateway-route": "forged"}  # the gateway's own header wins


@hookimpl
def response_headers(config, context):
    return RouteHeader()


@hookimpl
def authenticator(config, context):
    if not config.get("auth"):
        return None
    return UserHeader(config.get("allow"), config.get("anonymous", False))


@hookimpl
def admin_routes(config, context):
    async def targets(request):
        return JSONResponse({"plugin": context.name, "targets": {
            route: [t.label for t in reachable] for route, reachable in context.targets.items()}})

    return [Route("/test-ops/targets", targets, methods=["GET"])]


@hookimpl
def api_routes(config, context):
    async def whoami(request):
        key = request.scope["gateway.key"]
        return JSONResponse({"plugin": context.name, "key": key.name if key else None})

    async def page(request):
        return JSONResponse({"page": "open"})

    return [Route("/v1/test-ops/whoami", whoami, methods=["GET"]),
            Route("/test-ops/page", page, methods=["GET"])]


@hookimpl
def readiness_check(config, context):
    return Ready(config.get("ready", True))


@hookimpl
def metrics_collector(config, context):
    return Routes(len(context.routes))


FINISHED: list = []  # the RequestRecords handed to this plugin, for the tests to read


class Keep:
    """Keeps each record (with the bodies when `bodies`); `finish: raise` fails instead."""

    def __init__(self, bodies: bool, fail: bool):
        self.wants_bodies = bodies
        self.fail = fail

    def __call__(self, record):
        if self.fail:
            raise RuntimeError("test-ops cannot finish")
        FINISHED.append(record)


@hookimpl
def request_finished(config, context):
    return Keep(config.get("bodies", False), config.get("finish") == "raise")


TASK_RUNS: list = []  # what the background task saw: (event, detail)


class Chatter:
    """A background task: one chat request to route ``a`` through the dispatcher, then wait
    until stopped."""

    name = "test-ops-chatter"

    async def run(self, dispatch):
        import asyncio
        import json

        from gateway.frontdoors.openai_shaped import OpenAIShapedDoor
        from gateway.frontdoors.routes import internal_request

        body = {"model": "a", "messages": [{"role": "user", "content": "from the background"}]}
        request = internal_request("/v1/chat/completions", json.dumps(body).encode(), None)
        answer = await dispatch(request, OpenAIShapedDoor())
        TASK_RUNS.append(("answered", answer.status_code, json.loads(answer.body)))
        try:
            await asyncio.Event().wait()
        finally:
            TASK_RUNS.append(("stopped", dispatch.graph().version))


@hookimpl
def background_task(config, context):
    if not config.get("task"):
        return None
    return context.state.acquire(("test-ops", "chatter"), Chatter)
