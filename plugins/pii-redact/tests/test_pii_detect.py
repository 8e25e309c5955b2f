"""Detection of each kind of personal data, its checks (Luhn, mod-97, ipaddress) and the
order that keeps one piece of text from being claimed twice."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_pii_redact import detect
from gateway_pii_redact.detect import find, iban_ok, luhn_ok, phone_ok


def found(text: str, kinds=("email", "phone", "card", "iban", "ip")) -> list[tuple[str, str]]:
    return [(f.kind, f.value) for f in find(text, kinds)]


def iban_with_check_digits(country: str, bban: str) -> str:
    """A valid IBAN for ``bban``, its check digits computed (ISO 13616)."""
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


# -- e-mail ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("write to jane.doe@example.com today", "jane.doe@example.com"),
    ("<a+tag@mail.example.co.uk>", "a+tag@mail.example.co.uk"),
    ("ends a sentence: x_y@sub-domain.example.org.", "x_y@sub-domain.example.org"),
    ("UPPER@EXAMPLE.COM", "UPPER@EXAMPLE.COM"),
])
def test_email_found(text, value):
    """Common e-mail address shapes are found, without trailing punctuation."""
    assert found(text) == [("email", value)]


@pytest.mark.parametrize("text", [
    "user@localhost", "@example.com", "a..b@example.com", ".a@example.com", "a@-x.com",
    "name at example dot com", "x@example.c",
])
def test_not_an_email(text):
    """Text without a dotted domain, or with a malformed local part, is not an e-mail address."""
    assert [k for k, _ in found(text) if k == "email"] == []


# -- card numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("number", [
    "4111111111111111",          # Visa test number, 16 digits
    "4111 1111 1111 1111",       # with spaces
    "4111-1111-1111-1111",       # with dashes
    "5500 0000 0000 0004",       # Mastercard test number
    "3782 822463 10005",         # Amex, 15 digits in 4-6-5 groups
    "4222222222222",             # 13 digits, the shortest
    "6011000990139424",          # Discover
    "4000 0000 0000 0000 006",   # 19 digits, the longest
])
def test_card_found(number):
    """Luhn-valid numbers of 13 to 19 digits are cards, with or without spaces and dashes."""
    assert found(f"card: {number}, thanks") == [("card", number)]


@pytest.mark.parametrize("number", [
    "4111111111111112",          # Luhn fails (last digit off by one)
    "4111111111111121",          # two digits swapped
    "411111111111",              # 12 digits: too short
    "41111111111111111115",      # 20 digits: too long even though Luhn holds
    "4111  1111 1111 1111",      # two spaces are not one separator
])
def test_not_a_card(number):
    """Numbers failing Luhn, too short, too long or oddly separated are not cards."""
    assert [k for k, _ in found(number) if k == "card"] == []


def test_luhn_edge_cases():
    """Luhn: doubling digits over 9, a zero check digit, and non-digits."""
    assert luhn_ok("79927398713")        # the textbook example
    assert not luhn_ok("79927398710")
    assert luhn_ok("0000000000000")      # all zeros sums to 0
    assert luhn_ok("18")                 # 1*2 + 8 = 10
    assert not luhn_ok("")
    assert not luhn_ok("4111 1111")      # only plain digits are checked
    assert not luhn_ok("١١١١")           # Arabic-Indic digits are not ASCII digits
    assert luhn_ok("41111111111111111115")  # 20 digits: only the length keeps it from being a card


def test_card_inside_longer_digit_groups():
    """A card followed by more digit groups is still found, in whole groups only."""
    text = "card 4111 1111 1111 1111 555 then"
    assert found(text, ["card"]) == [("card", "4111 1111 1111 1111")]


def test_card_in_a_longer_plain_number_is_not_found():
    """A valid card number inside a longer run of plain digits is not a card."""
    assert found("id 94111111111111111 end", ["card"]) == []


# -- IBANs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("iban", [
    "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013000",
    "GB82 WEST 1234 5698 7654 32",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00",
    "NO93 8601 1117 947",                 # the shortest (15)
    "MT84 MALT 0110 0001 2345 MTLC AST0 01S",  # 31 characters
    "gb82 west 1234 5698 7654 32",        # lower case
])
def test_iban_found(iban):
    """IBANs with a valid mod-97 check and their country's length are found, grouped or not."""
    assert found(f"pay to {iban} please") == [("iban", iban)]


