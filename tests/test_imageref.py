"""Image references for `tests:`: a tag or a digest is required; messages say what is wrong."""

from __future__ import annotations

import pytest

from reconciler.imageref import ImageRef, InvalidImageRef, parse, problem

DIGEST = "sha256:" + "0123456789abcdef" * 4
# The rules as the messages state them.
TAG_RULE = 'may hold only letters, digits, "_", "." and "-" (at most 128, not starting with "." or "-")'
COMPONENT_RULE = 'is invalid: use lowercase letters and digits, separated by ".", "_", "__" or "-"'
DIGEST_RULE = "must be sha256: followed by 64 lowercase hex digits"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme/api:v1.0.1", ImageRef("acme/api", "v1.0.1")),
        ("api:latest", ImageRef("api", "latest")),
        (f"acme/api@{DIGEST}", ImageRef("acme/api", None, DIGEST)),
        (f"acme/api:v1@{DIGEST}", ImageRef("acme/api", "v1", DIGEST)),
        ("localhost:5000/team/app:1", ImageRef("localhost:5000/team/app", "1")),
        ("ghcr.io/acme/my__svc.x-y:RC_1", ImageRef("ghcr.io/acme/my__svc.x-y", "RC_1")),
        ("[::1]:5000/app:v2", ImageRef("[::1]:5000/app", "v2")),
    ],
)
def test_valid_references(text, expected):
    assert parse(text) == expected
    assert str(parse(text)) == text
    assert problem(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acme/api", '"acme/api" has no tag or digest; write acme/api:<tag> or acme/api@sha256:<64 hex digits>'),
        ("localhost:5000/app", '"localhost:5000/app" has no tag or digest; '
         "write localhost:5000/app:<tag> or localhost:5000/app@sha256:<64 hex digits>"),
        ("acme/Api:v1", 'repository name "acme/Api" must be lowercase'),
        ("acme/api:-v1", f'tag "-v1" of "acme/api:-v1" {TAG_RULE}'),
        ("acme/api:" + "a" * 129, 'tag "' + "a" * 129 + '" of "acme/api:' + "a" * 129 + f'" {TAG_RULE}'),
        ("acme/api@sha256:abc", f'digest "sha256:abc" of "acme/api@sha256:abc" {DIGEST_RULE}'),
        ("acme/api@md5:" + "0" * 32, 'digest "md5:' + "0" * 32 + '" of "acme/api@md5:' + "0" * 32 + f'" {DIGEST_RULE}'),
        ("acme//api:v1", 'repository name "acme//api" has an empty path component (//, or a leading or trailing /)'),
        ("acme/a..b:v1", f'path component "a..b" of "acme/a..b:v1" {COMPONENT_RULE}'),
        ("acme/api_:v1", f'path component "api_" of "acme/api_:v1" {COMPONENT_RULE}'),
        ("https://ghcr.io/acme/api:v1",
         'image reference "https://ghcr.io/acme/api:v1" must not have a scheme; write repository/name:tag'),
        ("acme/api :v1", 'image reference "acme/api :v1" must not contain spaces'),
        ("", "image reference is empty; write name:tag or name@sha256:<digest>"),
        (":v1", '":v1" has no repository name'),
        ("bad_host:99/x:v1", 'registry host "bad_host:99" of "bad_host:99/x:v1" is not a valid host[:port]'),
        # the tag grammar's \w is ASCII (Go's regexp); Python's would take any letter or digit
        ("acme/api:v\u00e9", f'tag "v\u00e9" of "acme/api:v\u00e9" {TAG_RULE}'),
        ("acme/api:\u0663", f'tag "\u0663" of "acme/api:\u0663" {TAG_RULE}'),
    ],
)
def test_invalid_references(text, message):
    with pytest.raises(InvalidImageRef) as info:
        parse(text)
    assert str(info.value) == message
    assert problem(text) == message


def test_name_length_is_bounded():
    name = "a/" * 127 + "ab"
    assert problem(name + ":v1") == f'repository name of "{name}:v1" is longer than 255 characters'
