"""Image references for `tests:`: name:tag or name@sha256:<64 hex>, per the grammar of
the distribution project (github.com/distribution/reference):

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [domain "/"] path-component ["/" path-component]*
    domain      := host [":" port]
    path-component := [a-z0-9]+ (separator [a-z0-9]+)*    separator := [_.] | "__" | "-"+
    tag         := [\\w][\\w.-]{0,127}

regsync requires a tag or a digest: a test must name exactly what should be pullable.
This is the one parser of image references: the OCI pull check (``oci.manifest_ref``)
and the sandbox read references through it too, with ``default_tag="latest"``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)  # Go's \w: ASCII only
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_NAME = 255


class InvalidImageRef(ValueError):
    """The text is not an image reference regsync accepts; ``str()`` says why."""


class ImageRef(NamedTuple):  # not a frozen dataclass: defining one costs ~0.8 ms per run
    name: str  # including the domain when one was written
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _looks_like_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first != first.lower()


def is_component(text: str) -> bool:
    """Whether ``text`` is one valid path component of a repository name."""
    return _COMPONENT.match(text) is not None


def split_domain(name: str) -> tuple[str | None, str]:
    """(registry host, repository path) of a parsed name; the host is None when the
    first component does not look like one (``acme/api``, ``library/nginx``)."""
    first, sep, rest = name.partition("/")
    if sep and _looks_like_domain(first):
        return first, rest
    return None, name


def parse(text: str, *, default_tag: str | None = None) -> ImageRef:
    """Parse ``text``; raises ``InvalidImageRef`` with a message a person can act on.
    Without a tag or digest it is refused, unless ``default_tag`` stands in."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidImageRef("image reference is empty; write name:tag or name@sha256:<digest>")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidImageRef(f'image reference "{text.strip()}" must not contain spaces')
    if "://" in text:
        raise InvalidImageRef(f'image reference "{text}" must not have a scheme; write repository/name:tag')
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidImageRef(
                f'digest "{digest}" of "{text}" must be sha256: followed by 64 lowercase hex digits'
            )
    name, tag = rest, None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:  # a colon after the last slash starts the tag (before it: a port)
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidImageRef(
                f'tag "{tag}" of "{text}" may hold only letters, digits, "_", "." and "-" '
                '(at most 128, not starting with "." or "-")'
            )
    _check_name(name, text)
    if tag is None and digest is None and default_tag is not None:
        tag = default_tag
    if tag is None and digest is None:
        raise InvalidImageRef(
            f'"{text}" has no tag or digest; write {name}:<tag> or {name}@sha256:<64 hex digits>'
        )
    return ImageRef(name=name, tag=tag, digest=digest)


def _check_name(name: str, text: str) -> None:
    if not name:
        raise InvalidImageRef(f'"{text}" has no repository name')
    if len(name) > _MAX_NAME:
        raise InvalidImageRef(f"repository name of \"{text}\" is longer than {_MAX_NAME} characters")
    parts = name.split("/")
    if len(parts) > 1 and _looks_like_domain(parts[0]):
        if not _DOMAIN.match(parts[0]):
            raise InvalidImageRef(f'registry host "{parts[0]}" of "{text}" is not a valid host[:port]')
        parts = parts[1:]
    for part in parts:
        if _COMPONENT.match(part):
            continue
        if part != part.lower() and _COMPONENT.match(part.lower()):
            raise InvalidImageRef(f'repository name "{name}" must be lowercase')
        if not part:
            raise InvalidImageRef(
                f'repository name "{name}" has an empty path component (//, or a leading or trailing /)'
            )
        raise InvalidImageRef(
            f'path component "{part}" of "{text}" is invalid: use lowercase letters and digits, '
            'separated by ".", "_", "__" or "-"'
        )


def problem(text) -> str | None:
    """Why ``text`` is not a valid reference, or None when it is."""
    try:
        parse(text)
    except InvalidImageRef as exc:
        return str(exc)
    return None
