"""Can this image's manifest be pulled with these credentials? Asked the way a
container runtime asks: ``GET /v2/``, follow the ``WWW-Authenticate`` challenge
(Basic, or Bearer with a token from the realm), then ``HEAD`` the manifest with the
Accept types of Docker v2 and OCI manifests and indexes.

Every answer is a :class:`PullCheck`; nothing here raises for anything the registry
or the network does. Its ``error`` text never contains a credential or a token.

Plain HTTP is used only for loopback hosts (127.0.0.0/8, ::1, localhost) or when
``insecure=True``; every other request, token realms and redirects included, goes
over https (a plain-HTTP request to another host is refused before it is sent).

httpx is imported inside the functions: ``regsync validate`` imports no HTTP stack.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from reconciler import __version__
from reconciler.secret import Secret

DEFAULT_TIMEOUT = 10.0
MAX_REDIRECTS = 5
MIN_SCRUB = 4  # shorter passwords are not masked in third-party text (they would mangle it)
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
DOCKER_HUB_API = "registry-1.docker.io"

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class PullCheck:
    """The answer: ``outcome`` is ``ok`` | ``unauthorized`` | ``not_found`` | ``unreachable``.

    ``status`` is the upstream HTTP status (0 when no answer came, or when the image
    reference is malformed and nothing was sent); ``digest`` is the manifest digest when ok.
    """

    outcome: str
    status: int
    digest: str | None
    error: str

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass(frozen=True)
class ImageRef:
    """A reference relative to one registry: repository ``name`` and a tag or digest."""

    name: str
    reference: str

    def __str__(self) -> str:
        sep = "@" if ":" in self.reference else ":"
        return f"{self.name}{sep}{self.reference}"


def registry_host(endpoint: str) -> str:
    """``host[:port]`` to talk to: scheme and path dropped, Docker Hub mapped to its API host."""
    text = endpoint.strip()
    if "://" not in text:
        text = "//" + text
    host = urlsplit(text).netloc.lower()
    return DOCKER_HUB_API if host in DOCKER_HUB_ALIASES else host


def is_loopback(host: str) -> bool:
    name = urlsplit("//" + host).hostname or ""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_image(image: str, endpoint: str) -> ImageRef:
    """Split ``name:tag`` / ``name@sha256:...``; drop a leading endpoint host; on Docker
    Hub put a one-component name under ``library/``. ValueError if malformed."""
    host = registry_host(endpoint)
    rest = image.strip()
    first, _, remainder = rest.partition("/")
    if remainder and (first.lower() == endpoint.strip().lower() or registry_host(first) == host):
        rest = remainder
    name, at, digest = rest.partition("@")
    if at:
        reference = digest
        if ":" in name.rsplit("/", 1)[-1]:  # name:tag@digest: the digest wins
            name = name.rsplit(":", 1)[0]
        if not _DIGEST_RE.match(reference):
            raise ValueError(f"invalid digest {reference!r}")
    else:
        slash = name.rfind("/")
        colon = name.rfind(":")
        reference = "latest"
        if colon > slash:
            name, reference = name[:colon], name[colon + 1 :]
        if not _TAG_RE.match(reference):
            raise ValueError(f"invalid tag {reference!r}")
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid repository name {name!r}")
    if host == DOCKER_HUB_API and "/" not in name:
        name = "library/" + name
    return ImageRef(name=name, reference=reference)


def check_pull(
    endpoint: str,
    image: str,
    *,
    username: str | None = None,
    password: Secret | None = None,
    insecure: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    transport=None,
) -> PullCheck:
    """Whether ``image`` can be pulled from ``endpoint`` with these credentials."""
    try:
        ref = parse_image(image, endpoint)
    except ValueError as exc:
        return PullCheck("not_found", 0, None, f"invalid image reference {image!r}: {exc}")
    with _Session(endpoint, username, password, insecure, timeout, transport) as session:
        return session.run(lambda: session.pull(ref))


def check_login(
    endpoint: str,
    *,
    username: str | None = None,
    password: Secret | None = None,
    insecure: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    transport=None,
) -> PullCheck:
    """Whether the registry accepts these credentials (``GET /v2/`` through the challenge)."""
    with _Session(endpoint, username, password, insecure, timeout, transport) as session:
        return session.run(session.login)


class _Refused(Exception):
    """A request this module will not send (plain HTTP to a non-loopback host)."""


class _Done(Exception):
    def __init__(self, result: PullCheck):
        self.result = result


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.strip().partition(" ")
    found = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
             for m in _CHALLENGE_PARAM_RE.finditer(params)}
    return scheme.lower(), found


class _Session:
    """One check: one httpx.Client, the credentials, and the current Authorization."""

    def __init__(self, endpoint, username, password, insecure, timeout, transport):
        import httpx

        self.host = registry_host(endpoint)
        self.insecure = insecure
        self.timeout = timeout
        explicit_https = endpoint.strip().lower().startswith("https://")
        plain = not explicit_https and (insecure or is_loopback(self.host))
        self.base = f"{'http' if plain else 'https'}://{self.host}"
        self.username = username
        self.password = Secret(password) if isinstance(password, str) else password
        self.has_creds = bool(username) or password is not None
        self.authorization: str | None = None
        self.client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            headers={"User-Agent": f"regsync/{__version__}"},
            event_hooks={"request": [self._guard]},
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.client.close()

    # --- plumbing -------------------------------------------------------------
    def _guard(self, request) -> None:
        if request.url.scheme == "http" and not (self.insecure or is_loopback(request.url.netloc.decode())):
            raise _Refused(f"refused to send a request over plain HTTP to {request.url.host} (not loopback, not insecure)")

    def _basic(self) -> str:
        secret = self.password.reveal() if self.password is not None else ""
        raw = f"{self.username or ''}:{secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _scrub(self, text: str) -> str:
        """Third-party text (exception messages) with the password masked, should it be there."""
        if self.password is not None and len(self.password.reveal()) >= MIN_SCRUB:
            text = text.replace(self.password.reveal(), "********")
        return text

    def run(self, step) -> PullCheck:
        import httpx

        try:
            result = step()
        except _Done as done:
            result = done.result
        except _Refused as exc:
            result = PullCheck("unreachable", 0, None, str(exc))
        except httpx.TooManyRedirects:
            result = PullCheck("unreachable", 0, None, f"more than {MAX_REDIRECTS} redirects")
        except (httpx.RequestError, httpx.InvalidURL) as exc:  # e.g. a malformed realm URL
            result = PullCheck("unreachable", 0, None, self._scrub(f"request failed: {exc}"))
        return result

    def _send(self, method: str, url: str, *, what: str, registry_auth: bool = True, **kw):
        import httpx

        headers = kw.pop("headers", {})
        if registry_auth and self.authorization:
            headers["Authorization"] = self.authorization
        try:
            return self.client.request(method, url, headers=headers, **kw)
        except httpx.TransportError as exc:
            text = self._scrub(_transport_text(exc, self.timeout))
            raise _Done(PullCheck("unreachable", 0, None, f"{what}: {text}")) from exc

    # --- the challenge --------------------------------------------------------
    def ping(self):
        """``GET /v2/`` without credentials; returns the answer (401 carries the challenge)."""
        r = self._send("GET", f"{self.base}/v2/", what=f"{self.host} unreachable")
        if r.status_code >= 500:
            raise _Done(PullCheck("unreachable", r.status_code, None, f"{self.host} answered {r.status_code} to GET /v2/"))
        return r

    def answer_challenge(self, response, scope: str | None) -> None:
        """Set ``self.authorization`` from a 401's ``WWW-Authenticate``."""
        header = response.headers.get("WWW-Authenticate", "")
        scheme, params = _parse_challenge(header)
        if scheme == "basic":
            if not self.has_creds:
                raise _Done(PullCheck("unauthorized", response.status_code, None,
                                      f"{self.host} requires credentials (Basic) and none were given"))
            self.authorization = self._basic()
        elif scheme == "bearer" and params.get("realm"):
            scope = params.get("scope", scope)
            self.authorization = "Bearer " + self.fetch_token(params["realm"], params.get("service"), scope)
        else:
            raise _Done(PullCheck("unauthorized", response.status_code, None,
                                  f"{self.host} answered {response.status_code} with no usable challenge"))

    def fetch_token(self, realm: str, service: str | None, scope: str | None) -> str:
        params = []
        if service:
            params.append(("service", service))
        for one in (scope or "").split():
            params.append(("scope", one))
        headers = {"Authorization": self._basic()} if self.has_creds else {}
        realm_host = urlsplit(realm).netloc or realm
        r = self._send("GET", realm, params=params, headers=headers, registry_auth=False,
                       what=f"token endpoint {realm_host} unreachable")
        who = "the credentials" if self.has_creds else "anonymous access"
        if r.status_code in (401, 403):
            raise _Done(PullCheck("unauthorized", r.status_code, None,
                                  f"token endpoint {realm_host} refused {who} ({r.status_code})"))
        if r.status_code != 200:
            outcome = "unreachable" if r.status_code >= 500 else "unauthorized"
            raise _Done(PullCheck(outcome, r.status_code, None, f"token endpoint {realm_host} answered {r.status_code}"))
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise _Done(PullCheck("unauthorized", r.status_code, None, f"token endpoint {realm_host} gave no token"))
        return token

    # --- the checks -----------------------------------------------------------
    def login(self) -> PullCheck:
        r = self.ping()
        if r.status_code == 200:
            return PullCheck("ok", 200, None, "")
        if r.status_code != 401:
            return _refused_or_odd(r.status_code, f"{self.host} answered {r.status_code} to GET /v2/")
        self.answer_challenge(r, None)
        r = self._send("GET", f"{self.base}/v2/", what=f"{self.host} unreachable")
        if r.status_code == 200:
            return PullCheck("ok", 200, None, "")
        if r.status_code >= 500:
            return PullCheck("unreachable", r.status_code, None, f"{self.host} answered {r.status_code} to GET /v2/")
        return _refused_or_odd(r.status_code, f"{self.host} refused the credentials ({r.status_code})")

    def pull(self, ref: ImageRef) -> PullCheck:
        r = self.ping()
        scope = f"repository:{ref.name}:pull"
        if r.status_code == 401:
            self.answer_challenge(r, scope)
        url = f"{self.base}/v2/{ref.name}/manifests/{ref.reference}"
        headers = {"Accept": MANIFEST_ACCEPT}
        what = f"{self.host} unreachable"
        r = self._send("HEAD", url, headers=dict(headers), what=what)
        if r.status_code == 401 and "WWW-Authenticate" in r.headers:
            previous = self.authorization
            self.answer_challenge(r, scope)  # a new scope, or Basic after an open /v2/: once
            if self.authorization != previous:
                r = self._send("HEAD", url, headers=dict(headers), what=what)
        if r.status_code == 405:  # a registry without HEAD on manifests
            r = self._send("GET", url, headers=dict(headers), what=what)
        status = r.status_code
        if status == 200:
            digest = r.headers.get("Docker-Content-Digest")
            if not digest:
                body = r.content or self._send("GET", url, headers=dict(headers), what=what).content
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
            return PullCheck("ok", 200, digest, "")
        if status in (401, 403):
            given = "" if self.has_creds else "; no credentials were given"
            return PullCheck("unauthorized", status, None, f"{self.host} refused to serve {ref} ({status}){given}")
        if status == 404:
            return PullCheck("not_found", 404, None, f"{ref} not found on {self.host} (manifest unknown)")
        if status >= 500:
            return PullCheck("unreachable", status, None, f"{self.host} answered {status} for {ref}")
        if status == 429:
            return PullCheck("unreachable", status, None, f"{self.host} is rate limiting (429)")
        return PullCheck("unreachable", status, None, f"{self.host} answered {status} for {ref}")


def _refused_or_odd(status: int, text: str) -> PullCheck:
    outcome = "unauthorized" if status in (401, 403) else "unreachable"
    return PullCheck(outcome, status, None, text)


def _transport_text(exc, timeout: float) -> str:
    import ssl

    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s ({type(exc).__name__})"
    cause = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {getattr(cause, 'reason', None) or cause}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if "SSL" in text or "certificate" in text.lower():
        return f"TLS error: {text}"
    if "refused" in text.lower():
        return "connection refused"
    return f"connection failed: {text}"
