"""Credentials written into a URL (``http://user:pass@host``, ``redis://:pass@host``) are
secrets like an ``api_key``: shown as ``http://***@host`` wherever the config is shown, and
searched for in upstream error text."""

from __future__ import annotations

import re
from urllib.parse import unquote

MASKED = "***"

# scheme://userinfo@ ; greedy up to the last "@" before the path, like urlsplit
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s\"'<>]*)@")


def mask_userinfo(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by ***."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASKED}@", text)


def userinfo_secrets(text: str) -> list[str]:
    """The userinfo of every URL in ``text``, whole and split into user and password, as
    written and percent-decoded."""
    found = []
    for match in _USERINFO.finditer(text):
        userinfo = match.group("userinfo")
        parts = [userinfo, *userinfo.split(":", 1)]
        found += [p for part in parts for p in {part, unquote(part)} if p]
    return found
