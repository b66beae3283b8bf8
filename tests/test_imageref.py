"""Image references for `tests:`: a tag or a digest is required; messages say what is wrong."""

from __future__ import annotations

import pytest

from reconciler.imageref import ImageRef, InvalidImageRef, parse, problem

DIGEST = "sha256:" + "0123456789abcdef" * 4


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
        ("localhost:5000/app", '"localhost:5000/app" has no tag or digest; write localhost:5000/app:<tag> or localhost:5000/app@sha256:<64 hex digits>'),
        ("acme/Api:v1", 'repository name "acme/Api" must be lowercase'),
        ("acme/api:-v1", 'tag "-v1" of "acme/api:-v1" may hold only letters, digits, "_", "." and "-" (at most 128, not starting with "." or "-")'),
        ("acme/api:" + "a" * 129, 'tag "' + "a" * 129 + '" of "acme/api:' + "a" * 129 + '" may hold only letters, digits, "_", "." and "-" (at most 128, not starting with "." or "-")'),
        ("acme/api@sha256:abc", 'digest "sha256:abc" of "acme/api@sha256:abc" must be sha256: followed by 64 lowercase hex digits'),
        ("acme/api@md5:" + "0" * 32, 'digest "md5:' + "0" * 32 + '" of "acme/api@md5:' + "0" * 32 + '" must be sha256: followed by 64 lowercase hex digits'),
        ("acme//api:v1", 'repository name "acme//api" has an empty path component (//, or a leading or trailing /)'),
        ("acme/a..b:v1", 'path component "a..b" of "acme/a..b:v1" is invalid: use lowercase letters and digits, separated by ".", "_", "__" or "-"'),
        ("acme/api_:v1", 'path component "api_" of "acme/api_:v1" is invalid: use lowercase letters and digits, separated by ".", "_", "__" or "-"'),
        ("https://ghcr.io/acme/api:v1", 'image reference "https://ghcr.io/acme/api:v1" must not have a scheme; write repository/name:tag'),
        ("acme/api :v1", 'image reference "acme/api :v1" must not contain spaces'),
        ("", "image reference is empty; write name:tag or name@sha256:<digest>"),
        (":v1", '":v1" has no repository name'),
        ("bad_host:99/x:v1", 'registry host "bad_host:99" of "bad_host:99/x:v1" is not a valid host[:port]'),
        # the tag grammar's \w is ASCII (Go's regexp); Python's would take any letter or digit
        ("acme/api:v\u00e9", 'tag "v\u00e9" of "acme/api:v\u00e9" may hold only letters, digits, "_", "." and "-" (at most 128, not starting with "." or "-")'),
        ("acme/api:\u0663", 'tag "\u0663" of "acme/api:\u0663" may hold only letters, digits, "_", "." and "-" (at most 128, not starting with "." or "-")'),
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
