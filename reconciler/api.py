"""The Vendor API v3 client for the external-registries endpoints.

Contract: ``vendor-api-v3-external-registries.swagger.yml`` (basePath ``/vendor/v3``).
Every httpx exception and every non-success answer is translated here, once, into the
``APIError`` tree of ``reconciler.errors``. Messages carry the API's own ``message`` and
never a request body, so no credential can reach an error.

Retries (``reconciler.retry``): 429, 502, 503, 504 and transport failures, with
backoff, bounded in attempts and time. Reads and PUTs are retried as they are. A
DELETE whose earlier answer was lost or a 5xx treats a later 404 as done. A create is
never sent twice blindly: when its answer is lost (or a 502/503/504 came back, the
work may have been committed), the registries are listed and a registry with that slug
and endpoint is taken as the created one; only when it is absent is the create sent
again.

httpx is imported lazily, so ``regsync validate`` and ``--help`` never load it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from reconciler import __version__
from reconciler.errors import (
    APIAuthError,
    APIBadRequest,
    APIError,
    APINotFound,
    APIServerError,
    APIUnavailable,
)
from reconciler.model import PullTestResult, RegistryLog, RegistryWrite, RemoteRegistry, TeamApp
from reconciler.retry import DEFAULT_RETRY, Budget, RetryPolicy, parse_retry_after
from reconciler.secret import Secret

if TYPE_CHECKING:
    import httpx

DEFAULT_ORIGIN = "https://api.replicated.com/vendor"
TOKEN_VAR = "REPLICATED_API_TOKEN"
ORIGIN_VAR = "REPLICATED_API_ORIGIN"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
UNCERTAIN_STATUSES = frozenset({502, 503, 504})  # the work may have been done
_MAYBE_CREATED = " (it may have been created: list the registries to see)"
_EXCERPT = 120
_STRING_FIELDS = ("slug", "provider", "endpoint", "authType", "username", "teamId",
                  "createdAt", "updatedAt", "lastUsedAt")
_MESSAGE = 500


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """Seconds allowed to each phase of one request. A retried call is bounded by
    ``RetryPolicy.total_time`` plus at most one request's timeout: a retry is not
    begun past the deadline, and the request begun before it keeps its full timeout
    (a last attempt squeezed into the time left would only time out)."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0

    def as_httpx(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write,
                             pool=self.pool)


DEFAULT_TIMEOUT = Timeout()


class _Lost(Exception):
    """The request may have reached the server, but no answer came back."""


class _NotSent(Exception):
    """The request never left (the connection could not be made)."""


def from_env(env: Mapping[str, str], *, token: str | Secret | None = None,
             origin: str | None = None, **kw: Any) -> VendorAPI:
    """A client from ``REPLICATED_API_TOKEN`` / ``REPLICATED_API_ORIGIN`` (arguments win)."""
    raw = token.reveal() if isinstance(token, Secret) else (token or "")
    if not raw.strip():
        raw = env.get(TOKEN_VAR) or ""
    origin = origin or (env.get(ORIGIN_VAR) or "").strip() or DEFAULT_ORIGIN
    return VendorAPI(token=Secret(raw), origin=origin, **kw)


