"""AWS Signature V4 against AWS's published values: the aws-sig-v4-test-suite (credentials
AKIDEXAMPLE, 20150830T123600Z, us-east-1, service "service") and the IAM examples of the
SigV4 documentation."""

from __future__ import annotations

import pytest

from gateway.providers import sigv4
from gateway.providers.sigv4 import Credentials, canonical_request, canonical_uri, sign

from .sigv4_verify import verify

SUITE = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
DATE = "20150830T123600Z"
HOST = "example.amazonaws.com"


@pytest.mark.parametrize("name, method, path, query, headers, body, signature", [
    ("get-vanilla", "GET", "/", "", {}, b"",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("post-vanilla", "POST", "/", "", {}, b"",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ("get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", {}, b"",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("get-vanilla-empty-query-key", "GET", "/", "Param1=value1", {}, b"",
     "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"),
    ("post-vanilla-query", "POST", "/", "Param1=value1", {}, b"",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    ("get-utf8", "GET", "/ሴ", "", {}, b"",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
    ("get-space", "GET", "/example space/", "", {}, b"",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"),
    ("post-x-www-form-urlencoded", "POST", "/", "", {"Content-Type": "application/x-www-form-urlencoded"},
     b"Param1=value1", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
])
def test_aws_test_suite(name, method, path, query, headers, body, signature):
    """The signature matches the value AWS publishes for this request of the test suite."""
    signed = sign(method, HOST, path, query, headers, body, SUITE, "us-east-1", "service", date=DATE)
    names = "content-type;host;x-amz-date" if headers else "host;x-amz-date"
    assert signed["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={names}, Signature={signature}")


def test_post_sts_header_before():
    """A session token is sent as X-Amz-Security-Token and signed (suite: post-sts-header-before)."""
    token = ("AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeo"
             "IYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0w"
             "q5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypN"
             "C9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==")
    creds = Credentials(SUITE.access_key, SUITE.secret_key, token)
    signed = sign("POST", HOST, "/", "", {}, b"", creds, "us-east-1", "service", date=DATE)
    assert signed["X-Amz-Security-Token"] == token
    assert signed["Authorization"].endswith(
        "SignedHeaders=host;x-amz-date;x-amz-security-token, "
        "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead")


def test_get_vanilla_canonical_request_and_string_to_sign():
    """The intermediate texts equal the suite's get-vanilla .creq and .sts files."""
    headers = {"Host": HOST, "X-Amz-Date": DATE}
    creq = canonical_request("GET", "/", "", headers, ["host", "x-amz-date"], sigv4.sha256_hex(b""))
    assert creq == ("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                    "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    sts = sigv4.string_to_sign(DATE, sigv4.scope(DATE, "us-east-1", "service"), creq)
    assert sts == ("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
                   "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")


def test_documentation_iam_examples():
    """The signing-key derivation and the ListUsers request of the SigV4 documentation."""
    key = sigv4.signing_key(SUITE.secret_key, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    signed = sign("GET", "iam.amazonaws.com", "/", "Action=ListUsers&Version=2010-05-08",
                  {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, b"", SUITE,
                  "us-east-1", "iam", date=DATE)
    assert signed["Authorization"].endswith(
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")


def test_bedrock_model_ids_are_encoded_twice():
    """A path sent with %3A is signed with %253A, as botocore does for non-S3 services."""
    assert canonical_uri("/model/anthropic.claude-v2%3A1/converse") == "/model/anthropic.claude-v2%253A1/converse"
    assert canonical_uri("") == "/"


def test_header_values_are_trimmed_and_folded():
    """Header values lose outer whitespace and inner runs fold to one space."""
    assert sigv4.canonical_headers({"My-Header": "  a   b  c "}, ["my-header"]) == "my-header:a b c\n"


def test_verify_accepts_and_refuses():
    """verify accepts its own signatures and names the reason for each kind of bad request."""
    creds = Credentials("AKID", "secret")
    headers = sign("POST", "h:1", "/model/m/converse", "", {"Content-Type": "application/json"},
                   b"{}", creds, "us-west-2", "bedrock")
    assert verify("POST", "/model/m/converse", "", headers, b"{}", creds) is None
    assert "does not match" in verify("POST", "/model/m/converse", "", headers, b"{ }", creds)
    assert "does not match" in verify("POST", "/model/m/converse", "", headers, b"{}", Credentials("AKID", "other"))
    assert "token" in verify("POST", "/model/m/converse", "", headers, b"{}", Credentials("OTHER", "secret"))
    no_auth = {k: v for k, v in headers.items() if k != "Authorization"}
    assert verify("POST", "/model/m/converse", "", no_auth, b"{}", creds) == "Missing Authentication Token"


def test_credentials_resolution():
    """Config credentials win; else AWS_* variables; else None. The repr hides the secret."""
    env = {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_SESSION_TOKEN": "t"}
    assert Credentials.resolve({"aws_access_key_id": "A", "aws_secret_access_key": "S"}, env) == Credentials("A", "S")
    assert Credentials.resolve({}, env) == Credentials("ENVKEY", "envsecret", "t")
    assert Credentials.resolve({}, {}) is None
    assert "envsecret" not in repr(Credentials.resolve({}, env))
