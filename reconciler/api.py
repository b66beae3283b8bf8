"""The Vendor API v3 client for the external-registries endpoints.

Contract: ``vendor-api-v3-external-registries.swagger.yml`` (basePath ``/vendor/v3``).
Every httpx exception and every non-success answer is translated here, once, into the
``APIError`` tree of ``reconciler.errors``. Messages carry the API's own ``message`` and
never a request body. Whatever the API says is masked (``reconciler.redact``: the
password sent and the API token, in every form) before it is clipped or escaped, so no
credential can reach an error even when the API repeats it.

Retries (``reconciler.retry``): 429, 502, 503, 504 and transport failures, with
backoff, bounded in attempts and time; a connection that cannot be made is retried for
a while (an API restarting), saying so on the ``regsync`` logger (stderr). Reads and
PUTs are retried as they are. A DELETE whose earlier answer was lost or a 5xx treats a
later 404 as done. A create is never sent twice blindly: when its answer is lost (or a
502/503/504 came back, the work may have been committed), the registries are listed and
a registry with that slug and endpoint is taken as the created one; only when it is
absent is the create sent again. A create answered 201 with a body that cannot be read
is looked up the same way, never reported as failed.

Bounds on every request: a deadline over the whole exchange (``Timeout.total``, also
against a peer that drips its answer), the call's time (``RetryPolicy.total_time``),
and a cap on the decompressed body (``Limits``).

httpx is imported lazily, so ``regsync validate`` and ``--help`` never load it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote, urlsplit, urlunsplit

from reconciler import __version__, answers
from reconciler.answers import EXCERPT, MESSAGE, MIB
from reconciler.errors import (
    APIAuthError,
    APIBadRequest,
    APIError,
    APINotFound,
    APIServerError,
    APIUnavailable,
    outside,
)
from reconciler.model import PullTestResult, RegistryLog, RegistryWrite, RemoteRegistry, TeamApp
from reconciler.redact import Masker
from reconciler.retry import (
    ANSWERED,
    CONNECT,
    DEFAULT_RETRY,
    Budget,
    RetryPolicy,
    parse_retry_after,
)
from reconciler.secretvalue import Secret

if TYPE_CHECKING:
    import httpx

    from reconciler.transport import Answer, Failed

log = logging.getLogger("regsync")

DEFAULT_ORIGIN = "https://api.replicated.com/vendor"
TOKEN_VAR = "REPLICATED_API_TOKEN"
ORIGIN_VAR = "REPLICATED_API_ORIGIN"
TIMEOUT_VAR = "REGSYNC_API_TIMEOUT"
RETRY_TIME_VAR = "REGSYNC_API_RETRY_TIME"
LIST_LIMIT_VAR = "REGSYNC_API_LIST_LIMIT_MB"
NO_TOKEN = (f"no Vendor API token: set {TOKEN_VAR} (or pass --api-token); "
            "for the local sandbox, use the token it printed when it started")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
UNCERTAIN_STATUSES = frozenset({502, 503, 504})  # the work may have been done
_MAYBE_CREATED = " (it may have been created: list the registries to see)"
_LIST = "/v3/external_registries"


class _ErrorFields(TypedDict):
    """What every APIError carries besides its message."""

    status: int
    api_message: str


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """Seconds allowed to one request: ``total`` for the whole exchange (connect,
    send, the answer's last byte), and to each socket operation within it. No request
    runs past its call's ``RetryPolicy.total_time`` either."""

    connect: float = 5.0
    read: float = 15.0
    write: float = 15.0
    pool: float = 5.0
    total: float = 30.0

    def as_httpx(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write,
                             pool=self.pool)


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Caps on an answer's decompressed body: a generous one for the list of a team's
    registries (and its logs), a small one for every other answer."""

    list_body: int = 64 * MIB
    body: int = 1 * MIB


DEFAULT_TIMEOUT = Timeout()
DEFAULT_LIMITS = Limits()


def token_from(env: Mapping[str, str], token: str | Secret | None = None) -> Secret:
    """The API token: ``token`` when given and not blank, else ``REPLICATED_API_TOKEN``;
    refused with one message when there is none or it cannot be a token."""
    raw = token.reveal() if isinstance(token, Secret) else (token or "")
    if not raw.strip():
        raw = env.get(TOKEN_VAR) or ""
    raw = raw.strip()
    if not raw:
        raise APIAuthError(NO_TOKEN)
    if not all(33 <= ord(ch) < 127 for ch in raw):  # an HTTP header cannot carry it
        raise APIAuthError(f"the Vendor API token has characters no token has (spaces, "
                           f"control or non-ASCII characters); check {TOKEN_VAR}")
    return Secret(raw)


def from_env(env: Mapping[str, str], *, token: str | Secret | None = None,
             origin: str | None = None, **kw: Any) -> VendorAPI:
    """A client from ``REPLICATED_API_TOKEN`` / ``REPLICATED_API_ORIGIN`` (arguments win),
    with the bounds ``REGSYNC_API_TIMEOUT``, ``REGSYNC_API_RETRY_TIME`` and
    ``REGSYNC_API_LIST_LIMIT_MB`` when set."""
    origin = origin or (env.get(ORIGIN_VAR) or "").strip() or DEFAULT_ORIGIN
    total = _positive(env, TIMEOUT_VAR)
    if total is not None and "timeout" not in kw:
        kw["timeout"] = Timeout(read=min(DEFAULT_TIMEOUT.read, total),
                                write=min(DEFAULT_TIMEOUT.write, total), total=total)
    retry_time = _positive(env, RETRY_TIME_VAR)
    if retry_time is not None and "retry" not in kw:
        kw["retry"] = RetryPolicy(total_time=retry_time,
                                  connect_time=min(DEFAULT_RETRY.connect_time, retry_time))
    list_mb = _positive(env, LIST_LIMIT_VAR)
    if list_mb is not None and "limits" not in kw:
        kw["limits"] = Limits(list_body=int(list_mb * MIB))
    return VendorAPI(token=token_from(env, token), origin=origin, **kw)


def _positive(env: Mapping[str, str], name: str) -> float | None:
    value = (env.get(name) or "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < 1e9:
        raise APIError(f"{name} must be a positive number, not {outside(value, 40)!r}")
    return number


class VendorAPI:
    """One client per run; safe to share between threads (httpx's pool is, and the
    call counter is locked)."""

    def __init__(self, *, token: str | Secret, origin: str = DEFAULT_ORIGIN,
                 timeout: Timeout = DEFAULT_TIMEOUT, retry: RetryPolicy = DEFAULT_RETRY,
                 limits: Limits = DEFAULT_LIMITS, transport: httpx.BaseTransport | None = None,
                 user_agent: str | None = None):
        import httpx

        from reconciler.transport import ACCEPT_ENCODING, proxy_secrets, transport_for

        self._token = token_from({}, token)
        self.origin = _check_origin(origin)
        self.timeout = timeout
        self._timeout = timeout.as_httpx()
        self.retry = retry
        self.limits = limits
        self._lock = threading.Lock()
        self._calls = 0
        self._known: set[str] = set()  # every credential this run knows (``mask_also``)
        self._known_masker: Masker | None = None  # of the token and ``_known``; None: stale
        if transport is None:  # the environment's proxy: its password is a credential too
            self.mask_also(proxy_secrets(self.origin))
        try:
            transport = transport or transport_for(self.origin)
        except (ValueError, ImportError) as exc:  # e.g. a socks proxy without socksio
            raise APIError(f"cannot reach {self.origin} through the proxy the environment "
                           f"names for it: {outside(str(exc), EXCERPT)}") from None
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
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

    def mask_also(self, secrets: Iterable[str | Secret | None]) -> None:
        """Mask these credentials too in whatever the API says from now on: an image
        test by slug sends no password, yet the API may repeat the one it saved."""
        values = {s.reveal() if isinstance(s, Secret) else s for s in secrets}
        with self._lock:
            before = len(self._known)
            self._known.update(v for v in values if v)
            if len(self._known) != before:
                self._known_masker = None

    def _masker(self, password: Secret | None = None, username: str | None = None) -> Masker:
        """Masks the token, the password of this call, and every credential sent or
        named with ``mask_also`` in this run, in whatever the API says."""
        secret = password.reveal() if password is not None else None
        if secret:
            self.mask_also((secret,))
        with self._lock:
            # Built once per set of known credentials, not once per call: a run knows
            # every credential of its file, and an apply makes a call per registry.
            if self._known_masker is None:
                self._known_masker = Masker((self._token.reveal(), *self._known))
            masker = self._known_masker
        return masker if username is None else masker.with_username(username)

    # --- the endpoints ---------------------------------------------------------

    def list_registries(self) -> list[RemoteRegistry]:
        what = "list registries"
        masker = self._masker()
        answer = self._request("GET", _LIST, what=what, masker=masker,
                               limit=self.limits.list_body)
        try:
            return answers.registries(answer, what, masker)
        except APIError as exc:  # every Vendor API answers this call: maybe the origin is wrong
            raise APIError(f"{exc}; check that {self._origin_advice()}",
                           status=exc.status) from None

    def create_registry(self, body: RegistryWrite) -> RemoteRegistry:
        slug = body.slug or body.endpoint or ""  # the API's default slug is the endpoint
        endpoint = body.endpoint or ""
        what = f"create registry {slug!r}"
        masker = self._masker(body.password, body.username)
        budget = self.retry.budget()

        def landed() -> RemoteRegistry | None:
            return self._landed(slug, endpoint, budget, what, masker)

        result = self._request("POST", "/v3/external_registry", what=what, masker=masker,
                               expect=(201,), json_body=body.to_body(create=True),
                               budget=budget, landed=landed)
        if isinstance(result, RemoteRegistry):
            return result
        try:
            return answers.registry(result, what, masker)
        except APIError as exc:  # it was created (201); read it from the list instead
            try:
                found = landed()
            except APIError:
                found = None
            if found is not None:
                return found
            raise APIError(f"{exc} (the API answered 201: it was created)",
                           status=exc.status) from None

    def update_registry(self, slug: str, body: RegistryWrite) -> RemoteRegistry:
        what = f"update registry {slug!r}"
        masker = self._masker(body.password, body.username)
        answer = self._request("PUT", f"/v3/external_registry/{_segment(slug)}", what=what,
                               masker=masker, json_body=body.to_body(create=False))
        return answers.registry(answer, what, masker)

    def delete_registry(self, slug: str) -> None:
        what = f"delete registry {slug!r}"
        self._request("DELETE", f"/v3/external_registry/{_segment(slug)}", what=what,
                      masker=self._masker(), expect=(204,), gone_ok=True)

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
        masker = self._masker(password, username)
        answer = self._request("PUT", "/v3/external_registry/test", what=what, masker=masker,
                               json_body=payload)
        data = answers.json_object(answer, what, masker)
        status = data.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            raise answers.shape(answer, what, "no integer 'status'", masker)
        error = data.get("error")
        return PullTestResult(status=status,
                              error=masker.show(error, MESSAGE) if isinstance(error, str) else "")

    def registry_logs(self, *, slug: str | None = None,
                      endpoint: str | None = None) -> list[RegistryLog]:
        params = {k: v for k, v in (("endpoint", endpoint), ("slug", slug)) if v}
        what = f"logs of registry {(slug or endpoint)!r}"
        masker = self._masker()
        answer = self._request("GET", "/v3/external_registry/logs", what=what, masker=masker,
                               params=params, limit=self.limits.list_body)
        logs = answers.json_object(answer, what, masker).get("logs")
        if logs is None:
            return []
        if not isinstance(logs, list) or not all(isinstance(x, dict) for x in logs):
            raise answers.shape(answer, what, "'logs' is not a list of objects", masker)
        try:
            return [RegistryLog.from_api(entry) for entry in logs]
        except (TypeError, ValueError, OverflowError):  # e.g. a statusCode that is not a number
            raise answers.shape(answer, what, "a log entry has a field of the wrong type",
                              masker) from None

    def list_apps(self) -> list[TeamApp]:
        """The team's applications (``GET /v3/apps``; ``{}`` when there are none)."""
        what = "list apps"
        masker = self._masker()
        answer = self._request("GET", "/v3/apps", what=what, masker=masker,
                               limit=self.limits.list_body)
        apps = answers.json_object(answer, what, masker).get("apps")
        if apps is None:
            return []
        if not isinstance(apps, list) or not all(
            isinstance(a, dict) and isinstance(a.get("id"), str) and isinstance(a.get("slug"), str)
            for a in apps
        ):
            raise answers.shape(answer, what, "'apps' is not a list of apps with an id and a slug",
                              masker)
        return [TeamApp(id=a["id"], slug=a["slug"],
                        name=a["name"] if isinstance(a.get("name"), str) else "") for a in apps]

    # --- one logical call: the attempt loop, written once ------------------------

    def _request(self, method: str, path: str, *, what: str, masker: Masker,
                 expect: tuple[int, ...] = (200,), json_body: dict | None = None,
                 params: dict | None = None, gone_ok: bool = False, limit: int = 0,
                 budget: Budget | None = None, note: str = "",
                 landed: Callable[[], RemoteRegistry | None] | None = None):
        """Send with retries; the success answer, or raise.

        With ``gone_ok`` (DELETE), a 404 after an attempt that may have done the work
        (lost answer, 502/503/504) counts as success. With ``landed`` (a create), an
        attempt that may have done the work is never followed by another send before
        ``landed()`` (a list) said it did not; what it finds is returned instead of an
        answer. ``note`` ends every error's message."""
        from reconciler.transport import TLS_FAILED, Failed

        budget = budget or self.retry.budget()
        uncertain = ever = False  # the last attempt / some attempt may have done the work
        answer: Answer | None = None
        failure: Failed | None = None
        told = False
        while True:
            if uncertain and landed is not None:
                found = landed()
                if found is not None:
                    return found
                uncertain = False
                if budget.spent():  # it did not land, and no attempt is left to send it again
                    raise self._gave_up(what, budget, answer, failure, masker,
                                        note + " (it was not created)")
            budget.begin_attempt()
            answer, failure, ended, retry_after = None, None, ANSWERED, None
            try:
                answer = self._send(method, path, json_body=json_body, params=params,
                                    budget=budget, limit=limit or self.limits.body)
            except Failed as exc:
                if exc.kind == TLS_FAILED:
                    raise self._tls_error(what, exc, masker, note) from None
                failure, ended = exc, exc.ended
                uncertain = ended != CONNECT
            else:
                status = answer.status_code
                if status in expect or (gone_ok and ever and status == 404):
                    return answer
                if status == 400 and ever and landed is not None:
                    found = landed()  # "already exists" after a lost answer: the first landed
                    if found is not None:
                        return found
                if status not in RETRY_STATUSES:
                    raise self._error(answer, what, budget, masker, note=note)
                uncertain = status in UNCERTAIN_STATUSES
                retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            ever = ever or uncertain
            if not budget.wait(retry_after, ended=ended):
                maybe = _MAYBE_CREATED if uncertain and landed is not None else ""
                raise self._gave_up(what, budget, answer, failure, masker, note + maybe)
            if ended == CONNECT and failure is not None and not told:
                told = True
                log.warning("%s: cannot connect to %s (%s); retrying for up to %g s",
                            what, self.origin, failure.kind, self.retry.connect_time)

    def _landed(self, slug: str, endpoint: str, budget: Budget, what: str,
                masker: Masker) -> RemoteRegistry | None:
        """After a create that may have landed: the registry it made, or None when
        there is none (listing with the create's budget, masking its password)."""
        answer = self._request("GET", _LIST, what=f"{what} (listing to see whether it landed)",
                               masker=masker, budget=budget, limit=self.limits.list_body,
                               note=_MAYBE_CREATED)
        for remote in answers.registries(answer, what, masker):
            if remote.slug == slug:
                if _same_endpoint(remote.endpoint, endpoint):
                    return remote
                raise APIBadRequest(
                    f"{what}: a registry with this slug already exists with endpoint "
                    f"{outside(remote.endpoint, EXCERPT)!r}, not {endpoint!r}",
                    status=400,
                )
        return None

    def _send(self, method: str, path: str, *, json_body: dict | None, params: dict | None,
              budget: Budget, limit: int) -> Answer:
        """One HTTP request within the call's budget (``transport.exchange``)."""
        from reconciler.transport import exchange

        with self._lock:
            self._calls += 1
        return exchange(
            self._client, method, self.origin + path, params=params, timeout=self._timeout,
            content=None if json_body is None else json.dumps(json_body).encode(),
            headers={"Authorization": self._token.reveal()},
            at=time.monotonic() + budget.request_time(self.timeout.total), limit=limit,
        )

    def _error(self, answer: Answer, what: str, budget: Budget, masker: Masker,
               note: str = "") -> APIError:
        status = answer.status_code
        message = answers.api_message(answer, masker)
        said = (f": {message}" if message
                else f" ({answers.excerpt(answer, masker)})" if answer.content else "")
        said += note
        tries = f" after {budget.attempts} attempts" if budget.attempts > 1 else ""
        kw: _ErrorFields = {"status": status, "api_message": message}
        if status in (401, 403):
            hint = f"; check {TOKEN_VAR}"
            if not message:  # not the Vendor API's own refusal: maybe not the Vendor API
                hint += f", and that {self._origin_advice()}"
            return APIAuthError(f"{what}: the API refused the token ({status}){said}{hint}", **kw)
        if status == 404:
            if _is_list_call(what):
                return APINotFound(
                    f"{what}: {self.origin} has no Vendor API (404 for /v3/external_registries)"
                    f"{said}; {self._origin_advice()}", **kw)
            return APINotFound(f"{what}: not found (404){said}", **kw)
        if status == 400:
            return APIBadRequest(f"{what}: the API rejected the request (400){said}", **kw)
        if status == 429:
            return APIError(f"{what}: rate limited by the API (429){tries}{said}", **kw)
        if status >= 500:
            return APIServerError(f"{what}: the API failed ({status}){tries}{said}", **kw)
        return APIError(f"{what}: unexpected answer from the API ({status}){said}", **kw)

    def _origin_advice(self) -> str:
        """What an origin looks like, naming the one used."""
        path = urlsplit(self.origin).path.rstrip("/")
        missing = ("" if path.endswith("/vendor")
                   else " (its path ends in /v3: leave that out)" if path.endswith("/v3")
                   else " (its path has no /vendor)")
        return (f"{ORIGIN_VAR} ({self.origin}{missing}) is the Vendor API's origin, such as "
                f"{DEFAULT_ORIGIN}, or the sandbox's http://127.0.0.1:PORT/vendor")

    def _gave_up(self, what: str, budget: Budget, answer: Answer | None,
                 failure: Failed | None, masker: Masker, note: str) -> APIError:
        if answer is not None:
            return self._error(answer, what, budget, masker, note=note)
        return self._unavailable(what, budget, failure, masker, note=note)

    def _tls_error(self, what: str, failure: Failed, masker: Masker,
                   note: str) -> APIUnavailable:
        return APIUnavailable(
            f"{what}: TLS with {self.origin} failed ({masker.show(failure.detail, EXCERPT)}); "
            f"check {ORIGIN_VAR}: a plain-HTTP server such as the sandbox needs http://, "
            f"and a proxy or private CA in the way needs its certificate trusted{note}")

    def _unavailable(self, what: str, budget: Budget, failure: Failed | None, masker: Masker,
                     note: str = "") -> APIUnavailable:
        detail = "no detail"
        if failure is not None:
            detail = failure.kind
            if failure.detail:
                detail += f": {masker.show(failure.detail, EXCERPT)}"
        return APIUnavailable(
            f"{what}: no answer from {self.origin} after {budget.attempts} "
            f"attempt{'s' if budget.attempts != 1 else ''} ({detail}){note}"
        )


# --- helpers -------------------------------------------------------------------------


def _is_list_call(what: str) -> bool:
    """Whether the call was to the list, which every Vendor API answers (a 404 there
    means the origin is wrong, not that something is missing)."""
    return what.startswith("list registries")


def _check_origin(origin: str) -> str:
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        if not origin.strip().isprintable() or " " in origin.strip():
            raise ValueError("a character no URL has")
    except ValueError:
        parts = None
    if parts is None:
        raise APIError(f"{ORIGIN_VAR} must be an http(s) URL such as {DEFAULT_ORIGIN}, "
                       f"not {outside(origin, EXCERPT)!r}")
    if "@" in parts.netloc:
        raise APIError(f"{ORIGIN_VAR} must not carry credentials; the token goes in {TOKEN_VAR}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise APIError(f"{ORIGIN_VAR} must be an http(s) URL such as {DEFAULT_ORIGIN}, "
                       f"not {outside(origin, EXCERPT)!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _segment(slug: str) -> str:
    return quote(slug, safe="")


def _same_endpoint(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()