class VendorAPI:
    """One client per run; safe to share between threads (httpx's pool is, and the
    call counter is locked)."""

    def __init__(self, *, token: str | Secret, origin: str = DEFAULT_ORIGIN,
                 timeout: Timeout = DEFAULT_TIMEOUT, retry: RetryPolicy = DEFAULT_RETRY,
                 transport: httpx.BaseTransport | None = None, user_agent: str | None = None):
        import httpx

        self._token = _check_token(token)
        self.origin = _check_origin(origin)
        self.timeout = timeout
        self._timeout = timeout.as_httpx()
        self.retry = retry
        self._lock = threading.Lock()
        self._calls = 0
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": user_agent or f"regsync/{__version__}",
            },
        )

    def __repr__(self) -> str:
        return f"VendorAPI(origin={self.origin!r})"

    def __enter__(self) -> VendorAPI:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    # --- the endpoints ---------------------------------------------------------

    def list_registries(self) -> list[RemoteRegistry]:
        response = self._request("GET", "/v3/external_registries", what="list registries")
        return self._registries(response, "list registries")

    def create_registry(self, body: RegistryWrite) -> RemoteRegistry:
        with _masked(body.password):
            return self._create(body)

    def _create(self, body: RegistryWrite) -> RemoteRegistry:
        slug = body.slug or body.endpoint or ""  # the API's default slug is the endpoint
        endpoint = body.endpoint or ""
        what = f"create registry {slug!r}"
        payload = body.to_body(create=True)
        budget = self.retry.budget()
        uncertain = False  # the last create may have landed: list before sending again
        ever_uncertain = False  # some create may have landed (even if a later list said no)
        response, failure = None, ""  # how the last create ended
        while True:
            if uncertain:
                landed = self._landed(slug, endpoint, budget, what)
                if landed is not None:
                    return landed
                uncertain = False
                if budget.spent():  # it did not land, and no attempt is left to send it again
                    raise self._gave_up(what, budget, response, failure, " (it was not created)")
            budget.begin_attempt()
            response = None
            try:
                response = self._send("POST", "/v3/external_registry", json_body=payload)
            except _NotSent as exc:
                failure = str(exc)
            except _Lost as exc:
                failure, uncertain = str(exc), True
            else:
                status = response.status_code
                if status == 201:
                    return self._registry(response, what)
                if status == 400 and ever_uncertain:
                    # "already exists" after a lost answer: the first one landed
                    landed = self._landed(slug, endpoint, budget, what)
                    if landed is not None:
                        return landed
                if status not in RETRY_STATUSES:
                    raise self._error(response, what, budget)
                uncertain = status in UNCERTAIN_STATUSES
            ever_uncertain = ever_uncertain or uncertain
            if not budget.wait(None if response is None else _retry_after(response)):
                maybe = _MAYBE_CREATED if uncertain else ""
                raise self._gave_up(what, budget, response, failure, maybe)

    def update_registry(self, slug: str, body: RegistryWrite) -> RemoteRegistry:
        what = f"update registry {slug!r}"
        with _masked(body.password):
            response = self._request(
                "PUT", f"/v3/external_registry/{_segment(slug)}", what=what,
                json_body=body.to_body(create=False),
            )
            return self._registry(response, what)

    def delete_registry(self, slug: str) -> None:
        what = f"delete registry {slug!r}"
        self._request("DELETE", f"/v3/external_registry/{_segment(slug)}", what=what,
                      expect=(204,), gone_ok=True)

    def test_registry(self, *, image: str, slug: str | None = None, endpoint: str | None = None,
                      username: str | None = None,
                      password: Secret | None = None) -> PullTestResult:
        if not slug and not endpoint:
            raise ValueError("test_registry needs a slug or an endpoint")
        what = f"test image {image!r} of registry {(slug or endpoint)!r}"
        payload: dict[str, Any] = {"endpoint": endpoint or "", "image": image}
        if slug:
            payload["slug"] = slug
        if username is not None:
            payload["username"] = username
        if password is not None:
            payload["password"] = password.reveal()
        with _masked(password):
            response = self._request("PUT", "/v3/external_registry/test", what=what,
                                     json_body=payload)
            data = self._json(response, what)
            status = data.get("status")
            if not isinstance(status, int) or isinstance(status, bool):
                raise self._shape(response, what, "no integer 'status'")
            error = data.get("error")
        error = _mask(error, password) if isinstance(error, str) else ""
        return PullTestResult(status=status, error=error)

    def registry_logs(self, *, slug: str | None = None,
                      endpoint: str | None = None) -> list[RegistryLog]:
        params = {k: v for k, v in (("endpoint", endpoint), ("slug", slug)) if v}
        what = f"logs of registry {(slug or endpoint)!r}"
        response = self._request("GET", "/v3/external_registry/logs", what=what, params=params)
        logs = self._json(response, what).get("logs")
        if logs is None:
            return []
        if not isinstance(logs, list) or not all(isinstance(x, dict) for x in logs):
            raise self._shape(response, what, "'logs' is not a list of objects")
        try:
            return [RegistryLog.from_api(entry) for entry in logs]
        except (TypeError, ValueError, OverflowError):  # e.g. a statusCode that is not a number
            raise self._shape(response, what, "a log entry has a field of the wrong type") from None

    def list_apps(self) -> list[TeamApp]:
        """The team's applications (``GET /v3/apps``; ``{}`` when there are none)."""
        what = "list apps"
        response = self._request("GET", "/v3/apps", what=what)
        apps = self._json(response, what).get("apps")
        if apps is None:
            return []
        if not isinstance(apps, list) or not all(
            isinstance(a, dict) and isinstance(a.get("id"), str) and isinstance(a.get("slug"), str)
            for a in apps
        ):
            raise self._shape(response, what, "'apps' is not a list of apps with an id and a slug")
        return [TeamApp(id=a["id"], slug=a["slug"],
                        name=a["name"] if isinstance(a.get("name"), str) else "") for a in apps]

    # --- one logical call ------------------------------------------------------

    def _request(self, method: str, path: str, *, what: str, expect: tuple[int, ...] = (200,),
                 json_body: dict | None = None, params: dict | None = None,
                 gone_ok: bool = False) -> httpx.Response:
        """Send with retries; the success answer, or raise. With ``gone_ok`` (DELETE), a
        404 after an attempt that may have done the work (lost answer, 502/503/504)
        counts as success."""
        budget = self.retry.budget()
        uncertain = False
        failure = ""
        while True:
            budget.begin_attempt()
            try:
                response = self._send(method, path, json_body=json_body, params=params)
            except _NotSent as exc:
                failure = str(exc)
            except _Lost as exc:
                failure, uncertain = str(exc), True
            else:
                status = response.status_code
                if status in expect or (gone_ok and uncertain and status == 404):
                    return response
                if status in RETRY_STATUSES:
                    uncertain = uncertain or status in UNCERTAIN_STATUSES
                    if budget.wait(_retry_after(response)):
                        continue
                raise self._error(response, what, budget)
            if not budget.wait():
                raise self._unavailable(what, budget, failure)

    def _landed(self, slug: str, endpoint: str, budget: Budget, what: str) -> RemoteRegistry | None:
        """After a create whose answer was lost: the registry it made, or None when
        there is none (listing with the same budget, retrying what can be retried)."""
        failure = ""
        while True:
            budget.begin_attempt()
            try:
                response = self._send("GET", "/v3/external_registries")
            except (_NotSent, _Lost) as exc:
                failure = str(exc)
            else:
                if response.status_code == 200:
                    break
                if response.status_code in RETRY_STATUSES and budget.wait(_retry_after(response)):
                    continue
                raise self._error(response, f"{what} (listing to see whether it landed)",
                                  budget, note=_MAYBE_CREATED)
            if not budget.wait():
                raise self._unavailable(what, budget, failure, note=_MAYBE_CREATED)
        for remote in self._registries(response, what):
            if remote.slug == slug:
                if _same_endpoint(remote.endpoint, endpoint):
                    return remote
                raise APIBadRequest(
                    f"{what}: a registry with this slug already exists with endpoint "
                    f"{remote.endpoint!r}, not {endpoint!r}",
                    status=400,
                )
        return None

    def _send(self, method: str, path: str, *, json_body: dict | None = None,
              params: dict | None = None) -> httpx.Response:
        """One HTTP request; transport failures become _NotSent or _Lost."""
        import httpx

        content = None if json_body is None else json.dumps(json_body).encode()
        headers = {"Authorization": self._token.reveal()}
        with self._lock:
            self._calls += 1
        try:
            return self._client.request(
                method, self.origin + path, content=content, params=params, headers=headers,
                timeout=self._timeout,
            )
        # Not chained (``from None``): an httpx exception holds the request, body included.
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _NotSent(_describe(exc)) from None
        except httpx.RequestError as exc:  # read/write errors, timeouts, disconnects
            raise _Lost(_describe(exc)) from None

    # --- answers -----------------------------------------------------------------

    def _json(self, response: httpx.Response, what: str) -> dict:
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            raise self._shape(response, what, "not JSON") from None
        if not isinstance(data, dict):
            raise self._shape(response, what, "not a JSON object")
        return data

    def _registry(self, response: httpx.Response, what: str) -> RemoteRegistry:
        data = self._json(response, what).get("external_registry")
        if not isinstance(data, dict):
            raise self._shape(response, what, "no 'external_registry' object")
        return self._remote(response, what, data)

    def _registries(self, response: httpx.Response, what: str) -> list[RemoteRegistry]:
        body = self._json(response, what)
        if "external_registries" not in body:
            # Not an empty team ({"external_registries": null} is): something that is not
            # the Vendor API answered, and taking it as empty would plan to create everything.
            raise self._shape(response, what, "no 'external_registries' key")
        items = body["external_registries"]
        if items is None:
            return []
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            raise self._shape(response, what, "'external_registries' is not a list of objects")
        return [self._remote(response, what, item) for item in items]

    def _remote(self, response: httpx.Response, what: str, data: dict) -> RemoteRegistry:
        """A registry from the API; a documented field of the wrong type is refused
        (a number taken as updatedAt would crash the plan and corrupt the state file).
        Missing fields, nulls and fields the contract does not name are fine."""
        for name in _STRING_FIELDS:
            if data.get(name) is not None and not isinstance(data[name], str):
                raise self._shape(response, what, f"a registry's {name!r} is not a string")
        app_ids = data.get("appIds")
        if app_ids is not None and not (
            isinstance(app_ids, list) and all(isinstance(x, str) for x in app_ids)
        ):
            raise self._shape(response, what, "a registry's 'appIds' is not a list of strings")
        if data.get("isReplicated") is not None and not isinstance(data["isReplicated"], bool):
            raise self._shape(response, what, "a registry's 'isReplicated' is not a boolean")
        return RemoteRegistry.from_api(data)

    def _shape(self, response: httpx.Response, what: str, why: str) -> APIError:
        return APIError(
            f"{what}: the API answered {response.status_code} with a body that is not the "
            f"contract's JSON ({why}): {_excerpt(response)}",
            status=response.status_code,
        )

    def _error(self, response: httpx.Response, what: str, budget: Budget,
               note: str = "") -> APIError:
        status = response.status_code
        message = _api_message(response)
        said = f": {message}" if message else f" ({_excerpt(response)})" if response.content else ""
        said += note
        tries = f" after {budget.attempts} attempts" if budget.attempts > 1 else ""
        kw = {"status": status, "api_message": message}
        if status in (401, 403):
            return APIAuthError(
                f"{what}: the API refused the token ({status}){said}; check {TOKEN_VAR}", **kw)
        if status == 404:
            return APINotFound(f"{what}: not found (404){said}", **kw)
        if status == 400:
            return APIBadRequest(f"{what}: the API rejected the request (400){said}", **kw)
        if status == 429:
            return APIError(f"{what}: rate limited by the API (429){tries}{said}", **kw)
        if status >= 500:
            return APIServerError(f"{what}: the API failed ({status}){tries}{said}", **kw)
        return APIError(f"{what}: unexpected answer from the API ({status}){said}", **kw)

    def _gave_up(self, what: str, budget: Budget, response: httpx.Response | None,
                 failure: str, note: str) -> APIError:
        if response is not None:
            return self._error(response, what, budget, note=note)
        return self._unavailable(what, budget, failure, note=note)

    def _unavailable(self, what: str, budget: Budget, failure: str,
                     note: str = "") -> APIUnavailable:
        return APIUnavailable(
            f"{what}: no answer from {self.origin} after {budget.attempts} "
            f"attempt{'s' if budget.attempts != 1 else ''} ({failure}){note}"
        )


