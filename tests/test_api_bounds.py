"""The client's bounds against peers that misbehave over real loopback sockets: a drip
of one byte at a time, an answer that never comes, a body that inflates past its cap,
JSON nested too deep, terminal escapes in a message, and an API that restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from reconciler.api import Limits, Timeout, VendorAPI, from_env
from reconciler.errors import APIError, APIUnavailable
from reconciler.retry import RetryPolicy
from reconciler.sandbox.server import SandboxServer
from tests.fixtures.apiclient import cli_project, closed_port, write
from tests.fixtures.badserver import gzip_bomb, json_response, response

QUICK = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, total_time=20.0)
REGISTRY = {"slug": "acme", "endpoint": "registry.example.com", "provider": "other",
            "authType": "password", "username": "robot", "updatedAt": "2026-01-01T00:00:00Z"}
# Far below what a drip would take, far above what a bounded request takes on a loaded machine.
NEVER = 15.0


def client(server, **kw) -> VendorAPI:
    kw.setdefault("retry", QUICK)
    return VendorAPI(token="test-token", origin=server.origin, **kw)


# --- time -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_slow_drip_answer_ends_at_the_request_deadline(bad_server, where):
    """One byte every 50 ms never trips a per-read timeout; the whole request's does."""
    body = json.dumps({"external_registries": []}).encode() + b" " * 10_000

    def drip(request, conn):
        whole = response(200, body)
        if where == "body":
            head, _, _ = whole.partition(b"\r\n\r\n")
            conn.sendall(head + b"\r\n\r\n")
            server.drip(conn, body, 0.05)
        else:
            server.drip(conn, whole, 0.05)

    server = bad_server(drip)
    started = time.monotonic()
    with client(server, timeout=Timeout(read=1.0, total=0.5)) as api:
        with pytest.raises(APIUnavailable, match=r"no complete answer within 0\.5 s") as info:
            api.list_registries()
    assert time.monotonic() - started < NEVER
    assert api.calls == 2  # RetryPolicy.max_timeouts: a second slow answer ends the call
    assert "after 2 attempts" in str(info.value)


def test_the_call_deadline_bounds_every_request_in_it(bad_server):
    server = bad_server(lambda request, conn: server.drip(conn, response(200, b"{}" * 9999), 0.05))
    policy = RetryPolicy(max_attempts=5, max_timeouts=5, base_delay=0.01, total_time=0.8)
    started = time.monotonic()
    with client(server, retry=policy, timeout=Timeout(total=30.0)) as api:
        with pytest.raises(APIUnavailable, match="no complete answer"):
            api.list_registries()
    assert time.monotonic() - started < NEVER
    assert api.calls == 1  # the one request ran until the call's 0.8 s were spent


def test_an_api_that_accepts_and_never_answers_gives_up_after_two_timeouts(bad_server):
    server = bad_server(lambda request, conn: server.hold())
    with client(server, timeout=Timeout(read=0.2, total=5.0)) as api:
        with pytest.raises(APIUnavailable, match="ReadTimeout") as info:
            api.create_registry(write())
    # create timed out; the list to see whether it landed timed out too: that is two
    assert api.calls == 2 == len(server.requests)
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert "it may have been created" in str(info.value)


