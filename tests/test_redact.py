"""The masking rule on plain text: every form a reply can give a secret is masked, and a
secret too short to mask withholds the text."""

from __future__ import annotations

import base64
import json

import pytest

from reconciler.errors import outside
from reconciler.redact import MASK, WITHHELD, Masker

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
KEY = json.dumps({"type": "service_account", "private_key_id": "0123456789abcdef",
                  "private_key": PEM}, indent=2)


@pytest.mark.parametrize(("secret", "reply"), [
    ("pass\tword\nwith lines", "bad: pass word with lines"),  # whitespace collapsed
    ("pass\tword\nwith lines", 'bad: "pass\\tword\\nwith lines"'),  # JSON-escaped
    ("pass\tword\nwith lines", "bad: passwordwithlines"),  # whitespace removed
    ('q"uo\'te\\s/slash-long', '{"message": "q\\"uo\'te\\\\s\\/slash-long"}'),  # escaped quotes
    (KEY, json.dumps(json.loads(KEY), separators=(",", ":"))),  # re-serialized compactly
    (KEY, "key id 0123456789abcdef refused"),  # one string value of a JSON key
    (KEY, "line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC is bad"),  # one line of its PEM
    ("s3cret-password", base64.b64encode(b"robot:s3cret-password").decode()),  # Basic
    ("s3cret-password", "basic " + base64.b64encode(b"s3cret-password").decode()),
    ("s3cret-password-that-is-long", "bad value 's3cret-passw...'"),  # cut short upstream
    ("café-password-ü", "bad: caf\\u00e9-password-\\u00fc"),  # \\u escapes
    ("p&ss<word>-long", "bad: p\\u0026ss\\u003cword\\u003e-long"),  # Go's json escapes & < >
    ("p&ss<word>-long", "bad: p\\u0026SS\\u003Cword\\u003E-long".replace("SS", "ss")),
])
def test_each_form_is_masked(secret, reply):
    masked = Masker([secret], username="robot").mask(reply)
    assert MASK in masked
    for piece in ("password", "MIIEvQ", "0123456789", "uo'te", "s3cret", "passw"):
        if piece in secret:
            assert piece not in masked, masked


def test_text_without_the_secret_is_left_alone():
    text = "the registry refused the credentials (401)"
    assert Masker(["hunter2-hunter2"]).mask(text) == text
    assert Masker([]).mask(text) == text


@pytest.mark.parametrize("secret", ["h", "hunter2", " \t x \n", "\x01\x02\x03\x04\x05\x06\x07\x08ab"])
def test_a_secret_with_fewer_than_8_maskable_characters_withholds_the_text(secret):
    assert Masker([secret, "a-long-token-value"]).mask("the API rejected the request") == WITHHELD


def test_show_masks_before_it_escapes_and_clips():
    secret = "CANARY\x1b[2Jsecret-value"
    shown = Masker([secret]).show("\x1b]0;t\x07 " + secret + " tail" * 200, 60)
    assert "CANARY" not in shown and "secret-value" not in shown
    assert shown.startswith("\\x1b]0;t\\x07 ********") and len(shown) == 60
    assert outside("a\u202eb\n", 10) == "a\\u202eb"
