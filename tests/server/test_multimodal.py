"""Images, speech and transcription through the graph, with the official openai client."""

from __future__ import annotations

import io

import openai
import pytest

CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"}}
  claude: {{type: anthropic, api_key: x, base_url: "http://127.0.0.1:9/"}}
  demo: {{type: mock}}
routes:
  dalle: {{target: {{provider: up, model: image-model}}}}
  tts: {{target: {{provider: up, model: tts-model}}}}
  whisper:
    fallback:
      targets:
        - target: {{provider: up, model: stt-first}}
        - target: {{provider: up, model: stt-second}}
  mock-images: {{target: {{provider: demo, model: mock-image}}}}
  mock-tts: {{target: {{provider: demo, model: mock-tts}}}}
  mock-stt: {{target: {{provider: demo, model: mock-stt}}}}
  chat-only: {{target: {{provider: claude, model: claude-sonnet-4-5}}}}
  skip-unsupported:
    fallback:
      on_status: [500]
      targets:
        - target: {{provider: claude, model: claude-sonnet-4-5}}
        - target: {{provider: up, model: image-fallback}}
"""


@pytest.fixture
def gw(upstream, gateway_app):
    return gateway_app(CONFIG.format(base_url=upstream.base_url))


def client(gw) -> openai.OpenAI:
    return gw.openai(api_key="x")


def test_image_generation(gw, upstream):
    """POST /v1/images/generations goes to the route's target with its model."""
    result = client(gw).images.generate(model="dalle", prompt="a red fox", n=1)
    assert result.data[0].url == "https://images.invalid/image-model.png"
    assert upstream.requests[-1].body["prompt"] == "a red fox"


def test_speech_is_streamed_back_as_binary(gw, upstream):
    """POST /v1/audio/speech returns the upstream's audio bytes unchanged."""
    with client(gw).audio.speech.with_streaming_response.create(
            model="tts", voice="alloy", input="hello there") as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = response.read()
    assert audio == b"".join(bytes([i]) * 1000 for i in range(4))
    assert upstream.requests[-1].body["model"] == "tts-model"


def test_transcription_upload_with_fallback(gw, upstream):
    """A multipart upload reaches the upstream whole; a retried target gets it again."""
    upstream.script("stt-first", 503)
    audio = io.BytesIO(b"RIFF" + b"\x00" * 5000)
    audio.name = "speech.wav"
    result = client(gw).audio.transcriptions.create(model="whisper", file=audio, language="en")
    assert result.text == "heard 5004 bytes from speech.wav"
    first, second = upstream.requests[-2:]
    assert first.body["model"] == "stt-first" and second.body["model"] == "stt-second"
    assert second.body["file"] == {"name": "speech.wav", "size": 5004}
    assert second.body["language"] == "en"


def test_mock_serves_every_endpoint_offline(gw):
    """The mock provider answers images, speech and transcription too."""
    c = client(gw)
    assert c.images.generate(model="mock-images", prompt="x").data[0].b64_json
    speech = c.audio.speech.create(model="mock-tts", voice="alloy", input="one two three")
    assert speech.content[:4] == b"RIFF"
    text = c.audio.transcriptions.create(model="mock-stt", file=("a.wav", b"12345")).text
    assert text == "Mock transcription of 5 bytes of a.wav"


def test_endpoint_no_target_can_serve_is_a_clear_400(gw):
    """A route whose only target cannot make images answers 400 naming the reason."""
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).images.generate(model="chat-only", prompt="x")
    assert "claude/claude-sonnet-4-5 cannot serve images" in info.value.body["message"]


def test_fallback_skips_targets_that_cannot_serve_the_endpoint(gw, upstream):
    """A fallback moves past a target that cannot serve the endpoint, whatever on_status says."""
    result = client(gw).images.generate(model="skip-unsupported", prompt="x")
    assert result.data[0].url.endswith("/image-fallback.png")


def test_transcription_needs_a_file(gw):
    """A multipart request without a file is a 400 naming the parameter."""
    r = gw.post("/v1/audio/transcriptions", data={"model": "whisper"},
                files={"other": ("x.txt", b"1")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
