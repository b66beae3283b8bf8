"""Can this image's manifest be pulled with these credentials? Asked the way a
container runtime asks: ``GET /v2/``, follow the ``WWW-Authenticate`` challenge
(Basic, or Bearer with a token from the realm), then ``HEAD`` the manifest with the
Accept types of Docker v2 and OCI manifests and indexes.

Every answer is a :class:`PullCheck`; nothing here raises for anything the registry
or the network does. Its ``error`` text never contains a credential or a token.

Plain HTTP is used only for loopback hosts (127.0.0.0/8, ::1, localhost) or when
``insecure=True``; every other request, token realms and redirects included, goes
over https (a plain-HTTP request to another host is refused before it is sent).

Bounds: each request waits at most ``timeout`` per phase, the whole check at most
``deadline`` (a registry that drips its answer a byte at a time is cut off: its
sockets are shut when the deadline passes), and bodies are read up to a cap
(``MAX_MANIFEST_BYTES``, ``MAX_TOKEN_BYTES``) after decompression. Redirects are
followed here, not by httpx, so a redirect's body is never read at all.

httpx is imported inside the functions: ``regsync validate`` imports no HTTP stack.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from reconciler import __version__, imageref
from reconciler.secretvalue import Secret

if TYPE_CHECKING:
    import httpx

DEFAULT_TIMEOUT = 10.0
DEFAULT_DEADLINE = 30.0  # seconds for one whole check, every request and redirect in it
MAX_MANIFEST_BYTES = 4 << 20  # what the distribution spec lets registries refuse beyond
MAX_TOKEN_BYTES = 1 << 20
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

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
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
class ManifestRef:
    """Which manifest to ask one registry for: ``repository`` (relative to the
    registry, Docker Hub's ``library/`` added) and ``reference``, a tag or a digest."""

    repository: str
    reference: str

    def __str__(self) -> str:
        sep = "@" if ":" in self.reference else ":"
        return f"{self.repository}{sep}{self.reference}"


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


def manifest_ref(image: str, endpoint: str) -> ManifestRef:
    """The manifest ``image`` names on ``endpoint``: parsed by ``imageref.parse`` (a
    missing tag is ``latest``; a digest wins over a tag), a leading host that is the
    endpoint dropped, and on Docker Hub a one-component name put under ``library/``.
    ValueError (``InvalidImageRef``) when malformed or when it names another registry."""
    ref = imageref.parse(image.strip(), default_tag="latest")
    host = registry_host(endpoint)
    domain, path = imageref.split_domain(ref.name)
    repository = ref.name
    if domain is not None:
        if domain.lower() == endpoint.strip().lower() or registry_host(domain) == host:
            repository = path
        elif not imageref.is_component(domain):  # docker.io/... on a mirror is a path
            raise imageref.InvalidImageRef(
                f'image "{image.strip()}" names the registry {domain}, not the endpoint {endpoint}')
    if host == DOCKER_HUB_API and "/" not in repository:
        repository = "library/" + repository
    return ManifestRef(repository=repository, reference=ref.digest or ref.tag or "latest")


def check_pull(
    endpoint: str,
    image: str,
    *,
    username: str | None = None,
    password: Secret | None = None,
    insecure: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    transport=None,
) -> PullCheck:
    """Whether ``image`` can be pulled from ``endpoint`` with these credentials."""
    try:
        ref = manifest_ref(image, endpoint)
    except ValueError as exc:
        return PullCheck("not_found", 0, None, f"invalid image reference {image!r}: {exc}")
    with _Session(endpoint, username, password, insecure, timeout, deadline, transport) as session:
        return session.run(lambda: session.pull(ref))


def check_login(
    endpoint: str,
    *,
    username: str | None = None,
    password: Secret | None = None,
    insecure: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    transport=None,
) -> PullCheck:
    """Whether the registry accepts these credentials (``GET /v2/`` through the challenge)."""
    with _Session(endpoint, username, password, insecure, timeout, deadline, transport) as session:
        return session.run(session.login)


_ssl_lock = threading.Lock()
_ssl_context = None


def shared_ssl_context():
    """One SSL context for every check: building one costs ~30 ms of CPU under the GIL,
    which made parallel checks no faster than serial ones."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            import httpx

            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


@dataclass(frozen=True)
class _Answer:
    """A response read within the caps: status, headers and at most ``limit`` bytes."""

    status_code: int
    headers: httpx.Headers
    content: bytes


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
    """One check: one httpx.Client, the credentials, the current Authorization and
    the deadline (a timer shuts the check's sockets when it passes)."""

    def __init__(self, endpoint: str, username: str | None, password: Secret | str | None, insecure: bool,
                 timeout: float, deadline: float, transport: httpx.BaseTransport | None) -> None:
        import httpx

        from reconciler.transport import ACCEPT_ENCODING

        self.host = registry_host(endpoint)
        self.insecure = insecure
        self.timeout = timeout
        self.deadline = deadline
        self.expires = time.monotonic() + deadline
        explicit_https = endpoint.strip().lower().startswith("https://")
        plain = not explicit_https and (insecure or is_loopback(self.host))
        self.base = f"{'http' if plain else 'https'}://{self.host}"
        self.username = username
        self.password = Secret(password) if isinstance(password, str) else password
        self.has_creds = bool(username) or password is not None
        self.authorization: str | None = None
        self._lock = threading.Lock()
        self._sockets: list = []
        self._expired = False
        self._timer = threading.Timer(deadline, self._expire)
        self._timer.daemon = True
        self.client = httpx.Client(
            transport=transport,
            verify=shared_ssl_context() if transport is None else True,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # followed in _send, without reading redirect bodies
            headers={"User-Agent": f"regsync/{__version__}", "Accept-Encoding": ACCEPT_ENCODING},
            event_hooks={"request": [self._guard]},
        )

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        self.client.close()

    # --- the deadline ---------------------------------------------------------
    def _trace(self, event: str, info: dict) -> None:
        """httpcore's trace hook: remember each new connection's socket."""
        if event == "connection.connect_tcp.complete":
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                self._sockets.append(sock)
                expired = self._expired
            if expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets = list(self._sockets)
        for sock in sockets:  # wakes a read blocked on a registry that drips its answer
            _shut(sock)

    def _past_deadline(self, what: str) -> _Done:
        return _Done(PullCheck("unreachable", 0, None,
                               f"{what}: gave up after the check's {self.deadline:g}s deadline"))

    def _remaining(self, what: str) -> float:
        left = self.expires - time.monotonic()
        if left <= 0 or self._expired:
            raise self._past_deadline(what)
        return left

    # --- plumbing -------------------------------------------------------------
    def _guard(self, request) -> None:
        if request.url.scheme == "http" and not (self.insecure or is_loopback(request.url.netloc.decode())):
            raise _Refused(
                f"refused to send a request over plain HTTP to {request.url.host} (not loopback, not insecure)"
            )

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
        except (httpx.RequestError, httpx.InvalidURL) as exc:  # e.g. a malformed realm URL
            result = PullCheck("unreachable", 0, None, self._scrub(f"request failed: {exc}"))
        return result

    def _send(self, method: str, url: str, *, what: str, registry_auth: bool = True,
              limit: int = 0, headers: dict | None = None, params=None) -> _Answer:
        """One request, its redirects followed (Authorization dropped when one leaves the
        origin); the body read up to ``limit`` bytes (0: not read)."""
        import httpx

        headers = dict(headers or {})
        if registry_auth and self.authorization:
            headers["Authorization"] = self.authorization
        target = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)
        for _hop in range(MAX_REDIRECTS + 1):
            left = self._remaining(what)
            request = self.client.build_request(
                method, target, headers=headers, timeout=httpx.Timeout(min(self.timeout, left)),
                extensions={"trace": self._trace})
            try:
                response = self.client.send(request, stream=True)
                try:
                    location = response.headers.get("Location")
                    if response.status_code in _REDIRECTS and location:
                        following = target.join(location)
                        if (following.scheme, following.netloc) != (target.scheme, target.netloc):
                            headers.pop("Authorization", None)
                        target = following
                        continue
                    content = self._read(response, limit, what)
                    return _Answer(response.status_code, response.headers, content)
                finally:
                    response.close()
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if self._expired:
                    raise self._past_deadline(what) from exc
                text = self._scrub(_transport_text(exc, self.timeout))
                raise _Done(PullCheck("unreachable", 0, None, f"{what}: {text}")) from exc
        raise _Done(PullCheck("unreachable", 0, None, f"{what}: more than {MAX_REDIRECTS} redirects"))

    def _read(self, response, limit: int, what: str) -> bytes:
        if limit <= 0:
            return b""
        from reconciler.transport import inflated

        data = bytearray()
        for chunk in inflated(response, limit):  # the cap holds while a gzip bomb inflates
            data += chunk
            if len(data) > limit:
                raise _Done(PullCheck("unreachable", response.status_code, None,
                                      f"{what}: the answer is larger than {limit} bytes"))
            self._remaining(what)
        return bytes(data)

    # --- the challenge --------------------------------------------------------
    def ping(self):
        """``GET /v2/`` without credentials; returns the answer (401 carries the challenge)."""
        r = self._send("GET", f"{self.base}/v2/", what=f"{self.host} unreachable")
        if r.status_code >= 500:
            message = f"{self.host} answered {r.status_code} to GET /v2/"
            raise _Done(PullCheck("unreachable", r.status_code, None, message))
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
                       limit=MAX_TOKEN_BYTES, what=f"token endpoint {realm_host} unreachable")
        who = "the credentials" if self.has_creds else "anonymous access"
        if r.status_code in (401, 403):
            raise _Done(PullCheck("unauthorized", r.status_code, None,
                                  f"token endpoint {realm_host} refused {who} ({r.status_code})"))
        if r.status_code != 200:
            outcome = "unreachable" if r.status_code >= 500 else "unauthorized"
            message = f"token endpoint {realm_host} answered {r.status_code}"
            raise _Done(PullCheck(outcome, r.status_code, None, message))
        try:
            body = json.loads(r.content)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError, RecursionError):
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

    def pull(self, ref: ManifestRef) -> PullCheck:
        r = self.ping()
        scope = f"repository:{ref.repository}:pull"
        if r.status_code == 401:
            self.answer_challenge(r, scope)
        url = f"{self.base}/v2/{ref.repository}/manifests/{ref.reference}"
        headers = {"Accept": MANIFEST_ACCEPT}
        what = f"{self.host} unreachable"
        r = self._send("HEAD", url, headers=dict(headers), what=what)
        if r.status_code == 401 and "WWW-Authenticate" in r.headers:
            previous = self.authorization
            self.answer_challenge(r, scope)  # a new scope, or Basic after an open /v2/: once
            if self.authorization != previous:
                r = self._send("HEAD", url, headers=dict(headers), what=what)
        if r.status_code == 405:  # a registry without HEAD on manifests
            r = self._send("GET", url, headers=dict(headers), what=what, limit=MAX_MANIFEST_BYTES)
        status = r.status_code
        if status == 200:
            digest = r.headers.get("Docker-Content-Digest")
            if not digest:
                body = r.content or self._send("GET", url, headers=dict(headers), what=what,
                                               limit=MAX_MANIFEST_BYTES).content
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


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


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
