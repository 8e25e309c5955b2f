"""A fake Amazon Bedrock Runtime (Converse, ConverseStream) on a loopback port.

Every request must carry a valid AWS SigV4 Authorization header for the fake's credentials,
region and service ``bedrock`` (checked from the raw request line, the headers and body as
received), and a Converse body the real API would accept: known fields only, a conversation
that starts with the user and alternates, no blank text, well-formed image/toolUse/toolResult
blocks, every toolUse answered by a toolResult in the next message, toolConfig present when
tool blocks are used. Answers are Converse JSON, and for ConverseStream
``application/vnd.amazon.eventstream`` binary frames (messageStart, contentBlockStart/Delta/
Stop, messageStop, metadata), with exception frames on request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import re

from aiohttp import web

from gateway.providers import sigv4

from .eventstream_encode import encode
from .fake_server import FakeServer, Script, answer, arguments_for, words
from .sigv4_verify import parse_authorization, verify

TOP = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
       "additionalModelRequestFields", "additionalModelResponseFieldPaths", "promptVariables",
       "requestMetadata", "performanceConfig"}
BLOCKS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
          "cachePoint", "reasoningContent"}
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
EXCEPTIONS = {
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an error processing your request."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    400: ("ValidationException", "The provided request is not valid"),
}


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, kind: str = "ValidationException"):
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


class FakeBedrock(FakeServer):
    provider = "bedrock"

    def __init__(self, access_key: str = "AKIDFAKEBEDROCK", secret_key: str = "fake/secret+key",
                 session_token: str | None = None, region: str = "us-west-2",
                 max_input_chars: int = 20000):
        super().__init__()
        self.creds = sigv4.Credentials(access_key, secret_key, session_token)
        self.region = region
        self.max_input_chars = max_input_chars

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model/{model}/converse", self._converse)
        app.router.add_post("/model/{model}/converse-stream", self._converse)

    def _error(self, status: int, kind: str, message: str, headers: dict | None = None,
               scripted: bool = False) -> web.Response:
        return self.reject(status, {"message": message},
                           {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                            **(headers or {})}, scripted)

    def _check_signature(self, request: web.Request, raw: bytes) -> Invalid | None:
        headers = dict(request.headers)
        auth = parse_authorization(headers.get("Authorization", ""))
        if auth is None:
            return Invalid("Missing Authentication Token", 403, "MissingAuthenticationTokenException")
        if auth.region != self.region:
            return Invalid("Credential should be scoped to a valid region. ", 403, "InvalidSignatureException")
        if auth.service != "bedrock":
            return Invalid("Credential should be scoped to correct service: 'bedrock'. ", 403,
                           "InvalidSignatureException")
        when = dt.datetime.strptime(headers.get("X-Amz-Date", "19700101T000000Z"),
                                    "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        if abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) > 300:
            return Invalid("Signature expired", 403, "InvalidSignatureException")
        if self.creds.session_token and headers.get("X-Amz-Security-Token") != self.creds.session_token:
            return Invalid("The security token included in the request is invalid.", 403,
                           "UnrecognizedClientException")
        if self.creds.session_token and "x-amz-security-token" not in auth.signed_headers:
            return Invalid("The security token must be signed", 403, "InvalidSignatureException")
        path, _, query = request.raw_path.partition("?")
        problem = verify(request.method, path, query, headers, raw, self.creds)
        if problem:
            kind = "UnrecognizedClientException" if "token" in problem else "InvalidSignatureException"
            return Invalid(problem, 403, kind)
        return None

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        raw, body = await self.record(request)
        bad = self._check_signature(request, raw)
        if bad:
            return self._error(bad.status, bad.kind, bad.message)
        model = request.match_info["model"]
        script = self.next_script(model)
        if script.status != 200:
            kind, message = EXCEPTIONS.get(script.status, ("ValidationException", "invalid"))
            return self._error(script.status, kind, script.message or message, script.headers, scripted=True)
        try:
            if not isinstance(body, dict):
                raise Invalid("Malformed input request, please reformat your input and try again.")
            chars = validate(body)
            if chars > self.max_input_chars:
                raise Invalid("Input is too long for requested model.")
        except Invalid as exc:
            return self._error(exc.status, exc.kind, exc.message)
        messages = body["messages"]
        last = messages[-1]["content"]
        results = [r["toolResult"]["content"][0].get("text", r["toolResult"]["content"][0].get("json"))
                   for r in last if "toolResult" in r]
        user_text = " ".join(b["text"] for b in last if "text" in b)
        config = body.get("toolConfig") or {}
        tools = [(t["toolSpec"]["name"], t["toolSpec"]["inputSchema"]["json"]) for t in config.get("tools", [])]
        choice = config.get("toolChoice") or {}
        forced = (choice.get("tool") or {}).get("name")
        ans = answer("bedrock", tools=tools, tool_mode="auto", allowed=[forced] if forced else None,
                     tool_results=results or None, user_text=user_text, json_mode=False,
                     prompt_chars=chars, script=script)
        calls = [{"toolUseId": f"tooluse_{i}fake", "name": n, "input": a} for i, (n, a) in enumerate(ans.calls)]
        if forced and script.text is None and not results:  # a forced tool: always called
            schema = dict(tools).get(forced)
            calls = [{"toolUseId": "tooluse_0fake", "name": forced,
                      "input": arguments_for(schema) or {"answer": user_text}}]
        text = None if forced and calls else ans.text
        limit = (body.get("inferenceConfig") or {}).get("maxTokens")
        stop = script.finish or ("tool_use" if calls else "end_turn")
        if text and limit and len(text.split()) > limit:
            text, stop = " ".join(text.split()[:limit]), script.finish or "max_tokens"
        usage = {"inputTokens": ans.prompt_tokens, "outputTokens": ans.completion_tokens,
                 "totalTokens": ans.prompt_tokens + ans.completion_tokens}
        if script.usage is None:
            usage["cacheReadInputTokens"] = 2
        if request.path.endswith("/converse-stream"):
            return await self._stream(request, script, ans.reasoning, text, calls, stop, usage)
        content = ([{"reasoningContent": {"reasoningText": {"text": ans.reasoning, "signature": "s"}}}]
                   if ans.reasoning else []) + ([{"text": text}] if text else []) + \
            [{"toolUse": c} for c in calls]
        return web.json_response({"output": {"message": {"role": "assistant", "content": content}},
                                  "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 12}},
                                 headers=script.headers)

    async def _stream(self, request, s: Script, reasoning, text, calls, stop, usage) -> web.StreamResponse:
        events: list[tuple[str, dict]] = [("messageStart", {"role": "assistant"})]
        index = 0
        if reasoning:
            events += [("contentBlockDelta", {"contentBlockIndex": index,
                                              "delta": {"reasoningContent": {"text": reasoning}}}),
                       ("contentBlockStop", {"contentBlockIndex": index})]
            index += 1
        if text:
            events += [("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": w}})
                       for w in words(text)]
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for call in calls:
            args = json.dumps(call["input"])
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"toolUseId": call["toolUseId"], "name": call["name"]}}}))
            events += [("contentBlockDelta", {"contentBlockIndex": index,
                                              "delta": {"toolUse": {"input": args[k:k + 6]}}})
                       for k in range(0, len(args), 6)]
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        events += [("messageStop", {"stopReason": stop}),
                   ("metadata", {"usage": usage, "metrics": {"latencyMs": 12}})]
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                           "x-amzn-RequestId": "fake-req-1", **s.headers})
        await resp.prepare(request)
        for i, (kind, data) in enumerate(events):
            if s.cut_after is not None and i >= s.cut_after:
                request.transport.close()
                return resp
            if s.stream_error_after is not None and i >= s.stream_error_after:
                exc = s.stream_error or "modelStreamErrorException"
                frame = encode({":message-type": "exception", ":exception-type": exc,
                                ":content-type": "application/json"},
                               json.dumps({"message": s.message or "The model failed mid-stream."}).encode())
                await resp.write(frame)
                break
            payload = json.dumps({**data, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 5 + i % 20]})
            frame = encode({":event-type": kind, ":content-type": "application/json",
                            ":message-type": "event"}, payload.encode())
            # cut each frame in two writes so the decoder must join pieces
            await resp.write(frame[:7])
            await resp.write(frame[7:])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp


# -- request validation ----------------------------------------------------------------------------


def validate(body: dict) -> int:
    for key in body:
        if key not in TOP:
            raise Invalid(f"Malformed input request: extraneous key [{key}] is not permitted, "
                          "please reformat your input and try again.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("1 validation error detected: Value null at 'messages' failed to satisfy "
                      "constraint: Member must not be null")
    chars, tool_blocks = 0, False
    expected: list[str] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if set(m) - {"role", "content"} or role not in ("user", "assistant"):
            raise Invalid(f"1 validation error detected: Value at 'messages.{i + 1}.member.role' "
                          "failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]")
        if i == 0 and role != "user":
            raise Invalid("A conversation must start with a user message. Try again with a "
                          "conversation that starts with a user message.")
        if i and messages[i - 1]["role"] == role:
            raise Invalid("A conversation must alternate between user and assistant roles. Make sure "
                          "the conversation alternates between user and assistant roles and try again.")
        content = m.get("content")
        if not isinstance(content, list) or not content:
            raise Invalid(f"The content field in the Message object at messages.{i} is empty. Add a "
                          "ContentBlock object to the content field and try again.")
        results = []
        uses = []
        for j, block in enumerate(content):
            keys = [k for k in block if k in BLOCKS]
            if len(keys) != 1 or set(block) - BLOCKS:
                raise Invalid(f"The ContentBlock object at messages.{i}.content.{j} must set one field.")
            kind, value = keys[0], block[keys[0]]
            if kind == "text":
                if not isinstance(value, str) or not value.strip():
                    raise Invalid(f"The text field in the ContentBlock object at messages.{i}.content.{j} "
                                  "is blank. Add text to the text field, and try again.")
                chars += len(value)
            elif kind == "image":
                validate_image(value, f"messages.{i}.content.{j}")
                chars += 1000
            elif kind == "toolUse":
                tool_blocks = True
                if role != "assistant" or set(value) != {"toolUseId", "name", "input"} \
                        or not TOOL_ID.match(str(value["toolUseId"])) or len(value["toolUseId"]) > 64 \
                        or not isinstance(value["input"], dict):
                    raise Invalid(f"Invalid toolUse block at messages.{i}.content.{j}")
                uses.append(value["toolUseId"])
                chars += len(json.dumps(value["input"]))
            elif kind == "toolResult":
                tool_blocks = True
                if role != "user" or set(value) - {"toolUseId", "content", "status"} \
                        or not isinstance(value.get("content"), list) or not value["content"]:
                    raise Invalid(f"Invalid toolResult block at messages.{i}.content.{j}")
                for part in value["content"]:
                    if len(part) != 1 or next(iter(part)) not in ("text", "json", "image", "document"):
                        raise Invalid(f"Invalid toolResult content at messages.{i}.content.{j}")
                    if "text" in part:
                        chars += len(part["text"])
                results.append(value["toolUseId"])
        if expected and sorted(results) != sorted(expected):
            raise Invalid(f"messages.{i}.content: Expected toolResult blocks at messages.{i}.content "
                          f"for the following Ids: {', '.join(expected)}")
        if results and not expected:
            raise Invalid(f"messages.{i}.content: unexpected toolResult blocks: each toolResult must "
                          "have a corresponding toolUse in the previous message")
        expected = uses
    if tool_blocks and "toolConfig" not in body:
        raise Invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    for s in body.get("system") or []:
        if set(s) - {"text", "guardContent", "cachePoint"} or not str(s.get("text", "x")).strip():
            raise Invalid("The system field must contain SystemContentBlock objects with non-blank text.")
        chars += len(s.get("text", ""))
    validate_inference(body.get("inferenceConfig"))
    validate_tool_config(body.get("toolConfig"))
    return chars


def validate_image(value: dict, where: str) -> None:
    if set(value) != {"format", "source"} or value["format"] not in ("png", "jpeg", "gif", "webp"):
        raise Invalid(f"Invalid image block at {where}: format must be one of png, jpeg, gif, webp")
    source = value["source"]
    if set(source) == {"bytes"}:
        try:
            base64.b64decode(source["bytes"], validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"Invalid image bytes at {where}: not base64") from None
    elif set(source) != {"s3Location"}:
        raise Invalid(f"Invalid image source at {where}")


def validate_inference(config: dict | None) -> None:
    if config is None:
        return
    if set(config) - {"maxTokens", "temperature", "topP", "stopSequences"}:
        raise Invalid(f"Malformed input request: extraneous key [{sorted(set(config))[0]}] in inferenceConfig")
    if "maxTokens" in config and (not isinstance(config["maxTokens"], int) or config["maxTokens"] < 1):
        raise Invalid("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to "
                      "satisfy constraint: Member must have value greater than or equal to 1")
    if not 0 <= config.get("temperature", 0) <= 1:
        raise Invalid("1 validation error detected: Value at 'inferenceConfig.temperature' failed to "
                      "satisfy constraint: Member must have value less than or equal to 1")
    if not 0 <= config.get("topP", 0) <= 1:
        raise Invalid("1 validation error detected: Value at 'inferenceConfig.topP' failed to "
                      "satisfy constraint: Member must have value less than or equal to 1")
    stops = config.get("stopSequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise Invalid("inferenceConfig.stopSequences must be a list of non-empty strings")


def validate_tool_config(config: dict | None) -> None:
    if config is None:
        return
    if set(config) - {"tools", "toolChoice"} or not config.get("tools"):
        raise Invalid("The toolConfig field must contain at least one tool.")
    names = set()
    for i, tool in enumerate(config["tools"]):
        spec = tool.get("toolSpec") if set(tool) == {"toolSpec"} else None
        if not isinstance(spec, dict) or set(spec) - {"name", "description", "inputSchema"} \
                or not re.match(r"^[a-zA-Z0-9_-]{1,64}$", str(spec.get("name", ""))) \
                or not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
            raise Invalid(f"The toolSpec at toolConfig.tools.{i} is invalid.")
        names.add(spec["name"])
    choice = config.get("toolChoice")
    if choice is not None:
        if len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
            raise Invalid("toolConfig.toolChoice must set exactly one of auto, any, tool")
        if "tool" in choice and choice["tool"].get("name") not in names:
            raise Invalid(f"toolConfig.toolChoice.tool.name {choice['tool'].get('name')} is not a tool")