# --- helpers -------------------------------------------------------------------------


def _mask(text: str, password: Secret | None) -> str:
    """``text`` with the password (as sent, or JSON-escaped) replaced by ********."""
    value = password.reveal() if password is not None else ""
    if not value:
        return text
    for form in {value, json.dumps(value)[1:-1], repr(value)[1:-1]}:
        text = text.replace(form, "********")
        for cut in range(len(form) - 1, 3, -1):  # cut short where an excerpt was clipped
            if form[:cut] + "..." in text:
                text = text.replace(form[:cut] + "...", "********...")
                break
    return text


@contextmanager
def _masked(password: Secret | None):
    """Errors raised inside never carry ``password``, whatever the API answered
    (the contract does not promise its messages never quote the request)."""
    try:
        yield
    except APIError as exc:
        message = _mask(str(exc), password)
        if message == str(exc) and _mask(exc.api_message, password) == exc.api_message:
            raise
        raise type(exc)(message, status=exc.status,
                        api_message=_mask(exc.api_message, password)) from None


def _check_origin(origin: str) -> str:
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None:
        raise APIError(f"{ORIGIN_VAR} must be an http(s) URL such as {DEFAULT_ORIGIN}, "
                       f"not {_clip(origin)!r}")
    if "@" in parts.netloc:
        raise APIError(f"{ORIGIN_VAR} must not carry credentials; the token goes in {TOKEN_VAR}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise APIError(f"{ORIGIN_VAR} must be an http(s) URL such as {DEFAULT_ORIGIN}, "
                       f"not {_clip(origin)!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _check_token(token: str | Secret) -> Secret:
    raw = (token.reveal() if isinstance(token, Secret) else token or "").strip()
    if not raw:
        raise APIAuthError(f"no Vendor API token: set {TOKEN_VAR} to an API token of the "
                           "Replicated vendor team")
    if not all(33 <= ord(ch) < 127 for ch in raw):  # an HTTP header cannot carry it
        raise APIAuthError(f"the Vendor API token has characters no token has (spaces, "
                           f"control or non-ASCII characters); check {TOKEN_VAR}")
    return Secret(raw)


def _segment(slug: str) -> str:
    return quote(slug, safe="")


def _same_endpoint(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def _api_message(response: httpx.Response) -> str:
    """The API's ``message`` from any of the contract's error shapes, else ''."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(data, dict):
        return ""
    message = data.get("message")
    if not isinstance(message, str) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
    if not isinstance(message, str) and isinstance(data.get("error"), str):
        message = data["error"]
    return _clip(message, _MESSAGE) if isinstance(message, str) else ""


def _excerpt(response: httpx.Response) -> str:
    text = response.content[: _EXCERPT * 4].decode("utf-8", "replace")
    return repr(_clip(text, _EXCERPT)) if text else "empty body"


def _clip(text: str, limit: int = _EXCERPT) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: Exception) -> str:
    text = _clip(str(exc)) or "no detail"
    return f"{type(exc).__name__}: {text}"
