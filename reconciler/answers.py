"""Reading the Vendor API's answers: the contract's JSON shapes, each departure from
them an ``APIError`` that shows the start of the body, and the API's own message from
an error answer. Whatever the API said is masked before it is clipped (``redact``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.errors import APIError
from reconciler.model import RemoteRegistry
from reconciler.redact import Masker

if TYPE_CHECKING:  # the transport imports httpx; these functions only read its answers
    from reconciler.transport import Answer

MIB = 1 << 20
EXCERPT = 120  # characters of a body shown in an error
MESSAGE = 500  # characters of the API's own message
_STRING_FIELDS = ("slug", "provider", "endpoint", "authType", "username", "teamId",
                  "createdAt", "updatedAt", "lastUsedAt")


def json_object(answer: Answer, what: str, masker: Masker) -> dict:
    """The body as a JSON object, or the error that says why it is not one."""
    if not answer.complete:
        raise shape(answer, what, f"larger than the {_size(answer.limit)} limit", masker)
    try:
        data = answer.json()
    except (ValueError, UnicodeDecodeError):
        raise shape(answer, what, "not JSON", masker) from None
    except RecursionError:
        raise shape(answer, what, "nested too deep", masker) from None
    if not isinstance(data, dict):
        raise shape(answer, what, "not a JSON object", masker)
    return data


def registry(answer: Answer, what: str, masker: Masker) -> RemoteRegistry:
    data = json_object(answer, what, masker).get("external_registry")
    if not isinstance(data, dict):
        raise shape(answer, what, "no 'external_registry' object", masker)
    return _remote(answer, what, data, masker)


def registries(answer: Answer, what: str, masker: Masker) -> list[RemoteRegistry]:
    body = json_object(answer, what, masker)
    if "external_registries" not in body:
        # Not an empty team ({"external_registries": null} is): something that is not
        # the Vendor API answered, and taking it as empty would plan to create everything.
        raise shape(answer, what, "no 'external_registries' key", masker)
    items = body["external_registries"]
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise shape(answer, what, "'external_registries' is not a list of objects", masker)
    return [_remote(answer, what, item, masker) for item in items]


def _remote(answer: Answer, what: str, data: dict, masker: Masker) -> RemoteRegistry:
    """A registry from the API; a documented field of the wrong type is refused
    (a number taken as updatedAt would crash the plan and corrupt the state file).
    Missing fields, nulls and fields the contract does not name are fine."""
    for name in _STRING_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise shape(answer, what, f"a registry's {name!r} is not a string", masker)
    app_ids = data.get("appIds")
    if app_ids is not None and not (
        isinstance(app_ids, list) and all(isinstance(x, str) for x in app_ids)
    ):
        raise shape(answer, what, "a registry's 'appIds' is not a list of strings", masker)
    if data.get("isReplicated") is not None and not isinstance(data["isReplicated"], bool):
        raise shape(answer, what, "a registry's 'isReplicated' is not a boolean", masker)
    return RemoteRegistry.from_api(data)


def shape(answer: Answer, what: str, why: str, masker: Masker) -> APIError:
    return APIError(
        f"{what}: the API answered {answer.status_code} with a body that is not the "
        f"contract's JSON ({why}): {excerpt(answer, masker)}",
        status=answer.status_code,
    )


def _size(limit: int) -> str:
    return f"{limit / MIB:g} MiB" if limit >= MIB // 16 else f"{limit} bytes"


def api_message(answer: Answer, masker: Masker) -> str:
    """The API's ``message`` from any of the contract's error shapes, masked, escaped
    and clipped; else ''."""
    if not answer.complete:
        return ""
    try:
        data = answer.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    if not isinstance(data, dict):
        return ""
    message = data.get("message")
    if not isinstance(message, str) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
    if not isinstance(message, str) and isinstance(data.get("error"), str):
        message = data["error"]
    return masker.show(message, MESSAGE) if isinstance(message, str) else ""


def excerpt(answer: Answer, masker: Masker) -> str:
    """The start of the body, masked over a wide window before it is clipped."""
    text = answer.content[:65536].decode("utf-8", "replace")
    return repr(masker.show(text, EXCERPT)) if text.strip() else "empty body"
