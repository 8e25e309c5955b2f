"""A fake Gemini (Generative Language API v1beta) on a loopback port.

It validates requests the way the real API does (proto JSON: unknown field names are a 400,
one data field per part, role names, the function-call turn rules, the Schema subset in
function parameters, generationConfig ranges, the API key in x-goog-api-key) and answers in
the real wire format: GenerateContentResponse JSON, ``streamGenerateContent?alt=sse`` as SSE
events of GenerateContentResponse objects (a JSON array without alt=sse), batchEmbedContents.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re

from aiohttp import web

from .fake_server import FakeServer, Script, answer, words

TOP = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
       "cachedContent", "labels"}
PART = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
        "codeExecutionResult"}
PART_META = {"thought", "thoughtSignature", "videoMetadata"}
GENERATION = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
              "responseMimeType", "responseSchema", "responseJsonSchema", "presencePenalty",
              "frequencyPenalty", "seed", "responseLogprobs", "logprobs", "thinkingConfig",
              "responseModalities", "mediaResolution", "speechConfig"}
SCHEMA = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
          "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
          "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
TYPES = {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def error_body(status: int, code: str, message: str, details: list | None = None) -> dict:
    body = {"error": {"code": status, "message": message, "status": code}}
    if details:
        body["error"]["details"] = details
    return body


def unknown(name: str, where: str) -> Invalid:
    return Invalid(f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': '
                   "Cannot find field.")


class FakeGemini(FakeServer):
    provider = "gemini"

    def __init__(self, api_key: str = "gemini-test-key", max_input_chars: int = 20000):
        super().__init__()
        self.api_key = api_key
        self.max_input_chars = max_input_chars

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{call}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw, body = await self.record(request)
        model, _, method = request.match_info["call"].partition(":")
        if "key" in request.query:
            return self.reject(400, error_body(400, "INVALID_ARGUMENT", "the test forbids ?key="))
        key = request.headers.get("x-goog-api-key")
        if not key:
            return self.reject(403, error_body(403, "PERMISSION_DENIED",
                                               "Method doesn't allow unregistered callers (callers "
                                               "without established identity). Please use API Key "
                                               "or other form of API consumer identity to call "
                                               "this API."))
        if key != self.api_key:
            return self.reject(400, error_body(400, "INVALID_ARGUMENT",
                                               "API key not valid. Please pass a valid API key."))
        if body is None or not isinstance(body, dict):
            return self.reject(400, error_body(400, "INVALID_ARGUMENT",
                                               "Invalid JSON payload received."))
        script = self.next_script(model)
        if script.status != 200:
            return self._scripted_error(script)
        try:
            if method == "batchEmbedContents":
                return web.json_response(self._embed(model, body))
            if method == "predict":  # Imagen
                return web.json_response(_imagen(model, body))
            modalities = (body.get("generationConfig") or {}).get("responseModalities") or []
            if method == "generateContent" and "IMAGE" in modalities:
                return web.json_response(_image_answer(model, body))
            if method not in ("generateContent", "streamGenerateContent"):
                raise Invalid(f"method {method} not found", 404, "NOT_FOUND")
            chars = validate(body)
            if chars > self.max_input_chars:
                raise Invalid(f"The input token count ({chars // 4 + 1}) exceeds the maximum "
                              f"number of tokens allowed ({self.max_input_chars // 4}).")
        except Invalid as exc:
            return self.reject(exc.status, error_body(exc.status, exc.code, exc.message))
        responses = self._responses(model, body, script, chars, method == "streamGenerateContent")
        if method == "generateContent":
            return web.json_response(responses[0], headers=script.headers)
        if request.query.get("alt") != "sse":
            return web.json_response(responses)  # the JSON-array form
        return await self._sse(request, responses, script)

    def _scripted_error(self, s: Script) -> web.Response:
        status = s.status
        code, message, details = {
            429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan "
                  "and billing details.", [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                            "retryDelay": "7s"}]),
            500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                  "https://developers.generativeai.google/guide/troubleshooting", None),
            503: ("UNAVAILABLE", "The model is overloaded. Please try again later.", None),
            404: ("NOT_FOUND", "models/nope is not found for API version v1beta", None),
            403: ("PERMISSION_DENIED", "The caller does not have permission", None),
        }.get(status, ("INVALID_ARGUMENT", "Request contains an invalid argument.", None))
        return self.reject(status, error_body(status, code, s.message or message, details),
                           s.headers, scripted=True)

    # -- answers -----------------------------------------------------------------------------

    def _responses(self, model: str, body: dict, s: Script, chars: int, stream: bool) -> list[dict]:
        usage = {"promptTokenCount": s.usage[0] if s.usage else max(1, chars // 4)}
        if s.block:
            return [{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                     "usageMetadata": {**usage, "totalTokenCount": usage["promptTokenCount"]},
                     "modelVersion": model}]
        contents = body["contents"]
        last = contents[-1]
        results = [p["functionResponse"]["response"] for p in last["parts"] if "functionResponse" in p]
        user_text = " ".join(p.get("text", "") for p in last["parts"] if "text" in p)
        decls = [(d["name"], d.get("parameters")) for t in body.get("tools") or []
                 for d in t.get("functionDeclarations") or []]
        fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        gen = body.get("generationConfig") or {}
        ans = answer("gemini", tools=decls, tool_mode=fcc.get("mode", "AUTO").lower(),
                     allowed=fcc.get("allowedFunctionNames"), tool_results=results or None,
                     user_text=user_text, json_mode=gen.get("responseMimeType") == "application/json",
                     prompt_chars=chars, script=s)
        thinking = (gen.get("thinkingConfig") or {}).get("includeThoughts")
        reasoning = s.reasoning or ("Let me think." if thinking else None)
        n = gen.get("candidateCount", 1)
        finish = s.finish or ("STOP" if not gen.get("maxOutputTokens") or ans.completion_tokens
                              <= gen["maxOutputTokens"] else "MAX_TOKENS")
        text = ans.text
        if text and finish == "MAX_TOKENS":
            text = " ".join(text.split()[: gen["maxOutputTokens"]])
        meta = {**usage, "candidatesTokenCount": ans.completion_tokens * n,
                "totalTokenCount": usage["promptTokenCount"] + ans.completion_tokens * n}
        if reasoning:
            meta["thoughtsTokenCount"] = 2
            meta["totalTokenCount"] += 2
        calls = [{"functionCall": {"name": name, "args": args}, "thoughtSignature": f"sig-{i}"}
                 for i, (name, args) in enumerate(ans.calls)]
        if not stream:
            parts = ([{"text": reasoning, "thought": True}] if reasoning else []) + \
                ([{"text": text}] if text else []) + calls
            return [{"candidates": [{"content": {"role": "model", "parts": parts},
                                     "finishReason": finish, "index": i} for i in range(n)],
                     "usageMetadata": meta, "modelVersion": model, "responseId": "fake-resp-1"}]
        pieces: list[list[dict]] = []
        if reasoning:
            pieces.append([{"text": reasoning, "thought": True}])
        pieces += [[{"text": w}] for w in words(text)] if text else []
        if calls:
            pieces.append(calls)
        out = []
        for i, parts in enumerate(pieces):
            last_piece = i == len(pieces) - 1
            cands = [{"content": {"role": "model", "parts": parts}, "index": c,
                      **({"finishReason": finish} if last_piece else {})} for c in range(n)]
            out.append({"candidates": cands, "modelVersion": model, "responseId": "fake-resp-1",
                        "usageMetadata": meta if last_piece else usage})
        return out

    async def _sse(self, request: web.Request, responses: list[dict], s: Script) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **s.headers})
        await resp.prepare(request)
        for i, item in enumerate(responses):
            if s.cut_after is not None and i >= s.cut_after:
                request.transport.close()
                return resp
            if s.stream_error_after is not None and i >= s.stream_error_after:
                err = error_body(503, "UNAVAILABLE", s.message or "The model is overloaded.")
                await resp.write(b"data: " + json.dumps(err).encode() + b"\r\n\r\n")
                break
            await resp.write(b"data: " + json.dumps(item).encode() + b"\r\n\r\n")
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    def _embed(self, model: str, body: dict) -> dict:
        for key in body:
            if key != "requests":
                raise unknown(key, "")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise Invalid("* BatchEmbedContentsRequest.requests: requests is required")
        vectors = []
        for i, req in enumerate(requests):
            for key in req:
                if key not in ("model", "content", "taskType", "title", "outputDimensionality"):
                    raise unknown(key, f"requests[{i}]")
            if req.get("model") != f"models/{model}":
                raise Invalid(f"* BatchEmbedContentsRequest.requests[{i}].model: the model of each "
                              "request must be the model of the batch")
            parts = (req.get("content") or {}).get("parts") or []
            if not parts or not all(isinstance(p.get("text"), str) for p in parts):
                raise Invalid(f"* BatchEmbedContentsRequest.requests[{i}].content: contents must "
                              "have text parts")
            dims = req.get("outputDimensionality", 8)
            seed = sum(map(ord, parts[0]["text"]))
            vectors.append({"values": [round(((seed * (k + 3)) % 101 + 1) / 102, 4) for k in range(dims)]})
        return {"embeddings": vectors}


# -- request validation (what the real API refuses) -----------------------------------------------


def validate(body: dict) -> int:
    """Raise Invalid as the API would; return the number of input characters."""
    for key in body:
        if key not in TOP:
            raise unknown(key, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    chars = 0
    for i, content in enumerate(contents):
        for key in content:
            if key not in ("role", "parts"):
                raise unknown(key, f"contents[{i}]")
        if content.get("role", "user") not in ("user", "model"):
            raise Invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            chars += validate_part(part, f"contents[{i}].parts[{j}]")
    check_function_turns(contents)
    system = body.get("systemInstruction")
    if system is not None:
        for key in system:
            if key not in ("role", "parts"):
                raise unknown(key, "system_instruction")
        for j, part in enumerate(system.get("parts") or []):
            if set(part) != {"text"}:
                raise Invalid("* GenerateContentRequest.system_instruction: only text parts are allowed")
            chars += len(part["text"])
    validate_tools(body.get("tools"), body.get("toolConfig"))
    validate_generation(body.get("generationConfig"))
    return chars


def validate_part(part: dict, where: str) -> int:
    data = [k for k in part if k in PART]
    for key in part:
        if key not in PART and key not in PART_META:
            raise unknown(key, where)
    if len(data) != 1:
        raise Invalid(f"* GenerateContentRequest.{where}.data: required oneof field 'data' must "
                      "have one initialized field")
    kind = data[0]
    value = part[kind]
    if kind == "text":
        if not isinstance(value, str):
            raise Invalid(f"Invalid value at '{where}.text' (TYPE_STRING)")
        return len(value)
    if kind == "inlineData":
        if set(value) - {"mimeType", "data"} or not value.get("mimeType"):
            raise Invalid(f"* GenerateContentRequest.{where}.inline_data.mime_type: required")
        try:
            base64.b64decode(value.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 "
                          "decoding failed") from None
        return 258 * 4
    if kind == "fileData":
        if not str(value.get("fileUri", "")).startswith(("https://", "gs://")):
            raise Invalid(f"* {where}.file_data.file_uri: invalid uri")
        return 258 * 4
    if kind == "functionCall":
        if set(value) - {"name", "args", "id"} or not NAME.match(str(value.get("name", ""))):
            raise Invalid(f"* GenerateContentRequest.{where}.function_call.name: invalid")
        if not isinstance(value.get("args", {}), dict):
            raise Invalid(f"Invalid value at '{where}.function_call.args' (type.googleapis.com/google.protobuf.Struct)")
        return len(json.dumps(value))
    if kind == "functionResponse":
        if set(value) - {"name", "response", "id"} or not NAME.match(str(value.get("name", ""))):
            raise Invalid(f"* GenerateContentRequest.{where}.function_response.name: invalid")
        if not isinstance(value.get("response"), dict):
            raise Invalid(f"Invalid value at '{where}.function_response.response' "
                          "(type.googleapis.com/google.protobuf.Struct)")
        return len(json.dumps(value))
    return 0


def check_function_turns(contents: list[dict]) -> None:
    """A function-call turn comes right after a user turn or a function-response turn, and is
    answered by exactly as many function responses as it made calls."""
    for i, content in enumerate(contents):
        calls = [p["functionCall"]["name"] for p in content["parts"] if "functionCall" in p]
        if not calls:
            continue
        prev = contents[i - 1] if i else None
        if prev is None or prev.get("role", "user") != "user":
            raise Invalid("Please ensure that function call turn comes immediately after a user "
                          "turn or after a function response turn.")
        if i + 1 < len(contents):
            responses = [p["functionResponse"]["name"] for p in contents[i + 1]["parts"]
                         if "functionResponse" in p]
            if len(responses) != len(calls):
                raise Invalid("Please ensure that the number of function response parts is equal "
                              "to the number of function call parts of the function call turn.")


def validate_schema(schema: dict, where: str) -> None:
    for key, value in schema.items():
        if key not in SCHEMA:
            raise unknown(key, where)
        if key == "type" and str(value).upper() not in TYPES:
            raise Invalid(f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), \"{value}\"")
        if key == "properties":
            for name, sub in value.items():
                validate_schema(sub, f"{where}.properties[{name}].value")
        if key == "items":
            validate_schema(value, f"{where}.items")
        if key == "anyOf":
            for k, sub in enumerate(value):
                validate_schema(sub, f"{where}.any_of[{k}]")
    if str(schema.get("type", "")).upper() == "OBJECT" and "properties" in schema and not schema["properties"]:
        raise Invalid(f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type")


def validate_tools(tools, config) -> set[str]:
    names: set[str] = set()
    for i, tool in enumerate(tools or []):
        for key in tool:
            if key not in ("functionDeclarations", "googleSearch", "codeExecution", "urlContext"):
                raise unknown(key, f"tools[{i}]")
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{j}]"
            for key in decl:
                if key not in ("name", "description", "parameters", "parametersJsonSchema", "behavior", "response"):
                    raise unknown(key, where)
            if not NAME.match(str(decl.get("name", ""))):
                raise Invalid(f"* GenerateContentRequest.{where}.name: Invalid function name. Must "
                              "start with a letter or an underscore.")
            if "parameters" in decl:
                validate_schema(decl["parameters"], f"{where}.parameters")
            names.add(decl["name"])
    if config is not None:
        fcc = config.get("functionCallingConfig") or {}
        if set(config) - {"functionCallingConfig", "retrievalConfig"}:
            raise unknown(next(iter(set(config) - {"functionCallingConfig"})), "tool_config")
        if fcc.get("mode", "AUTO") not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
            raise Invalid(f"Invalid value at 'tool_config.function_calling_config.mode', \"{fcc['mode']}\"")
        if fcc.get("allowedFunctionNames") and fcc.get("mode") not in ("ANY", "VALIDATED"):
            raise Invalid("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                          "allowed_function_names should only be set when the Function calling mode is ANY.")
        for name in fcc.get("allowedFunctionNames") or []:
            if name not in names:
                raise Invalid(f"allowed_function_names contains {name}, which is not declared")
    return names


def validate_generation(gen: dict | None) -> None:
    if gen is None:
        return
    for key in gen:
        if key not in GENERATION:
            raise unknown(key, "generation_config")
    if not 0 <= gen.get("temperature", 1) <= 2:
        raise Invalid("* GenerateContentRequest.generation_config.temperature: must be in [0, 2]")
    if not 0 <= gen.get("topP", 1) <= 1:
        raise Invalid("* GenerateContentRequest.generation_config.top_p: must be in [0, 1]")
    if not 1 <= gen.get("candidateCount", 1) <= 8:
        raise Invalid("* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]")
    if len(gen.get("stopSequences") or []) > 5:
        raise Invalid("* GenerateContentRequest.generation_config.stop_sequences: at most 5")
    if gen.get("responseMimeType", "text/plain") not in ("text/plain", "application/json", "text/x.enum"):
        raise Invalid("* GenerateContentRequest.generation_config.response_mime_type: allowed "
                      "mimetypes are `text/plain`, `application/json`, and `text/x.enum`.")
    if "responseSchema" in gen:
        if gen.get("responseMimeType") not in ("application/json", "text/x.enum"):
            raise Invalid("* GenerateContentRequest.generation_config.response_mime_type: "
                          "response_mime_type must be application/json with a response_schema")
        validate_schema(gen["responseSchema"], "generation_config.response_schema")
    thinking = gen.get("thinkingConfig")
    if thinking is not None and set(thinking) - {"thinkingBudget", "includeThoughts", "thinkingLevel"}:
        raise unknown(next(iter(set(thinking) - {"thinkingBudget", "includeThoughts"})),
                      "generation_config.thinking_config")


FAKE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def _imagen(model: str, body: dict) -> dict:
    """Imagen's :predict: instances[].prompt, parameters.sampleCount."""
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances or "prompt" not in instances[0]:
        raise Invalid("instances[0].prompt is required")
    count = (body.get("parameters") or {}).get("sampleCount", 1)
    return {"predictions": [{"bytesBase64Encoded": FAKE_PNG, "mimeType": "image/png"}
                            for _ in range(count)]}


def _image_answer(model: str, body: dict) -> dict:
    """A Gemini image model's answer: a text part and an inlineData image part."""
    validate(body)
    return {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "here is your image"},
        {"inlineData": {"mimeType": "image/png", "data": FAKE_PNG}}]},
        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1290,
                          "totalTokenCount": 1294}}
