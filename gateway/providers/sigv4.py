"""AWS Signature Version 4 for request headers (the ``Authorization`` header form).

Small on purpose: the gateway signs requests to bedrock-runtime and bedrock (JSON), and the S3
objects of Bedrock batch jobs (gateway/files/native_bedrock.py), so this implements the header
variant of SigV4 and nothing else: no presigned URLs, no chunked payload signing (S3 uploads
send ``UNSIGNED-PAYLOAD``), no S3 path rules (its keys are chosen so that they need none).
Standard library only. It is checked
against AWS's published test-suite values (tests/providers/test_sigv4.py).

Paths: the canonical URI is the request-line path, URI-encoded once more (AWS's rule for every
service but S3). A path sent as ``/model/a%3A0/converse`` is signed as ``/model/a%253A0/converse``,
exactly as botocore does; pass the path as it goes on the wire.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return f"Credentials(access_key={self.access_key[:4]}…)"

    @classmethod
    def resolve(cls, options: Mapping[str, object],
                environ: Mapping[str, str] | None = None) -> "Credentials | None":
        """From provider options (aws_access_key_id, …), else the standard AWS_* variables."""
        env = os.environ if environ is None else environ
        key = options.get("aws_access_key_id")
        secret = options.get("aws_secret_access_key")
        token = options.get("aws_session_token")
        if not (key and secret):
            key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
            token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN")
        if not (key and secret):
            return None
        return cls(str(key), str(secret), str(token) if token else None)


def amz_date(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_uri(path: str) -> str:
    """The path as sent, URI-encoded once more ('/' kept); empty means '/'."""
    return quote(path or "/", safe="/" + _UNRESERVED)


def canonical_query(query: str) -> str:
    """Parameters decoded, re-encoded strictly, sorted by name then value."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe=_UNRESERVED), quote(unquote(value), safe=_UNRESERVED)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(headers: Mapping[str, str], names: list[str]) -> str:
    """``name:value\\n`` per signed header: lower-case names, trimmed values, inner runs of
    whitespace folded to one space; repeated headers joined with commas."""
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        merged.setdefault(name.lower(), []).append(_SPACES.sub(" ", str(value).strip()))
    return "".join(f"{n}:{','.join(merged[n])}\n" for n in names)


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str],
                      signed: list[str], payload_hash: str) -> str:
    return "\n".join([
        method.upper(), canonical_uri(path), canonical_query(query),
        canonical_headers(headers, signed), ";".join(signed), payload_hash,
    ])


def scope(date: str, region: str, service: str) -> str:
    return f"{date[:8]}/{region}/{service}/aws4_request"


def string_to_sign(date: str, scope_: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, date, scope_, sha256_hex(canonical.encode("utf-8"))])


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature(secret: str, date: str, region: str, service: str, to_sign: str) -> str:
    key = signing_key(secret, date, region, service)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """Which headers to sign: host, content-type and every x-amz-* header."""
    names = {n.lower() for n in headers}
    return sorted(n for n in names if n in ("host", "content-type") or n.startswith("x-amz-"))


def sign(method: str, host: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
         creds: Credentials, region: str, service: str, *, date: str | None = None,
         payload_hash: str | None = None) -> dict[str, str]:
    """The headers to send: ``headers`` plus Host, X-Amz-Date, X-Amz-Security-Token (with a
    session token) and Authorization. ``path`` and ``query`` are as they go on the wire.
    ``payload_hash`` replaces the body's SHA-256 (S3's ``UNSIGNED-PAYLOAD`` for a streamed
    upload; S3 paths are signed as sent, so only paths that encoding leaves alone, such as
    keys of letters, digits and ``-_./``, are signed right for S3)."""
    date = date or amz_date()
    out = {k: v for k, v in headers.items() if k.lower() not in ("host", "authorization")}
    out["Host"] = host
    out["X-Amz-Date"] = date
    if creds.session_token:
        out["X-Amz-Security-Token"] = creds.session_token
    names = signed_header_names(out)
    canonical = canonical_request(method, path, query, out, names,
                                  payload_hash or sha256_hex(body))
    scope_ = scope(date, region, service)
    sig = signature(creds.secret_key, date, region, service, string_to_sign(date, scope_, canonical))
    out["Authorization"] = (
        f"{ALGORITHM} Credential={creds.access_key}/{scope_}, "
        f"SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    return out