def test_an_api_restart_is_survived_and_said_on_stderr(tmp_path):
    """`regsync ls` against an API that is down: it says it is retrying, and succeeds
    once the API is back (the sandbox is started only after the message appeared)."""
    port = closed_port()
    env = {**os.environ, "REPLICATED_API_TOKEN": "sandbox-test-token",
           "REPLICATED_API_ORIGIN": f"http://127.0.0.1:{port}/vendor", "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "ls", "--format", "json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    server = None
    try:
        line = proc.stderr.readline().decode()  # blocks until regsync says something
        assert "cannot connect to" in line and "retrying for up to 20 s" in line
        server = SandboxServer(port=port, db=":memory:", token="sandbox-test-token",
                               key=os.urandom(32))
        server.start()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        if server is not None:
            server.stop()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == []


# --- size -----------------------------------------------------------------------------


def test_a_gzip_bomb_stops_at_the_list_cap_with_a_clear_error(bad_server):
    bomb = gzip_bomb(64 << 20)  # 64 MiB of zeros in about 64 KiB
    server = bad_server(lambda request, conn: conn.sendall(
        response(200, bomb, headers={"Content-Type": "application/json",
                                     "Content-Encoding": "gzip"})))
    with client(server, limits=Limits(list_body=1 << 20)) as api:
        with pytest.raises(APIError, match=r"not the contract's JSON \(larger than the 1 MiB limit\)"):
            api.list_registries()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_answer_is_inflated_no_further_than_its_cap(bad_server, encoding):
    """The cap holds while inflating, not after: a 64 KiB read that inflates to 64 MiB
    never sits in memory whole when the cap is 1 MiB (and the right answer still reads)."""
    import tracemalloc
    import zlib

    bomb = gzip_bomb(64 << 20)
    if encoding == "deflate":
        bomb = zlib.compress(b"\0" * (64 << 20), 9)
    good = zlib.compressobj(9, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    good = good.compress(json.dumps({"external_registry": REGISTRY}).encode()) + good.flush()
    replies = iter([bomb, good])
    server = bad_server(lambda request, conn: conn.sendall(response(
        200, next(replies), headers={"Content-Type": "application/json",
                                     "Content-Encoding": encoding})))
    with client(server) as api:
        tracemalloc.start()
        try:
            with pytest.raises(APIError, match=r"larger than the 1 MiB limit"):
                api.update_registry("acme", write())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert api.update_registry("acme", write()).slug == "acme"
        assert server.requests[-1].headers["accept-encoding"] == "gzip, deflate"
    assert peak < 16 << 20, f"{peak / (1 << 20):.0f} MiB held while inflating"


def test_the_list_cap_follows_its_variable(bad_server):
    body = json.dumps({"external_registries": [REGISTRY] * 5000}).encode()  # ~0.9 MiB
    server = bad_server(lambda request, conn: conn.sendall(response(200, body)))
    env = {"REPLICATED_API_TOKEN": "test-token", "REPLICATED_API_ORIGIN": server.origin}
    with from_env({**env, "REGSYNC_API_LIST_LIMIT_MB": "0.5"}) as api:
        with pytest.raises(APIError, match=r"larger than the 0\.5 MiB limit"):
            api.list_registries()
    with from_env(env) as api:
        assert len(api.list_registries()) == 5000
    with pytest.raises(APIError, match="REGSYNC_API_LIST_LIMIT_MB must be a positive number"):
        from_env({**env, "REGSYNC_API_LIST_LIMIT_MB": "lots"})


def test_a_large_answer_where_a_small_one_belongs_is_refused(bad_server):
    server = bad_server(lambda request, conn: conn.sendall(
        response(200, b'{"external_registry": {"slug": "' + b"a" * (2 << 20) + b'"}}')))
    with client(server) as api:
        with pytest.raises(APIError, match=r"larger than the 1 MiB limit"):
            api.update_registry("acme", write())


# --- malformed ------------------------------------------------------------------------


def test_json_nested_100000_deep_is_an_api_error(bad_server):
    server = bad_server(lambda request, conn: conn.sendall(response(200, b"[" * 100_000)))
    with client(server) as api:
        with pytest.raises(APIError, match=r"not the contract's JSON \(nested too deep\)"):
            api.list_registries()


@pytest.mark.parametrize("answer", ["deep", "bomb", "not json"])
def test_a_create_that_landed_with_an_unreadable_answer_is_read_from_the_list(bad_server, answer):
    created = {"body": response(201, b"{" * 100_000)}
    if answer == "bomb":
        created["body"] = response(201, gzip_bomb(4 << 20), headers={"Content-Encoding": "gzip"})
    elif answer == "not json":
        created["body"] = response(201, b"<html>created</html>")

    def handle(request, conn):
        if request.method == "POST":
            conn.sendall(created["body"])
        else:
            conn.sendall(json_response(200, {"external_registries": [REGISTRY]}))

    server = bad_server(handle)
    with client(server) as api:
        registry = api.create_registry(write())
    assert (registry.slug, registry.endpoint, registry.username) == (
        "acme", "registry.example.com", "robot")
    assert [r.method for r in server.requests] == ["POST", "GET"]  # sent once, never again


def test_a_landed_create_whose_list_fails_too_says_it_was_created(bad_server):
    def handle(request, conn):
        conn.sendall(response(201 if request.method == "POST" else 200, b"[" * 100_000))

    server = bad_server(handle)
    with client(server) as api:
        with pytest.raises(APIError, match=r"\(the API answered 201: it was created\)"):
            api.create_registry(write())
    assert [r.method for r in server.requests] == ["POST", "GET"]


# --- text from elsewhere --------------------------------------------------------------


def test_terminal_escapes_in_an_api_message_are_escaped_and_clipped(bad_server):
    hostile = "\x1b[2J\x1b]0;owned\x07\u202eevil\r\n" + "x" * 5000
    server = bad_server(lambda request, conn: conn.sendall(json_response(400, {"message": hostile})))
    with client(server) as api:
        with pytest.raises(APIError) as info:
            api.create_registry(write())
    text = str(info.value)
    assert text.isprintable()
    assert "\\x1b[2J\\x1b]0;owned\\x07\\u202eevil\\r\\n" in text
    assert len(text) < 700 and text.endswith("...")


def test_a_test_answer_error_is_escaped_and_clipped(bad_server):
    server = bad_server(lambda request, conn: conn.sendall(json_response(
        200, {"status": 401, "error": "\x1b]0;title\x07denied" + "y" * 5000})))
    with client(server) as api:
        result = api.test_registry(image="a/b:1", slug="acme")
    assert result.status == 401 and result.error.isprintable()
    assert result.error.startswith("\\x1b]0;title\\x07denied") and len(result.error) <= 500


def test_a_wrong_origin_names_it_and_shows_what_an_origin_looks_like(sandbox):
    root = sandbox.origin.removesuffix("/vendor")
    with VendorAPI(token=sandbox.token, origin=root, retry=QUICK) as api:
        with pytest.raises(APIError) as info:
            api.list_registries()
    text = str(info.value)
    assert f"{root} has no Vendor API (404 for /v3/external_registries)" in text
    assert f"REPLICATED_API_ORIGIN ({root} (its path has no /vendor))" in text
    assert "such as https://api.replicated.com/vendor" in text


def test_an_origin_with_v3_says_to_leave_it_out_not_that_vendor_is_missing(sandbox):
    origin = sandbox.origin + "/v3"
    with VendorAPI(token=sandbox.token, origin=origin, retry=QUICK) as api:
        with pytest.raises(APIError) as info:
            api.list_registries()
    text = str(info.value)
    assert f"REPLICATED_API_ORIGIN ({origin} (its path ends in /v3: leave that out))" in text
    assert "has no /vendor" not in text


def test_an_https_origin_for_a_plain_http_server_fails_at_once_saying_so(sandbox):
    # a TLS handshake fails the same way every time: no retrying it for 20 s
    origin = "https://" + sandbox.origin.removeprefix("http://")
    policy = RetryPolicy(connect_time=5.0, max_connect_delay=0.01)
    with VendorAPI(token=sandbox.token, origin=origin, retry=policy) as api:
        with pytest.raises(APIUnavailable) as info:
            api.list_registries()
    text = str(info.value)
    assert text.startswith(f"list registries: TLS with {origin} failed (")
    assert "attempts" not in text and "WRONG_VERSION_NUMBER" in text
    assert "a plain-HTTP server such as the sandbox needs http://" in text


def test_unreachable_origin_port_is_unavailable(unused_port):
    policy = RetryPolicy(connect_time=0.2, max_connect_delay=0.05)
    with VendorAPI(token="test-token", origin=f"http://127.0.0.1:{unused_port}/vendor",
                   retry=policy) as api:
        with pytest.raises(APIUnavailable, match="ConnectError"):
            api.list_registries()


def test_ls_with_an_origin_without_vendor_names_it(sandbox, monkeypatch, capsys, tmp_path):
    from reconciler.cli import main

    root = sandbox.origin.removesuffix("/vendor")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLICATED_API_TOKEN", sandbox.token)
    monkeypatch.setenv("REPLICATED_API_ORIGIN", root)
    assert main(["ls"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: list registries: ")
    assert f"{root} has no Vendor API" in err and "such as https://api.replicated.com/vendor" in err


@pytest.mark.parametrize(("status", "said"), [
    (401, "check REPLICATED_API_TOKEN, and that REPLICATED_API_ORIGIN ({origin}) is the Vendor API's"),
    (200, "(not JSON): '<html>x</html>'; check that REPLICATED_API_ORIGIN ({origin}) is the Vendor API's"),
])
def test_an_answer_that_is_not_the_vendor_apis_doubts_the_origin(bad_server, status, said):
    """A login page, or any other web server: not the token's fault, maybe not the Vendor API."""
    server = bad_server(lambda request, conn: conn.sendall(
        response(status, b"<html>x</html>", headers={"Content-Type": "text/html"})))
    with client(server) as api:
        with pytest.raises(APIError) as info:
            api.list_registries()
    assert said.format(origin=server.origin) in str(info.value)


def test_a_proxy_httpx_cannot_use_is_one_line_without_its_password(monkeypatch):
    monkeypatch.setenv("ALL_PROXY", "socks4://user:CANARY-proxy-pw@127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(APIError, match="through the proxy the environment names") as info:
        VendorAPI(token="test-token", origin="http://127.0.0.1:9/vendor")
    assert "CANARY-proxy-pw" not in str(info.value)


def test_apply_progress_escapes_a_slug_from_the_api(bad_server, tmp_path, monkeypatch, capsys):
    from reconciler.cli import main

    hostile = {**REGISTRY, "slug": "old\x1b]0;owned\x07"}

    def handle(request, conn):
        if request.method == "GET":
            conn.sendall(json_response(200, {"external_registries": [hostile]}))
        else:
            conn.sendall(response(204))

    server = bad_server(handle)
    cli_project(monkeypatch, tmp_path, "version: 1\nsettings:\n  prune: true\nregistries: []\n",
                origin=server.origin, token="test-token")
    assert main(["apply", "--auto-approve"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "old\\x1b]0;owned\\x07: destroyed" in out
    assert [r.method for r in server.requests] == ["GET", "DELETE"]


def test_apply_reports_a_landed_create_with_a_100000_deep_answer_as_created(
        bad_server, tmp_path, monkeypatch, capsys):
    from reconciler.cli import main

    created = {**REGISTRY, "slug": "acme", "endpoint": "registry.example.com"}
    lists = []

    def handle(request, conn):
        if request.method == "GET":  # the plan's list, then the one after the create
            lists.append(request)
            conn.sendall(json_response(200, {"external_registries": [created] if len(lists) > 1 else []}))
        else:
            conn.sendall(response(201, b"[" * 100_000))

    server = bad_server(handle)
    cli_project(monkeypatch, tmp_path,
                "version: 1\nregistries:\n  - provider: other\n    slug: acme\n"
                "    endpoint: registry.example.com\n    username: robot\n    password: ${PW}\n"
                "    skip_validation: true\n",
                origin=server.origin, token="test-token", PW="hunter2-hunter2")
    assert main(["apply", "--auto-approve"]) == 0
    out = capsys.readouterr().out
    assert "acme: created" in out and "FAILED" not in out
    assert [r.method for r in server.requests] == ["GET", "POST", "GET"]
    assert "acme" in json.loads((tmp_path / "regsync.state.json").read_text())["registries"]