@pytest.mark.parametrize("iban", [
    "DE89 3704 0044 0532 0130 01",   # one digit changed: mod 97 fails
    "DE98 3704 0044 0532 0130 00",   # check digits swapped
    "DE89 3704 0044 0532 0130 0",    # one character short for DE
    "XX89 3704 0044 0532 0130 00",   # unknown country
])
def test_not_an_iban(iban):
    """Wrong check digits, wrong length for the country or an unknown country: not an IBAN."""
    assert [k for k, _ in found(iban) if k == "iban"] == []


def test_iban_check_digits_outside_02_to_98_are_refused():
    """Check digits 00, 01 and 99 are never valid, even when mod 97 happens to give 1."""
    bban = next(b for b in (f"3704004405320{n:05d}" for n in range(100000))
                if iban_with_check_digits("DE", b)[2:4] in ("97", "98"))
    valid = iban_with_check_digits("DE", bban)
    assert iban_ok(valid)
    alias = "DE" + {"97": "00", "98": "01"}[valid[2:4]] + bban
    number = int("".join(str(int(c, 36)) for c in alias[4:] + alias[:4]))
    assert number % 97 == 1  # the arithmetic alone would accept it
    assert not iban_ok(alias)


def test_iban_followed_by_upper_case_words():
    """The IBAN ends where its country's length ends, not at the next upper-case word."""
    assert found("DE89 3704 0044 0532 0130 00 IS MINE") == [("iban", "DE89 3704 0044 0532 0130 00")]


def test_two_ibans_in_one_sentence():
    """Two IBANs separated by a word are two findings."""
    text = "from DE89 3704 0044 0532 0130 00 to GB82 WEST 1234 5698 7654 32"
    assert [k for k, _ in found(text)] == ["iban", "iban"]


# -- IP addresses ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("server 192.168.1.10 is down", "192.168.1.10"),
    ("connect to 10.0.0.1:8080", "10.0.0.1"),
    ("the end: 8.8.8.8.", "8.8.8.8"),
    ("v6 2001:db8::8a2e:370:7334 here", "2001:db8::8a2e:370:7334"),
    ("link-local fe80::1 only", "fe80::1"),
    ("full 2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
    ("mapped ::ffff:192.0.2.1 address", "::ffff:192.0.2.1"),
    ("url http://[2001:db8::1]:443/", "2001:db8::1"),
])
def test_ip_found(text, value):
    """IPv4 and IPv6 addresses are found and validated."""
    assert found(text) == [("ip", value)]


@pytest.mark.parametrize("text", [
    "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "at 12:30:45 sharp", "x[1::2]",
    "std::vector", "a::", "::1", "2001:db8:::1", "listen on 127.0.0.1:8080", "bind 0.0.0.0",
    "loopback 0:0:0:0:0:0:0:1", "any ::",
])
def test_not_an_ip(text):
    """Bad octets, versions, times, code, loopback and unspecified addresses are not reported."""
    assert [k for k, _ in found(text) if k == "ip"] == []


# -- phone numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize("number", [
    "+49 30 1234567", "+1 (555) 123-4567", "+44 7911 123456", "+33 1 23 45 67 89",
    "0049 30 1234567", "030 1234567", "07911 123456", "(030) 1234567", "(555) 123-4567",
    "555-123-4567", "555.123.4567", "1 555 123 4567", "+49 (0)30 1234567", "0301234567",
])
def test_phone_found(number):
    """International, national (trunk 0), area-code and North American formats are phones."""
    assert found(f"call {number} now") == [("phone", number)]


@pytest.mark.parametrize("text", [
    "2024-01-15", "15.01.2024", "1 000 000", "12345678", "100 200 300 400", "v1.2.3.4567",
    "+0 123 456 789", "order 5551234567", "555 - 123 - 4567", "call 12 34",
])
def test_not_a_phone(text):
    """Dates, amounts, plain numbers and odd separators are not phone numbers."""
    assert [k for k, _ in found(text) if k == "phone"] == []


def test_phone_trimmed_before_a_date():
    """A candidate running into a date is trimmed back to the phone number."""
    assert found("(555) 123-4567 / 2024-01-15", ["phone"]) == [("phone", "(555) 123-4567")]


