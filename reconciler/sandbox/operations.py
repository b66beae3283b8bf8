"""The Vendor API operations of the sandbox, one function each.

Each takes ``(sandbox, slug, body: bytes, query: dict)`` and returns
``(status, json_body_or_None)``; a :class:`BadRequest` becomes a 400 ``{"message"}``.
HTTP, auth and faults are ``server.py``'s business.
"""

from __future__ import annotations

import json

from reconciler.providers import PROVIDERS
from reconciler.sandbox.store import DuplicateSlug
from reconciler.secretvalue import Secret

#: The test endpoint's status when the upstream registry gave no answer at all
#: (the OCI check's status 0), as a gateway would say.
UNREACHABLE_STATUS = 502

class BadRequest(Exception):
    """A 400 whose text names the field (never a value)."""


def forbidden(message: str) -> dict:
    return {"error": {"message": message, "messageCode": "FORBIDDEN"}}


def _not_found(slug: str) -> tuple[int, dict]:
    return 404, {"message": f'external registry "{slug}" not found'}


def parse_json(body: bytes, *, what: str = "the request body"):
    """``body`` as JSON; BadRequest when it is not JSON, is nested too deeply, or holds
    a string that is not Unicode (a lone surrogate such as ``"\\ud800"``)."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except ValueError:
        raise BadRequest(f"{what} is not valid JSON") from None
    pending = [data]
    while pending:  # iterative: the depth json.loads allowed would overflow a recursion
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(
                    f"{what} holds a string that is not valid Unicode (a lone surrogate escape)"
                ) from None
    return data


def _json_body(body: bytes) -> dict:
    if not body.strip():
        return {}
    data = parse_json(body)
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def _text(data: dict, name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _flag(data: dict, name: str) -> bool:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return bool(value)


def _app_ids(data: dict) -> tuple[str, ...] | None:
    value = data.get("appIds")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest("appIds must be a list of app IDs")
    return tuple(value)


def _provider_auth(provider: str, auth_type: str | None, current: str | None = None) -> str:
    """The authType to store; 400 for an unknown provider or a mismatched authType."""
    if provider not in PROVIDERS:
        raise BadRequest(f'unknown provider "{provider}" (one of {", ".join(PROVIDERS)})')
    allowed = [m.api_auth_type for m in PROVIDERS[provider].auth_modes.values()]
    if auth_type is None:
        return current if current in allowed else allowed[0]
    if auth_type not in allowed:
        raise BadRequest(
            f'authType "{auth_type}" is not valid for provider "{provider}" '
            f'(one of {", ".join(allowed)})'
        )
    return auth_type


def _scrub(text: str, password: Secret) -> str:
    value = password.reveal()
    return text.replace(value, "********") if value else text


def _login_problem(sandbox, endpoint: str, username: str, password: Secret) -> str | None:
    """None when the upstream registry accepts the login, else the 400 message."""
    from reconciler import oci

    try:
        check = oci.check_login(endpoint, username=username, password=password,
                                timeout=sandbox.upstream_timeout,
                                deadline=sandbox.upstream_deadline)
    except Exception as exc:  # noqa: BLE001 - any failure is a failed validation
        return f"could not validate the credentials against {endpoint}: {type(exc).__name__}"
    if check.outcome == "ok":
        return None
    if check.outcome == "unreachable":
        return (f"could not validate the credentials: the registry at {endpoint} is "
                f"unreachable: {_scrub(check.error, password)}")
    return (f"the registry at {endpoint} refused the credentials (upstream status "
            f"{check.status}): {_scrub(check.error, password)}")


def _copied_password(sandbox, data: dict, endpoint: str):
    """(the original registry, its saved password) for ``originalSlug``: only for that
    registry's own endpoint."""
    original = _text(data, "originalSlug", required=True)
    saved = sandbox.store.get(original)
    if saved is None:
        raise BadRequest(f'originalSlug "{original}" is not an external registry')
    if endpoint != saved.endpoint:
        raise BadRequest(
            f'copyPassword needs the endpoint of "{original}" ({saved.endpoint}); a saved '
            "password is only sent to the endpoint it was saved for (send a password instead)"
        )
    secret = sandbox.store.password(original)
    if secret is None:  # deleted meanwhile
        raise BadRequest(f'originalSlug "{original}" is not an external registry')
    return saved, secret


def _list(sandbox, slug, body, query):
    registries = [r.to_api(sandbox.store.team_id) for r in sandbox.store.list()]
    return 200, {"external_registries": registries or None}


def _create(sandbox, slug, body, query):
    data = _json_body(body)
    endpoint = _text(data, "endpoint", required=True)
    username = _text(data, "username", required=True)
    secret = None
    if _flag(data, "copyPassword") and not data.get("password"):
        _, secret = _copied_password(sandbox, data, endpoint)
    if secret is None:
        secret = Secret(_text(data, "password", required=True))
    provider = _text(data, "provider") or "other"
    auth_type = _provider_auth(provider, _text(data, "authType"))
    app_ids = _app_ids(data) or ()
    slug = _text(data, "slug") or endpoint
    duplicate = f'an external registry with slug "{slug}" already exists'
    if sandbox.store.get(slug) is not None:
        raise BadRequest(duplicate)
    if not _flag(data, "skipValidation"):
        problem = _login_problem(sandbox, endpoint, username, secret)
        if problem:
            raise BadRequest(problem)
    try:
        registry = sandbox.store.create(slug=slug, provider=provider, endpoint=endpoint,
                                        auth_type=auth_type, username=username,
                                        password=secret, app_ids=app_ids)
    except DuplicateSlug:
        raise BadRequest(duplicate) from None
    return 201, {"external_registry": registry.to_api(sandbox.store.team_id)}


