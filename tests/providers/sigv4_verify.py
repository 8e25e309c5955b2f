"""Checking a SigV4 signature as AWS does, for the fake Bedrock and the signer's tests. The
gateway only signs (gateway/providers/sigv4.py); verifying is the server's side."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Mapping

from gateway.providers.sigv4 import (
    Credentials, canonical_request, scope, sha256_hex, signature, string_to_sign,
)


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    access_key: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/"
    r"(?P<service>[^/\s]+)/aws4_request,\s*SignedHeaders=(?P<headers>[a-z0-9;_.-]+),\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an Authorization header into its parts."""
    m = _AUTH.match(value.strip())
    if not m:
        return None
    return ParsedAuthorization(m["key"], m["date"], m["region"], m["service"],
                               m["headers"].split(";"), m["sig"])


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
           creds: Credentials, payload_hash: str | None = None) -> str | None:
    """Check a received request's signature as AWS would; None when valid, else the reason.
    ``payload_hash``: what S3 signs instead of the body's hash (its x-amz-content-sha256)."""
    auth = parse_authorization(headers.get("Authorization") or headers.get("authorization") or "")
    if auth is None:
        return "Missing Authentication Token"
    if auth.access_key != creds.access_key:
        return "The security token included in the request is invalid."
    date = headers.get("X-Amz-Date") or headers.get("x-amz-date") or ""
    if not date.startswith(auth.date):
        return "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date"
    lower = {k.lower() for k in headers}
    if "host" not in auth.signed_headers or any(h not in lower for h in auth.signed_headers):
        return "'Host' or 'x-amz-date' header must be a signed header"
    canonical = canonical_request(method, path, query, headers, auth.signed_headers,
                                  payload_hash or sha256_hex(body))
    expected = signature(creds.secret_key, date, auth.region, auth.service,
                         string_to_sign(date, scope(date, auth.region, auth.service), canonical))
    if not hmac.compare_digest(expected, auth.signature):
        return ("The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.")
    return None