def test_phone_ok_digit_counts():
    """International numbers have 7 to 15 digits; national ones 9 to 12."""
    assert phone_ok("+683 4002")
    assert not phone_ok("+123 456")
    assert phone_ok("+123 456 789 012 345")
    assert not phone_ok("+123 456 789 012 3456")
    assert not phone_ok("030 12345")
    assert not phone_ok("030 1234 5678 901")


# -- order and overlaps ----------------------------------------------------------------------

def test_cards_and_ibans_before_phones():
    """A card number or IBAN is never also reported as a phone, even when only phones are asked."""
    text = "card 4111 1111 1111 1111 iban DE89 3704 0044 0532 0130 00"
    assert [k for k, _ in found(text)] == ["card", "iban"]
    assert found(text, ["phone"]) == []


def test_digits_of_an_email_are_not_a_phone():
    """Digits inside an e-mail address belong to the address."""
    assert found("mail a.0301234567@example.com", ["phone"]) == []
    assert found("mail a.0301234567@example.com") == [("email", "a.0301234567@example.com")]


def test_ip_is_not_a_phone():
    """An IPv4 address is an IP, not a phone number."""
    assert found("host 192.168.100.200") == [("ip", "192.168.100.200")]


def test_findings_are_in_text_order_and_kinds_filter():
    """Findings come in text order, and only the asked kinds are returned."""
    text = "ip 10.1.2.3, mail a@b.example, tel +49 30 1234567, card 4111111111111111"
    assert [k for k, _ in found(text)] == ["ip", "email", "phone", "card"]
    assert [k for k, _ in found(text, ["email", "card"])] == ["email", "card"]


def test_a_finding_repr_never_shows_the_value():
    """A Finding's repr names the kind and position only."""
    f = find("mail jane@example.com")[0]
    assert "jane" not in repr(f)


# -- the pre-check ---------------------------------------------------------------------------

def test_text_without_digits_at_signs_or_colons_is_searched_once():
    """find() skips the detectors for text without an ASCII digit, "@" or ":" (every kind
    needs one): an IPv6 address written in letters only is still found, and on random text
    made of the characters personal data is written with, find() finds exactly what the
    detectors find."""
    import random

    from gateway_pii_redact.detect import _find_all

    assert found("host abcd:ef::beef:cafe here") == [("ip", "abcd:ef::beef:cafe")]
    assert found("Say hello, nothing to see.") == []
    kinds = ("email", "phone", "card", "iban", "ip")
    rng = random.Random(14)
    # What the pre-check lets through unsearched: the detectors find nothing there either
    # (hex letters, separators, non-ASCII digits and a fullwidth colon included).
    without = "abcdefABCDEFxyzDEGB .-+()/_%\u0661\u0662\u0663\uff1a\uff10\uff11"
    for _ in range(3000):
        text = "".join(rng.choice(without) for _ in range(rng.randrange(1, 40)))
        assert _find_all(text, kinds) == [] == find(text), text
    with_ = without + "0123456789@:"
    for _ in range(1000):
        text = "".join(rng.choice(with_) for _ in range(rng.randrange(1, 40)))
        assert find(text) == _find_all(text, kinds), text


def _ipv6_before(token: str) -> str | None:
    """detect._ipv6 as it was before tokens were cut to the longest address (the reference)."""
    import ipaddress

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


@given(st.text(alphabet="0123456789abcdefABCDEF:.", max_size=80))
def test_cutting_long_tokens_finds_the_same_addresses(token):
    assert detect._ipv6(token) == _ipv6_before(token)


@pytest.mark.parametrize("text, addresses", [
    (":" * 200_000, []),
    ("fe80::1" + ":" * 200_000, [("ip", "fe80::1")]),
    ("2001:db8::1" + "." * 200_000, [("ip", "2001:db8::1")]),
])
def test_a_run_of_separators_is_read_in_linear_time(text, addresses):
    """A prompt of 200,000 colons took minutes (every shorter prefix was parsed again as an
    address), holding the event loop: now the tries stop at the longest possible address."""
    started = time.monotonic()
    assert found(text, ("ip",)) == addresses
    assert time.monotonic() - started < 10
