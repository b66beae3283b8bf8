"""A local stand-in for the external-registries part of the Replicated Vendor API v3.

Serves the swagger contract's operations under ``/vendor/v3`` on a stdlib
``ThreadingHTTPServer``, so ``REPLICATED_API_ORIGIN=http://HOST:PORT/vendor`` points
regsync (or the official CLI) at it. Choices where the contract is silent:

- The test endpoint answers ``{"status": 502, "error": "..."}`` when the upstream
  registry cannot be reached at all (the OCI check's status 0), like a gateway would.
- ``DELETE`` of an unknown slug answers 404 ``{"message"}`` (the contract lists no 404
  for delete; a 404 is what every other by-slug operation answers).
- The test endpoint takes ``slug`` alone too (providers.md: "endpoint or slug"); with
  the saved credentials it pulls from the saved endpoint only, and a different
  ``endpoint`` in the body is a 400 (saved passwords never go to another host).
- Empty strings in an update body mean "keep", as omitted fields do.
- ``GET /external_registry/logs`` without ``endpoint`` or ``slug`` is a 400; logs of a
  slug with no entries are ``{"logs": []}``.
- A read-only token (``readonly_token``) may list, read logs and the IAM config;
  create, update, delete and test answer 403.

- ``GET /v3/apps`` (outside the external-registries contract; the official CLI's
  ``ListApps``) answers ``{"apps": [...]}``, and ``{}`` when there are none, as the
  real API does: the apps seeded with ``SandboxServer(apps=...)`` (``regsync sandbox
  --app``), ``set_apps`` or ``POST /_sandbox/apps``.

Control endpoints (same token, never faulted or counted): ``GET /_sandbox/stats``,
``POST /_sandbox/faults``, ``POST /_sandbox/reset`` (the apps back to the seeds),
``POST /_sandbox/apps`` (``{"apps": [{"slug", "name"?, "id"?}]}``: the team's apps,
replacing any before).
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from reconciler.errors import SandboxError
from reconciler.sandbox.apps import Apps
from reconciler.sandbox.faults import MAX_LATENCY_MS, Faults, Stats, format_retry_after
from reconciler.sandbox.operations import HANDLERS, BadRequest, forbidden, parse_json
from reconciler.sandbox.serving import ServerThread
from reconciler.sandbox.store import TEAM_ID, Store

API_PREFIX = "/vendor/v3"
CONTROL_PREFIX = "/_sandbox/"
MAX_BODY = 1 << 20

_ROUTES = (
    ("GET", re.compile(r"^/external_registries$"), "list"),
    ("POST", re.compile(r"^/external_registry$"), "create"),
    ("PUT", re.compile(r"^/external_registry/test$"), "test"),
    ("GET", re.compile(r"^/external_registry/logs$"), "logs"),
    ("GET", re.compile(r"^/external_registry/iam$"), "iam"),
    ("GET", re.compile(r"^/apps$"), "apps"),
    ("PUT", re.compile(r"^/external_registry/(?P<slug>[^/]+)$"), "update"),
    ("DELETE", re.compile(r"^/external_registry/(?P<slug>[^/]+)$"), "delete"),
)
_READ_OPERATIONS = frozenset({"list", "logs", "iam", "apps"})


def route(method: str, raw_path: str) -> tuple[str | None, str | None]:
    """(operation, slug) for a raw path under /vendor/v3; (None, None) when unknown."""
    for route_method, pattern, operation in _ROUTES:
        match = pattern.match(raw_path)
        if match and route_method == method:
            slug = match.groupdict().get("slug")
            return operation, unquote(slug) if slug is not None else None
    return None, None


def _printable(text: str, limit: int = 200) -> str:
    """A request path for the access log: control characters escaped, length clipped."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle plus the
    # client's delayed ACK adds ~40 ms to every answer on keep-alive connections.
    disable_nagle_algorithm = True
    server_version = "regsync-sandbox"
    sys_version = ""
    timeout = 60  # seconds an idle or stalled connection may hold a thread
    sandbox: SandboxServer  # set on the per-server subclass

    def log_message(self, format, *args):  # noqa: A002 - never log request lines or headers
        pass

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_HEAD(self):
        self._not_allowed()

    def do_OPTIONS(self):
        self._not_allowed()

    def do_TRACE(self):
        self._not_allowed()

    def _not_allowed(self) -> None:
        self.close_connection = True  # a body the client sent is not read
        self._send(405, {"message": f"method {self.command} is not allowed"},
                   {"Allow": "GET, POST, PUT, DELETE"})

    def send_error(self, code, message=None, explain=None):
        """The stdlib's errors (unknown method, malformed request line, headers too
        long) as JSON ``{"message"}``, like every other error, not its HTML page."""
        short = self.responses.get(code, ("error",))[0]
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable version: answer with headers
            self.request_version = "HTTP/1.0"
        self._send(code, {"message": message or short}, {"Connection": "close"})

    # -- plumbing ------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        data = bytearray()
        while True:
            size = int(self.rfile.readline(64).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return bytes(data)
            if len(data) + size > MAX_BODY:
                raise ValueError("body too large")
            data += self.rfile.read(size)
            self.rfile.readline(8)

    def _send(self, status: int, body: dict | None, headers: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)
        self._access(status)

    def _drop(self) -> None:
        """Close the connection without writing a single response byte."""
        self.close_connection = True
        self._access("dropped")

    def _access(self, status) -> None:
        out = self.sandbox.out
        if out is not None:
            path = _printable(urlsplit(getattr(self, "path", "") or "").path)
            try:
                with self.sandbox._out_lock:
                    out.write(f"{self.command or '-'} {path} {status}\n")
                    out.flush()
            except (OSError, ValueError):
                pass

    def _authorized(self) -> str | None:
        """"full", "readonly" or None (missing or wrong token)."""
        given = (self.headers.get("Authorization") or "").strip().encode()
        if not given:
            return None
        if hmac.compare_digest(given, self.sandbox.token.encode()):
            return "full"
        ro = self.sandbox.readonly_token
        if ro and hmac.compare_digest(given, ro.encode()):
            return "readonly"
        return ""

    # -- dispatch ------------------------------------------------------------------
    def _dispatch(self):
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            return self._send(400, {"message": "the request body is too large or malformed"})
        parts = urlsplit(self.path)
        if parts.path.startswith(CONTROL_PREFIX):
            return self._control(parts.path, body)
        if not parts.path.startswith(API_PREFIX + "/"):
            return self._send(404, {"message": "not found"})
        raw_path = parts.path[len(API_PREFIX):]
        operation, slug = route(self.command, raw_path)
        sandbox = self.sandbox
        sandbox.stats.count(operation)
        faults = sandbox.faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        decision = faults.decide(self.command, unquote(raw_path), operation=operation)
        if decision.before == "drop_before":
            return self._drop()
        if decision.before == "error":
            return self._fault_answer(decision.status, decision.retry_after)
        status, answer = self._api(operation, slug, body, parse_qs(parts.query))
        if decision.after == "drop_after":
            return self._drop()
        if decision.after == "error_after":
            return self._fault_answer(decision.status, decision.retry_after)
        self._send(status, answer)

    def _fault_answer(self, status: int, retry_after: float | None) -> None:
        headers = {} if retry_after is None else {"Retry-After": format_retry_after(retry_after)}
        if status == 403:
            body = forbidden("injected fault")
        elif status == 429:
            body = {"message": "too many requests (sandbox rate limit)"}
        else:
            body = {"message": f"injected fault: HTTP {status}"}
        self._send(status, body, headers)

    def _api(self, operation, slug, body: bytes, query: dict) -> tuple[int, dict | None]:
        access = self._authorized()
        if access is None:
            return 401, {"message": "Unauthorized: no API token in the Authorization header"}
        if not access:
            return 401, {"message": "Unauthorized: the API token is not valid"}
        if operation is None:
            return 404, {"message": "not found"}
        if access == "readonly" and operation not in _READ_OPERATIONS:
            return 403, forbidden(
                "this token is read-only and cannot " + operation + " external registries"
            )
        try:
            return HANDLERS[operation](self.sandbox, slug, body, query)
        except BadRequest as exc:
            return 400, {"message": str(exc)}
        except SandboxError as exc:
            return 500, {"message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bug answers 500, never a silent drop
            return 500, {"message": f"internal sandbox error ({type(exc).__name__})"}

    def _control(self, path: str, body: bytes) -> None:
        if self._authorized() != "full":
            return self._send(401, {"message": "Unauthorized"})
        sandbox = self.sandbox
        if path == "/_sandbox/stats" and self.command == "GET":
            return self._send(200, sandbox.stats.snapshot())
        if path == "/_sandbox/reset" and self.command == "POST":
            sandbox.reset()
            return self._send(200, {"reset": True})
        knobs = {"/_sandbox/apps": ("apps", sandbox.team_apps.configure,
                                    lambda: {"apps": sandbox.apps()}),
                 "/_sandbox/faults": ("faults", sandbox.faults.configure, sandbox.faults.describe)}
        if path in knobs and self.command == "POST":
            name, configure, describe = knobs[path]
            try:  # every field is checked before anything changes
                configure(parse_json(body or b"{}", what=f"the {name} body"))
            except BadRequest as exc:
                return self._send(400, {"message": str(exc)})
            except ValueError as exc:
                return self._send(400, {"message": f"bad {name} body: {exc}"})
            return self._send(200, describe())
        return self._send(404, {"message": "not found"})


#: Connections the kernel queues before the server accepts them. socketserver's
#: default of 5 made 200 simultaneous clients wait seconds for a connect, or time out.
LISTEN_BACKLOG = 128


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request, client_address):  # no traceback on client resets
        pass


class SandboxServer:
    """The sandbox, started in a background thread by ``start()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str = ":memory:",
        token: str,
        key: bytes,
        readonly_token: str | None = None,
        faults: Faults | None = None,
        upstream_timeout: float = 10.0,
        upstream_deadline: float = 30.0,
        out=None,
        team_id: str = TEAM_ID,
        backlog: int = LISTEN_BACKLOG,
        apps=(),
    ):
        if not token:
            raise SandboxError("the sandbox needs a non-empty API token")
        self.host, self.port, self.db = host, port, db
        self.token = token
        self.readonly_token = readonly_token
        self.faults = faults or Faults()
        self.stats = Stats()
        self.upstream_timeout = upstream_timeout  # per request of an OCI check
        self.upstream_deadline = upstream_deadline  # per whole OCI check
        self.backlog = backlog
        self.out = out
        self._out_lock = threading.Lock()
        self.team_apps = Apps(apps)  # ValueError for a bad seed or two with one slug or id
        self.store = Store(db=db, key=key, team_id=team_id)
        self._serving: ServerThread | None = None

    def set_apps(self, apps) -> None:
        """Replace the team's apps (``GET /v3/apps``): each an ``App`` or a mapping with
        ``slug`` and optional ``name`` and ``id``. ValueError changes nothing."""
        self.team_apps.replace(apps)

    def apps(self) -> list[dict]:
        """The team's apps as ``GET /v3/apps`` lists them."""
        return [app.to_api(self.store.team_id) for app in self.team_apps.list()]

    @property
    def origin(self) -> str:
        """What REPLICATED_API_ORIGIN should be: ``http://HOST:PORT/vendor`` (loopback
        for a wildcard host: this machine's clients reach it there)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/vendor"

    def env(self) -> dict[str, str]:
        """The environment that points regsync (or the official CLI) at this sandbox."""
        return {"REPLICATED_API_TOKEN": self.token, "REPLICATED_API_ORIGIN": self.origin}

    def start(self) -> SandboxServer:
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        server_class = type("SandboxHTTPServer", (_Server,), {"request_queue_size": self.backlog})
        try:
            server = server_class((self.host, self.port), handler)
        except OSError as exc:
            self.store.close()
            raise SandboxError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        self._serving = ServerThread(server, name="regsync-sandbox")
        self.port = self._serving.port
        return self

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None
        self.store.close()

    def reset(self) -> None:
        """Forget every registry and log, zero the stats, clear the faults; the apps
        are the seeded ones again."""
        self.store.reset()
        self.team_apps.reset()
        self.stats.reset()
        self.faults.clear()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def banner(*, host: str, origin: str, db: str, token: str, default_token: bool, env,
           apps=()) -> list[str]:
    """What ``regsync sandbox`` says when it is up: a warning when the well-known
    token is served beyond loopback, then the lines to copy, the origin last."""
    where = "in memory" if db == ":memory:" else db
    lines = [f"regsync sandbox: Vendor API stand-in listening (state {where}); Ctrl-C stops it"]
    if default_token:
        lines.append(f'regsync sandbox: using the default token "{DEFAULT_TOKEN}" '
                     f"(local stand-in; set --token or {TOKEN_ENV} to choose one)")
        if not _is_loopback(host):
            lines.append(f"regsync sandbox: warning: listening on {host} with the well-known "
                         f'default token "{DEFAULT_TOKEN}": anyone who can reach this port can '
                         f"read and change its registries (set --token or {TOKEN_ENV})")
    if apps:
        lines.append(f"regsync sandbox: apps {', '.join(a.slug for a in apps)}")
    lines.append("regsync sandbox: point regsync or the replicated CLI here with:")
    lines.append(f"REPLICATED_API_TOKEN={_token_to_copy(token, default_token, env)}")
    lines.append(f"REPLICATED_API_ORIGIN={origin}")
    return lines


def _is_loopback(host: str) -> bool:
    from reconciler.oci import is_loopback

    return is_loopback(f"[{host}]" if ":" in host else host)


def _token_to_copy(token: str, default_token: bool, env) -> str:
    """The token for the line to copy: the well-known default as is, one from the
    environment by its variable, one given with --token not at all (never echoed)."""
    if default_token:
        return token
    if env.get(TOKEN_ENV) == token:
        return "$" + TOKEN_ENV
    return "<the token given with --token>"


DEFAULT_DB = "./regsync-sandbox.db"
DEFAULT_TOKEN = "sandbox-token"
TOKEN_ENV = "REGSYNC_SANDBOX_TOKEN"


def run(
    *,
    host: str = "127.0.0.1",
    port: int = 8800,
    db: str = DEFAULT_DB,
    token: str | None = None,
    readonly_token: str | None = None,
    key_file: str | None = None,
    env: Mapping[str, str] | None = None,
    latency_ms: int = 0,
    fail_before_rate: float = 0.0,
    lose_after_rate: float = 0.0,
    rate_limit: tuple[int, float] | None = None,
    seed: int | None = None,
    apps=(),
    out=None,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve in the foreground until Ctrl-C / SIGTERM (or ``stop`` is set); returns 0.

    Writes the origin line and one access line per request (method, path, status) to
    ``out``. The token is ``token``, else ``$REGSYNC_SANDBOX_TOKEN``, else the
    well-known ``sandbox-token``. The key is ``$REGSYNC_SANDBOX_KEY`` or the key file
    (default ``<db>.key``, created 0600). Raises SandboxError when it cannot start.
    """
    import os
    import signal
    import sys

    from reconciler.sandbox.store import load_key

    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    default_token = not token and not env.get(TOKEN_ENV)
    token = token or env.get(TOKEN_ENV) or DEFAULT_TOKEN
    if not 0 <= latency_ms <= MAX_LATENCY_MS:
        raise SandboxError(f"--latency-ms must be between 0 and {MAX_LATENCY_MS}, not {latency_ms}")
    for name, rate in (("fail-before-commit", fail_before_rate), ("lose-after-commit", lose_after_rate)):
        if not 0.0 <= rate <= 1.0:
            raise SandboxError(f"--{name} must be between 0 and 1, not {rate}")
    from reconciler.sandbox.apps import parse_app_option

    try:
        seeds = [parse_app_option(text) for text in apps]
        Apps(seeds)
    except ValueError as exc:
        raise SandboxError(str(exc)) from None
    faults = Faults(latency_ms=latency_ms, rate_limit=rate_limit, fail_before_rate=fail_before_rate,
                    lose_after_rate=lose_after_rate, seed=seed)
    key = load_key(db=db, key_file=key_file, env=env)
    server = SandboxServer(host=host, port=port, db=db, token=token, key=key,
                           readonly_token=readonly_token, faults=faults, out=out, apps=seeds)
    server.start()
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        for line in banner(host=host, origin=server.origin, db=db, token=token,
                           default_token=default_token, env=env, apps=seeds):
            out.write(line + "\n")
        out.flush()
        if ready is not None:
            ready.set()
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.stop()
        with server._out_lock:
            out.write("regsync sandbox: stopped\n")
            out.flush()
    return 0
