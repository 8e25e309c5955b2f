"""Finding personal data in text: e-mail addresses, phone numbers, card numbers, IBANs and IP
addresses.

Each detector proposes candidates with a regular expression and keeps only those that pass a
check: Luhn for card numbers, mod-97 and the country's length for IBANs, the ``ipaddress``
module for IP addresses, digit counts and a few formats for phone numbers. Detectors run in a
fixed order and a later one never claims text an earlier one took, so a card number is never
also a phone number: e-mail addresses, IBANs, card numbers, IP addresses, then phone numbers.

Standard library only. A ``Finding`` never shows its value in its repr, so it cannot leak
into a log line by accident.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterator

# Canonical order: the config's, and the order kinds are named in messages.
KINDS = ("email", "phone", "card", "iban", "ip")
# Detection order: the more specific first, so that no text is claimed twice.
ORDER = ("email", "iban", "card", "ip", "phone")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str = field(repr=False)  # the text as written
    key: str = field(repr=False)  # normalised: the same key gets the same placeholder


# -- checks ----------------------------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits (card numbers)."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# IBAN length per country (SWIFT IBAN registry). Unknown countries are not IBANs.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", re.ASCII)


def iban_ok(compact: str) -> bool:
    """An IBAN without spaces: known country, that country's length, check digits 02..98 and
    the ISO 13616 mod-97 check."""
    s = compact.upper()
    if not _IBAN_SHAPE.fullmatch(s) or IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    if not 2 <= int(s[2:4]) <= 98:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# -- detectors -------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9._%+-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9-])"
)


def _emails(text: str) -> Iterator[Finding]:
    for m in _EMAIL.finditer(text):
        local = m.group().split("@", 1)[0]
        if local.startswith(".") or local.endswith(".") or ".." in local:
            continue
        yield Finding("email", m.start(), m.end(), m.group(), m.group().lower())


# Digits with single spaces or dashes between groups, not part of a longer number or word.
_DIGIT_RUN = re.compile(r"(?<![\w.,])[0-9]+(?:[ -][0-9]+)*(?![\w])", re.ASCII)
_GROUP = re.compile(r"[0-9]+", re.ASCII)


def _cards(text: str) -> Iterator[Finding]:
    """13 to 19 digits, Luhn-valid. In a run of digit groups, a card is a sequence of whole
    groups (the longest valid one from the left), so "card 4111 1111 1111 1111 tel 555..."
    and a 20-digit plain number are both handled. Card numbers are printed in groups of 3 or
    more digits (4-4-4-4, 4-6-5, 4-4-4-4-3; only the last may be shorter: 4-4-4-1), which
    also keeps runs such as "1 2 3 4 ..." from being searched at length."""
    for run in _DIGIT_RUN.finditer(text):
        groups = [(g.start() + run.start(), g.end() + run.start())
                  for g in _GROUP.finditer(run.group())]
        i = 0
        while i < len(groups):
            best, digits = None, ""
            for j in range(i, len(groups)):
                if j > i and groups[j - 1][1] - groups[j - 1][0] < 3:
                    break
                digits += text[groups[j][0]:groups[j][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_ok(digits):
                    best = (j, digits)
            if best is None:
                i += 1
                continue
            j, digits = best
            start, end = groups[i][0], groups[j][1]
            yield Finding("card", start, end, text[start:end], digits)
            i = j + 1


_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}", re.ASCII)
_IBAN_GROUP = re.compile(r" ?([A-Za-z0-9]+)", re.ASCII)


def _ibans(text: str) -> Iterator[Finding]:
    """Country code, check digits, then letters and digits, maybe in groups split by single
    spaces; the longest prefix (in whole groups) that is a valid IBAN."""
    pos = 0
    while (m := _IBAN_START.search(text, pos)) is not None:
        ends, compact, at = [], m.group(), m.end()
        # The first group may go on after the check digits: "DE89370400440532013000".
        tail = re.match(r"[A-Za-z0-9]*", text[at:])
        compact += tail.group()
        at += tail.end()
        ends.append((at, compact))
        while len(compact) < 34 and (g := _IBAN_GROUP.match(text, at)) is not None:
            compact += g.group(1)
            at = g.end()
            ends.append((at, compact))
        found = None
        for end, candidate in reversed(ends):
            if end < len(text) and (text[end].isalnum() or text[end] == "_"):
                continue
            if iban_ok(candidate):
                found = (end, candidate)
                break
        if found is None:
            pos = m.start() + 1
            continue
        end, candidate = found
        yield Finding("iban", m.start(), end, text[m.start():end], candidate.upper())
        pos = end


_IPV4 = re.compile(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w]|\.[0-9])", re.ASCII)
_IPV6_TOKEN = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*", re.ASCII)
MAX_IPV6 = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")  # 45


def _ips(text: str) -> Iterator[Finding]:
    """IPv6, then IPv4 addresses. Loopback and unspecified addresses (127.0.0.1, 0.0.0.0, ::1)
    identify nobody and fill code and docs: they are not reported."""
    for m in _IPV6_TOKEN.finditer(text):
        found = _ipv6(m.group())
        if found is None:
            continue
        end = m.start() + len(found)
        if end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue
        address = ipaddress.IPv6Address(found)
        if not (address.is_loopback or address.is_unspecified):
            yield Finding("ip", m.start(), end, found, address.compressed)
    for m in _IPV4.finditer(text):
        try:
            address = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        if not (address.is_loopback or address.is_unspecified):
            yield Finding("ip", m.start(), m.end(), m.group(), address.compressed)


def _ipv6(token: str) -> str | None:
    """The longest prefix of ``token`` (trailing ':' and '.' dropped) that is an IPv6 address
    worth calling personal data: at least two groups and four hex digits, or an embedded IPv4
    (so code such as ``x[1::2]`` is not an address). No address is longer than MAX_IPV6 characters:
    a longer token is cut to that first (when what follows is only ':' and '.', the prefixes the
    loop would reach), so a run of 100,000 colons costs 45 tries, not 100,000 (hostile input
    must not hold the event loop)."""
    if len(token) > MAX_IPV6:
        if token[MAX_IPV6:].strip(":."):
            return None  # every candidate keeps a character past the longest address
        token = token[:MAX_IPV6]
    while token:
        if token.count(":") >= 2:
            try:
                ipaddress.IPv6Address(token)
            except ValueError:
                pass
            else:
                groups = [g for g in token.split(":") if g]
                hexdigits = sum(len(g) for g in groups if "." not in g)
                if "." in token or (len(groups) >= 2 and hexdigits >= 4):
                    return token
        if token[-1] not in ":.":
            return None
        token = token[:-1]
    return None


# Phone candidates: digits with spaces, dots, dashes, slashes and parentheses between them.
_PHONE = re.compile(r"(?<![\w+@/.-])(?:\+|\()?[0-9][0-9().\ /-]{4,24}[0-9](?![\w@]|[.-][0-9])",
                    re.ASCII)
_SEPARATORS = re.compile(r"[^0-9]+", re.ASCII)
_DATE = re.compile(r"(?<![0-9])(?:[0-9]{4}[./-][0-9]{1,2}[./-][0-9]{1,2}"
                   r"|[0-9]{1,2}[./-][0-9]{1,2}[./-](?:[0-9]{4}|[0-9]{2}))(?![0-9])", re.ASCII)
_NANP = re.compile(r"(?:1[ .-])?(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}", re.ASCII)


def phone_ok(s: str) -> bool:
    """Whether a candidate (trimmed to digits at both ends, maybe with a leading '+' or '(')
    is written like a phone number:

    - international: ``+`` or ``00``, then 7 to 15 digits (E.164);
    - national with a trunk prefix ``0`` (030 1234567, 07911 123456): 9 to 12 digits;
    - an area code in parentheses ((030) 1234567, (555) 123-4567): 9 to 12 digits;
    - North American with separators: 555-123-4567, 555.123.4567, 1 555 123 4567.

    Dates (2024-01-15, 15.01.2024) and separators of more than one symbol are refused.
    """
    digits = "".join(ch for ch in s if ch.isdigit())
    if not 7 <= len(digits) <= 17:  # the cheap test first: 7..15, plus a "00" prefix
        return False
    if _DATE.search(s):
        return False
    if s.count("(") != s.count(")") or s.count("(") > 1:
        return False
    for sep in _SEPARATORS.findall(s.lstrip("+(")):
        if len(sep) > 2 or (len(sep) == 2 and not (sep[0] == ")" or sep[-1] == "(")):
            return False
    if s.startswith("+"):
        return digits[0] != "0" and 7 <= len(digits) <= 15
    if digits.startswith("00"):
        return digits[2:3] not in ("", "0") and 7 <= len(digits) - 2 <= 15
    if s.startswith("("):
        return 9 <= len(digits) <= 12
    if digits.startswith("0"):
        return 9 <= len(digits) <= 12
    return _NANP.fullmatch(s) is not None


def _phones(text: str) -> Iterator[Finding]:
    """Candidates are trimmed in whole digit groups from the right until one passes, so
    "(555) 123-4567 / 2024-01-15" still yields the phone number."""
    for m in _PHONE.finditer(text):
        s = m.group()
        ends, digits = [], 0
        for g in _GROUP.finditer(s):
            digits += g.end() - g.start()
            if digits > 17:
                break
            if digits >= 7:
                ends.append(g.end())
        for end in reversed(ends):
            candidate = s[:end]
            if phone_ok(candidate):
                digits = "".join(ch for ch in candidate if ch.isdigit())
                key = ("+" + digits) if candidate.startswith("+") else digits
                yield Finding("phone", m.start(), m.start() + end, candidate, key)
                break


DETECTORS: dict[str, Callable[[str], Iterator[Finding]]] = {
    "email": _emails,
    "iban": _ibans,
    "card": _cards,
    "ip": _ips,
    "phone": _phones,
}


# Every kind needs one of these: an e-mail address its "@", an IPv6 address its colons, the
# others ASCII digits. Text without any (most prompts) is searched once, not five times.
_NEEDED = re.compile(r"[0-9@:]")


def may_contain(text: str) -> bool:
    """False when ``text`` cannot hold personal data of any kind (find() would find none)."""
    return _NEEDED.search(text) is not None


def find(text: str, kinds: Collection[str] = KINDS) -> list[Finding]:
    """Every finding of the given kinds in ``text``, in text order, without overlaps.

    All detectors run whatever ``kinds`` says, so that text one kind claims is never taken
    by another (a card number is never reported as a phone number when only phones are asked
    for); only the asked-for kinds are returned.
    """
    if not may_contain(text):
        return []
    return _find_all(text, kinds)


def _find_all(text: str, kinds: Collection[str]) -> list[Finding]:
    """find() without its pre-check."""
    claimed: list[Finding] = []  # sorted by start, never overlapping
    starts: list[int] = []
    for kind in ORDER:
        for f in DETECTORS[kind](text):
            at = bisect.bisect_left(starts, f.start)
            if at > 0 and claimed[at - 1].end > f.start:
                continue
            if at < len(claimed) and claimed[at].start < f.end:
                continue
            claimed.insert(at, f)
            starts.insert(at, f.start)
    return [f for f in claimed if f.kind in kinds]