def _update(sandbox, slug, body, query):
    data = _json_body(body)
    current = sandbox.store.get(slug)
    if current is None:
        return _not_found(slug)
    provider = _text(data, "provider")
    auth_type = _provider_auth(provider or current.provider, _text(data, "authType"),
                               current.auth_type)
    endpoint = _text(data, "endpoint")
    username = _text(data, "username")
    password = _text(data, "password")
    secret = None if password is None else Secret(password)
    app_ids = _app_ids(data)
    if endpoint is not None and endpoint != current.endpoint and secret is None:
        raise BadRequest(
            f'changing the endpoint of external registry "{slug}" needs its password: a '
            "saved password is only sent to the endpoint it was saved for"
        )
    if secret is not None and not _flag(data, "skipValidation"):
        problem = _login_problem(sandbox, endpoint or current.endpoint,
                                 username or current.username, secret)
        if problem:
            raise BadRequest(problem)
    registry = sandbox.store.update(slug, password=secret, provider=provider,
                                    endpoint=endpoint, auth_type=auth_type,
                                    username=username, app_ids=app_ids)
    if registry is None:
        return _not_found(slug)
    return 200, {"external_registry": registry.to_api(sandbox.store.team_id)}


def _delete(sandbox, slug, body, query):
    if not sandbox.store.delete(slug):
        return _not_found(slug)
    return 204, None


def _saved_for_test(sandbox, slug: str | None, endpoint: str | None):
    """The saved registry a test body without credentials names: by ``slug``, else by
    ``endpoint`` as a slug (the default slug is the endpoint; the official CLI sends a
    registry's name there), else the first registry saved for that endpoint."""
    if slug is not None:
        saved = sandbox.store.get(slug)
        if saved is not None and endpoint is not None and endpoint != saved.endpoint:
            raise BadRequest(  # never send saved credentials to a host they were not saved for
                f'endpoint "{endpoint}" is not the endpoint of external registry "{slug}"'
            )
        return saved
    return sandbox.store.get(endpoint) or sandbox.store.saved_for(endpoint)


def _test(sandbox, slug, body, query):
    data = _json_body(body)
    image = _text(data, "image", required=True)
    endpoint = _text(data, "endpoint")
    given = _text(data, "slug")
    if given is None and endpoint is None:
        raise BadRequest("endpoint is required")
    username, password = _text(data, "username"), _text(data, "password")
    saved = None  # set when testing the saved credentials (lastUsedAt is theirs only)
    if password is not None or _flag(data, "copyPassword"):  # test before save
        if endpoint is None:
            raise BadRequest("endpoint is required")
        slug = given or endpoint
        if password is not None:  # the body's credentials
            secret = Secret(password)
            known = sandbox.store.get(slug)
        else:  # duplicating: the original's password, to the original's endpoint only
            known, secret = _copied_password(sandbox, data, endpoint)
        username = username or (known.username if known else "")
    else:
        saved = _saved_for_test(sandbox, given, endpoint)
        if saved is None:
            return _not_found(given or endpoint)
        slug, username, endpoint = saved.slug, saved.username, saved.endpoint
        secret = sandbox.store.password(slug)
    from reconciler import oci

    try:
        ref = oci.manifest_ref(image, endpoint)
    except ValueError as exc:
        raise BadRequest(f"image {image!r} is not a valid image reference: {exc}") from None
    check = oci.check_pull(endpoint, image, username=username or None, password=secret,
                           timeout=sandbox.upstream_timeout, deadline=sandbox.upstream_deadline)
    ok = check.outcome == "ok"
    status = check.status or UNREACHABLE_STATUS  # 0: no answer from upstream at all
    error = "" if ok else (_scrub(check.error, secret) or f"upstream status {status}")
    sandbox.store.add_log(action="test", endpoint=endpoint, slug=slug, image=ref.repository,
                          tag=ref.reference, status_code=status, is_success=ok)
    if ok and saved is not None:
        sandbox.store.touch(slug)
    return 200, {"status": status, "error": error}


def _query(query: dict, name: str) -> str | None:
    for key in (name, name.capitalize()):
        values = query.get(key)
        if values and values[0]:
            return values[0]
    return None


def _logs(sandbox, slug, body, query):
    slug, endpoint = _query(query, "slug"), _query(query, "endpoint")
    if slug is None and endpoint is None:
        raise BadRequest("endpoint or slug is required")
    return 200, {"logs": sandbox.store.logs(slug=slug, endpoint=endpoint)}


IAM_SAMPLE = {
    "audience": "sts.amazonaws.com",
    "issuer_url": "https://oidc.sandbox.regsync.invalid/sandbox-team",
    "subject_type": "team",
    "thumbprint": "0000000000000000000000000000000000000000",
}


def _iam(sandbox, slug, body, query):
    return 200, dict(IAM_SAMPLE)


def _apps(sandbox, slug, body, query):
    apps = sandbox.apps()
    return 200, ({"apps": apps} if apps else {})  # the real API answers {} for no apps


HANDLERS = {"list": _list, "create": _create, "update": _update, "delete": _delete,
             "test": _test, "logs": _logs, "iam": _iam, "apps": _apps}
