"""The OCI pull check against real registries (docker-registry, Basic and token auth).

An httpx MockTransport appears only where no real part can fail the needed way:
a 5xx answer, and hosts other than loopback (the tests never leave 127.0.0.1).
"""

from __future__ import annotations

import socket
import uuid

import httpx
import pytest

from reconciler.oci import MANIFEST_ACCEPT, PullCheck, check_login, check_pull, manifest_ref
from reconciler.secretvalue import Secret

HELLO = "test/hello:v1"
DOCKER = "test/hello-docker:v1"
INDEX = "test/hello:index"


@pytest.fixture(params=["registry_basic", "registry_token"])
def registry(request):
    """Each test using this runs once per auth kind."""
    return request.getfixturevalue(request.param)


def pull(reg, image, password=None, **kw) -> PullCheck:
    secret = Secret(reg.password if password is None else password)
    return check_pull(reg.endpoint, image, username=reg.username, password=secret, **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """A transport standing in for hosts the tests may not reach; records every request."""

    def __init__(self, answer):
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def urls(self) -> list[str]:
        return [str(r.url) for r in self.requests]


# --- ok ---------------------------------------------------------------------------


@pytest.mark.parametrize("image", [HELLO, DOCKER, INDEX], ids=["oci-manifest", "docker-schema2", "oci-index"])
def test_pull_ok_gives_the_exact_digest(registry, image):
    result = pull(registry, image)
    assert result == PullCheck("ok", 200, registry.images[image], "")
    assert result.ok


def test_pull_by_digest(registry):
    digest = registry.images[HELLO]
    assert pull(registry, f"test/hello@{digest}").digest == digest
    unknown = "sha256:" + "0" * 64
    result = pull(registry, f"test/hello@{unknown}")
    assert (result.outcome, result.status) == ("not_found", 404)


def test_pull_accepts_a_reference_that_names_the_endpoint(registry):
    result = pull(registry, f"{registry.endpoint}/{HELLO}")
    assert (result.outcome, result.digest) == ("ok", registry.images[HELLO])


def test_bearer_flow_asks_the_issuer_for_pull_on_the_repository(registry_token):
    before = len(registry_token.issuer.requests)
    assert pull(registry_token, DOCKER).ok
    asked = registry_token.issuer.requests[before:]
    assert asked == [{"user": registry_token.username, "scopes": ["repository:test/hello-docker:pull"], "status": 200}]


def test_a_user_added_while_the_registry_runs_can_pull(registry):
    password = f"late-{uuid.uuid4().hex}"
    registry.set_user("lateuser", password)
    try:
        result = check_pull(registry.endpoint, HELLO, username="lateuser", password=Secret(password))
        assert result.ok
    finally:
        registry.remove_user("lateuser")
    result = check_pull(registry.endpoint, HELLO, username="lateuser", password=Secret(password))
    assert (result.outcome, result.status) == ("unauthorized", 401)


# --- refused ----------------------------------------------------------------------


def test_wrong_password_is_unauthorized_401(registry_basic):
    result = pull(registry_basic, HELLO, password="wrong")
    assert result == PullCheck("unauthorized", 401, None, f"{registry_basic.endpoint} refused to serve {HELLO} (401)")


def test_wrong_password_at_the_token_issuer_is_unauthorized_401(registry_token):
    result = pull(registry_token, HELLO, password="wrong")
    assert (result.outcome, result.status, result.digest) == ("unauthorized", 401, None)
    assert result.error.startswith("token endpoint 127.0.0.1:")
    assert result.error.endswith("refused the credentials (401)")


def test_no_credentials_is_unauthorized(registry_basic):
    result = check_pull(registry_basic.endpoint, HELLO)
    assert (result.outcome, result.status) == ("unauthorized", 401)
    assert "none were given" in result.error


def test_anonymous_token_retries_the_new_scope_once_then_gives_up(registry_token):
    before = len(registry_token.issuer.requests)
    result = check_pull(registry_token.endpoint, HELLO)
    assert (result.outcome, result.status) == ("unauthorized", 401)
    assert "no credentials were given" in result.error
    asked = registry_token.issuer.requests[before:]
    assert [a["user"] for a in asked] == ["", ""]  # first token, then one retry for the scope


# --- not found ----------------------------------------------------------------------


@pytest.mark.parametrize("image", ["test/hello:nope", "test/no-such-repo:v1"], ids=["unknown-tag", "unknown-repo"])
def test_unknown_image_is_not_found_404(registry, image):
    result = pull(registry, image)
    assert result == PullCheck("not_found", 404, None, f"{image} not found on {registry.endpoint} (manifest unknown)")


def test_malformed_reference_sends_nothing():
    recorder = Recorder(lambda r: httpx.Response(200))
    result = check_pull("127.0.0.1:5000", "Test/Hello:v1", transport=recorder.transport)
    assert (result.outcome, result.status) == ("not_found", 0)
    assert result.error == "invalid image reference 'Test/Hello:v1': repository name \"Test/Hello\" must be lowercase"
    assert recorder.requests == []


# --- unreachable --------------------------------------------------------------------


def test_closed_port_is_unreachable():
    result = check_pull(f"127.0.0.1:{closed_port()}", HELLO, username="u", password=Secret("p"), timeout=2)
    assert (result.outcome, result.status, result.digest) == ("unreachable", 0, None)
    assert result.error.endswith("unreachable: connection refused")


def test_a_registry_that_never_answers_times_out():
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        result = check_pull(f"127.0.0.1:{port}", HELLO, timeout=0.3)
    assert (result.outcome, result.status) == ("unreachable", 0)
    assert "timed out after 0.3s" in result.error


def test_tls_to_a_plain_http_registry_is_a_tls_error(registry_basic):
    result = check_pull(f"https://{registry_basic.endpoint}", HELLO, timeout=2)
    assert (result.outcome, result.status) == ("unreachable", 0)
    assert "TLS error" in result.error


def test_server_error_is_unreachable_with_its_status():
    recorder = Recorder(lambda r: httpx.Response(503))
    result = check_pull("127.0.0.1:5000", HELLO, transport=recorder.transport)
    assert result == PullCheck("unreachable", 503, None, "127.0.0.1:5000 answered 503 to GET /v2/")


# --- transport rules (hosts other than loopback: a recording transport) -----------------


def test_non_loopback_registry_is_spoken_to_over_https_only():
    def answer(request):
        if request.url.path == "/v2/":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(200, headers={"Docker-Content-Digest": "sha256:" + "a" * 64})

    for endpoint in ("registry.example.com", "http://registry.example.com"):
        recorder = Recorder(answer)
        result = check_pull(endpoint, "team/app:1", username="u", password=Secret("p"), transport=recorder.transport)
        assert result.ok
        assert recorder.urls == [
            "https://registry.example.com/v2/",
            "https://registry.example.com/v2/team/app/manifests/1",
        ]
        assert recorder.requests[1].headers["Accept"] == MANIFEST_ACCEPT
        assert recorder.requests[1].method == "HEAD"

    recorder = Recorder(answer)
    check_pull("registry.example.com", "team/app:1", username="u", password=Secret("p"),
               insecure=True, transport=recorder.transport)
    assert recorder.urls[0] == "http://registry.example.com/v2/"


def test_plain_http_token_realm_on_another_host_is_refused_before_sending_credentials():
    challenge = 'Bearer realm="http://auth.example.com/token",service="reg"'
    recorder = Recorder(lambda r: httpx.Response(401, headers={"WWW-Authenticate": challenge}))
    result = check_pull("registry.example.com", "team/app:1", username="u", password=Secret("p"),
                        transport=recorder.transport)
    assert (result.outcome, result.status) == ("unreachable", 0)
    assert "plain HTTP to auth.example.com" in result.error
    assert recorder.urls == ["https://registry.example.com/v2/"]


def test_docker_hub_names_go_to_registry_1_under_library():
    recorder = Recorder(lambda r: httpx.Response(404))
    for image in ("nginx:1.25", "docker.io/nginx:1.25", "index.docker.io/library/nginx:1.25"):
        check_pull("index.docker.io", image, transport=recorder.transport)
    heads = [str(r.url) for r in recorder.requests if r.method == "HEAD"]
    assert heads == ["https://registry-1.docker.io/v2/library/nginx/manifests/1.25"] * 3


def test_manifest_ref():
    assert str(manifest_ref("127.0.0.1:5000/test/hello:v1", "127.0.0.1:5000")) == "test/hello:v1"
    assert str(manifest_ref("test/hello", "127.0.0.1:5000")) == "test/hello:latest"
    digest = "sha256:" + "b" * 64
    assert str(manifest_ref(f"test/hello:v1@{digest}", "ghcr.io")) == f"test/hello@{digest}"
    assert str(manifest_ref("ghcr.io/acme/app:2", "ghcr.io")) == "acme/app:2"
    assert str(manifest_ref("https://ghcr.io".removeprefix("https://") + "/a:1", "https://ghcr.io")) == "a:1"
    assert manifest_ref("nginx", "docker.io").repository == "library/nginx"
    # a mirror that keeps the upstream host as the first path component
    assert str(manifest_ref("docker.io/library/nginx:1", "mirror.example.com")) == \
        "docker.io/library/nginx:1"
    with pytest.raises(ValueError, match="names the registry 127.0.0.1:6000, not the endpoint"):
        manifest_ref("127.0.0.1:6000/a:1", "127.0.0.1:5000")
    with pytest.raises(ValueError, match="must be lowercase"):
        manifest_ref("Acme/App:1", "ghcr.io")


# --- secrets ------------------------------------------------------------------------


def test_canary_password_never_appears_in_any_result(registry, tmp_path):
    canary = f"CANARY-{uuid.uuid4()}"
    registry.set_user("canary", canary)
    try:
        results = [
            check_pull(registry.endpoint, HELLO, username="canary", password=Secret(canary)),
            check_pull(registry.endpoint, "test/nope:v1", username="canary", password=Secret(canary)),
            check_pull(registry.endpoint, HELLO, username="testuser", password=Secret(canary)),
            check_pull(f"https://{registry.endpoint}", HELLO, username="canary", password=Secret(canary)),
            check_pull(f"127.0.0.1:{closed_port()}", HELLO, username="canary", password=Secret(canary)),
            check_login(registry.endpoint, username="canary", password=Secret(canary)),
            check_login(registry.endpoint, username="testuser", password=Secret(canary)),
        ]
    finally:
        registry.remove_user("canary")
    assert [r.outcome for r in results] == ["ok", "not_found", "unauthorized", "unreachable", "unreachable",
                                            "ok", "unauthorized"]
    for result in results:
        assert canary not in repr(result) and canary not in result.error


# --- login ----------------------------------------------------------------------------


def test_login_ok_and_refused(registry):
    ok = check_login(registry.endpoint, username=registry.username, password=Secret(registry.password))
    assert ok == PullCheck("ok", 200, None, "")
    refused = check_login(registry.endpoint, username=registry.username, password=Secret("wrong"))
    assert (refused.outcome, refused.status, refused.digest) == ("unauthorized", 401, None)


def test_login_to_a_closed_port_is_unreachable():
    result = check_login(f"127.0.0.1:{closed_port()}", username="u", password=Secret("p"))
    assert (result.outcome, result.status) == ("unreachable", 0)


def test_a_password_inside_a_transport_error_is_masked():
    """No real part puts the password in an exception; a transport that does stands in."""
    canary = f"CANARY-{uuid.uuid4()}"

    def explode(request):
        raise httpx.ConnectError(f"cannot connect, secret was {canary}", request=request)

    result = check_pull("127.0.0.1:5000", HELLO, username="u", password=Secret(canary),
                        transport=httpx.MockTransport(explode))
    assert (result.outcome, result.status) == ("unreachable", 0)
    assert result.error == "127.0.0.1:5000 unreachable: connection failed: cannot connect, secret was ********"


# --- time and size bounds (a small misbehaving registry: no real one fails this way) ------


class Misbehaving:
    """A loopback HTTP server answering each path with a scripted (mis)behaviour.

    ``script`` maps ``(method, path)`` to a function ``(handler, stop)`` that writes a
    raw answer; writes end when the client goes away or the server stops.
    """

    def __init__(self, script):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from reconciler.sandbox.serving import ServerThread

        self.stop_event = threading.Event()
        self.seen: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                path = self.path.split("?")[0]
                outer.seen.append((self.command, path))
                answer = script.get((self.command, path))
                try:
                    if answer is None:
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        answer(self, outer.stop_event)
                except OSError:  # the client hung up: what the check is meant to do
                    self.close_connection = True

            do_GET = do_HEAD = _any

        self.thread = ServerThread(ThreadingHTTPServer(("127.0.0.1", 0), Handler), name="misbehaving")
        self.endpoint = f"127.0.0.1:{self.thread.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.stop()


def challenge(realm_path="/token"):
    def answer(handler, stop):
        realm = f"http://{handler.headers['Host']}{realm_path}"
        handler.send_response(401)
        handler.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="s"')
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def endless(code=200, chunk=b"x" * 65536, **headers):
    """An answer whose chunked body never ends."""
    headers.setdefault("Content_Type", "application/json")

    def answer(handler, stop):
        handler.send_response(code)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        while not stop.is_set():
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    return answer


def drip(handler, stop):
    """A status line, then one header byte at a time, each well within any read timeout."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    handler.wfile.flush()
    while not stop.wait(0.05):
        handler.wfile.write(b"a")
        handler.wfile.flush()


def status(code, **headers):
    def answer(handler, stop):
        handler.send_response(code)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def test_a_registry_that_drips_its_answer_is_cut_off_at_the_deadline():
    with Misbehaving({("GET", "/v2/"): drip}) as reg:
        result = check_pull(reg.endpoint, HELLO, timeout=5, deadline=0.5)
        login = check_login(reg.endpoint, username="u", password=Secret("p"), timeout=5, deadline=0.5)
    for one in (result, login):
        assert (one.outcome, one.status) == ("unreachable", 0)
        assert one.error == f"{reg.endpoint} unreachable: gave up after the check's 0.5s deadline"


def test_an_endless_manifest_is_capped():
    with Misbehaving({("GET", "/v2/"): status(200),
                      ("HEAD", "/v2/test/hello/manifests/v1"): status(405),
                      ("GET", "/v2/test/hello/manifests/v1"): endless()}) as reg:
        result = check_pull(reg.endpoint, HELLO, timeout=5)
    assert (result.outcome, result.status) == ("unreachable", 200)
    assert result.error == f"{reg.endpoint} unreachable: the answer is larger than 4194304 bytes"


def test_an_endless_or_inflating_token_answer_is_capped():
    import gzip

    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in ~8 KiB

    def inflating(handler, stop):
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(bomb)))
        handler.end_headers()
        handler.wfile.write(bomb)

    for token in (endless(), inflating):
        with Misbehaving({("GET", "/v2/"): challenge(), ("GET", "/token"): token}) as reg:
            result = check_pull(reg.endpoint, HELLO, username="u", password=Secret("p"), timeout=5)
        assert (result.outcome, result.status) == ("unreachable", 200)
        assert result.error == (f"token endpoint {reg.endpoint} unreachable: the answer is "
                                "larger than 1048576 bytes")


def test_an_inflating_manifest_is_inflated_no_further_than_its_cap():
    """A registry's gzip bomb: the 4 MiB manifest cap holds while inflating, not only
    after each 64 KiB read was inflated whole (64 MiB each)."""
    import gzip
    import tracemalloc

    bomb = gzip.compress(b"\0" * (256 << 20), 9)

    def inflating(handler, stop):
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(bomb)))
        handler.end_headers()
        handler.wfile.write(bomb)

    with Misbehaving({("GET", "/v2/"): status(200),
                      ("HEAD", "/v2/test/hello/manifests/v1"): status(405),
                      ("GET", "/v2/test/hello/manifests/v1"): inflating}) as reg:
        tracemalloc.start()
        try:
            result = check_pull(reg.endpoint, HELLO, timeout=5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.error == f"{reg.endpoint} unreachable: the answer is larger than 4194304 bytes"
    assert peak < 32 << 20, f"{peak / (1 << 20):.0f} MiB held while inflating"


def test_a_redirect_body_is_never_read():
    with Misbehaving({("GET", "/v2/"): endless(302, Location="/v2/real/"),
                      ("GET", "/v2/real/"): status(200)}) as reg:
        result = check_login(reg.endpoint, timeout=5)
    assert result == PullCheck("ok", 200, None, "")


def test_redirects_are_bounded():
    with Misbehaving({("GET", "/v2/"): status(302, Location="/v2/")}) as reg:
        result = check_login(reg.endpoint, timeout=5)
    assert (result.outcome, result.status) == ("unreachable", 0)
    assert result.error == f"{reg.endpoint} unreachable: more than 5 redirects"
