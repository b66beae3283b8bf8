"""The sandbox over real loopback HTTP (httpx, not our client), against a real registry.

Each test reads the way a user of the Vendor API would see the sandbox: status codes,
bodies, what is kept across restarts, and that no password ever shows.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from reconciler.errors import SandboxError
from reconciler.sandbox.faults import FaultRule, Faults, parse_rate_limit
from reconciler.sandbox.server import SandboxServer
from reconciler.sandbox.store import load_key

ROOT = Path(__file__).resolve().parents[1]


def canary() -> str:
    return f"CANARY-{uuid.uuid4()}"


def client(server, token=None) -> httpx.Client:
    return httpx.Client(
        base_url=server.origin + "/v3",
        headers={"Authorization": token or server.token},
        timeout=10.0,
    )


@pytest.fixture
def http(sandbox):
    with client(sandbox) as c:
        yield c


def body(endpoint="registry.example.com", **extra):
    data = {"provider": "other", "endpoint": endpoint, "authType": "password",
            "username": "robot", "password": "hunter2", "skipValidation": True}
    data.update(extra)
    return data


# -- list, create, update, delete ----------------------------------------------------
def test_list_is_null_when_the_team_has_none(http):
    r = http.get("/external_registries")
    assert r.status_code == 200
    assert r.json() == {"external_registries": None}


def test_create_answers_201_with_the_registry_and_slug_defaults_to_endpoint(http):
    r = http.post("/external_registry", json=body(endpoint="127.0.0.1:5999"))
    assert r.status_code == 201
    reg = r.json()["external_registry"]
    assert reg["slug"] == "127.0.0.1:5999"
    assert reg["endpoint"] == "127.0.0.1:5999"
    assert reg["provider"] == "other" and reg["authType"] == "password"
    assert reg["username"] == "robot"
    assert reg["appIds"] == [] and reg["isReplicated"] is False and reg["lastUsedAt"] is None
    assert reg["teamId"]
    assert reg["createdAt"].endswith("Z") and reg["createdAt"] == reg["updatedAt"]
    assert "password" not in reg and "hunter2" not in r.text
    listed = http.get("/external_registries").json()["external_registries"]
    assert listed == [reg]


def test_create_defaults_provider_and_auth_type(http):
    r = http.post("/external_registry", json={"endpoint": "r.example.com", "username": "u",
                                              "password": "p", "skipValidation": True})
    assert r.status_code == 201
    assert r.json()["external_registry"]["provider"] == "other"
    assert r.json()["external_registry"]["authType"] == "password"


@pytest.mark.parametrize("field", ["endpoint", "username", "password"])
def test_create_without_a_required_field_is_a_400_naming_it(http, field):
    data = body()
    del data[field]
    r = http.post("/external_registry", json=data)
    assert r.status_code == 400
    assert r.json() == {"message": f"{field} is required"}
    assert http.get("/external_registries").json()["external_registries"] is None


def test_duplicate_slug_is_a_400_with_a_message(http):
    assert http.post("/external_registry", json=body(slug="acme")).status_code == 201
    r = http.post("/external_registry", json=body(endpoint="other.example.com", slug="acme"))
    assert r.status_code == 400
    assert r.json()["message"] == 'an external registry with slug "acme" already exists'
    assert len(http.get("/external_registries").json()["external_registries"]) == 1


def test_unknown_provider_and_bad_json_are_400s(http):
    r = http.post("/external_registry", json=body(provider="artifactory"))
    assert r.status_code == 400
    assert r.json()["message"].startswith('unknown provider "artifactory"')
    r = http.post("/external_registry", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"message": "the request body is not valid JSON"}
    r = http.post("/external_registry", json=body(appIds="app-1"))
    assert r.status_code == 400 and r.json() == {"message": "appIds must be a list of app IDs"}


def test_update_keeps_omitted_fields_and_bumps_updated_at(http):
    created = http.post("/external_registry", json=body(slug="acme", appIds=["app-1"])).json()
    created = created["external_registry"]
    r = http.put("/external_registry/acme", json={"username": "robot2"})
    assert r.status_code == 200
    reg = r.json()["external_registry"]
    assert reg["username"] == "robot2"
    assert reg["endpoint"] == created["endpoint"] and reg["appIds"] == ["app-1"]
    assert reg["createdAt"] == created["createdAt"]
    assert reg["updatedAt"] > created["updatedAt"]
    again = http.put("/external_registry/acme", json={"appIds": None}).json()["external_registry"]
    assert again["appIds"] == ["app-1"] and again["updatedAt"] > reg["updatedAt"]
    shared = http.put("/external_registry/acme", json={"appIds": []}).json()["external_registry"]
    assert shared["appIds"] == []


def test_update_cannot_change_the_slug(http):
    http.post("/external_registry", json=body(slug="acme"))
    r = http.put("/external_registry/acme", json={"slug": "renamed", "username": "x"})
    assert r.status_code == 200 and r.json()["external_registry"]["slug"] == "acme"
    assert [x["slug"] for x in http.get("/external_registries").json()["external_registries"]] == ["acme"]


def test_update_and_delete_take_a_percent_encoded_slug(http):
    http.post("/external_registry", json=body(endpoint="127.0.0.1:5000"))
    slug = quote("127.0.0.1:5000", safe="")
    assert "%3A" in slug
    r = http.put(f"/external_registry/{slug}", json={"username": "u2"})
    assert r.status_code == 200 and r.json()["external_registry"]["username"] == "u2"
    r = http.delete(f"/external_registry/{slug}")
    assert r.status_code == 204 and r.content == b""
    assert http.get("/external_registries").json() == {"external_registries": None}


def test_unknown_slug_is_a_404_for_update_delete_and_test(http):
    for r in (
        http.put("/external_registry/nope", json={"username": "x"}),
        http.delete("/external_registry/nope"),
        http.put("/external_registry/test", json={"endpoint": "nope.example.com", "image": "a/b:1"}),
    ):
        assert r.status_code == 404
        assert r.json()["message"].endswith("not found")


def test_iam_config_and_unknown_paths(http):
    r = http.get("/external_registry/iam")
    assert r.status_code == 200 and set(r.json()) == {"audience", "issuer_url", "subject_type", "thumbprint"}
    assert http.get("/no_such_thing").status_code == 404


# -- auth ----------------------------------------------------------------------------
def test_missing_and_wrong_tokens_are_401(sandbox):
    with httpx.Client(base_url=sandbox.origin + "/v3", timeout=5) as c:
        r = c.get("/external_registries")
        assert r.status_code == 401 and set(r.json()) == {"message"}
        r = c.get("/external_registries", headers={"Authorization": "wrong"})
        assert r.status_code == 401 and set(r.json()) == {"message"}
        r = c.post("/external_registry", json=body(), headers={"Authorization": "Bearer " + sandbox.token})
        assert r.status_code == 401
    assert sandbox.store.list() == []


def test_read_only_token_lists_but_writes_are_403(sandbox):
    with client(sandbox, sandbox.readonly_token) as ro:
        assert ro.get("/external_registries").status_code == 200
        r = ro.post("/external_registry", json=body())
        assert r.status_code == 403
        assert set(r.json()["error"]) == {"message", "messageCode"}
        assert ro.delete("/external_registry/x").status_code == 403
    assert sandbox.store.list() == []


# -- state at rest ---------------------------------------------------------------------
def test_state_survives_a_restart_and_passwords_are_sealed(tmp_path, registry_basic):
    db = str(tmp_path / "sandbox.db")
    key = os.urandom(32)
    secret = canary()
    with SandboxServer(db=db, token="t", key=key) as first, client(first) as c:
        c.post("/external_registry", json=body(slug="fake", password=secret))
        c.post("/external_registry", json=body(endpoint=registry_basic.endpoint,
                                               username=registry_basic.username,
                                               password=registry_basic.password))
    raw = Path(db).read_bytes()
    assert secret.encode() not in raw
    assert registry_basic.password.encode() not in raw
    assert b"fake" in raw  # the file is the state, the password just isn't in it
    with SandboxServer(db=db, token="t", key=key) as second, client(second) as c:
        slugs = [r["slug"] for r in c.get("/external_registries").json()["external_registries"]]
        assert slugs == ["fake", registry_basic.endpoint]
        r = c.put("/external_registry/test", json={"endpoint": registry_basic.endpoint,
                                                   "image": "test/hello:v1"})
        assert r.json() == {"status": 200, "error": ""}  # the sealed password still opens


def test_a_sealed_password_does_not_open_under_another_slug(tmp_path):
    db = str(tmp_path / "sandbox.db")
    key = os.urandom(32)
    with SandboxServer(db=db, token="t", key=key) as s, client(s) as c:
        c.post("/external_registry", json=body(slug="a"))
        c.post("/external_registry", json=body(slug="b", password="other"))
    con = sqlite3.connect(db)
    sealed_a = con.execute("SELECT sealed_password FROM registries WHERE slug='a'").fetchone()[0]
    con.execute("UPDATE registries SET sealed_password=? WHERE slug='b'", (sealed_a,))
    con.commit()
    con.close()
    with SandboxServer(db=db, token="t", key=key) as s:
        assert s.store.password("a").reveal() == "hunter2"
        with pytest.raises(SandboxError, match="do not open"):
            s.store.password("b")


def test_key_file_is_created_0600_and_a_loose_one_is_refused(tmp_path):
    db = str(tmp_path / "sandbox.db")
    key = load_key(db=db, env={})
    key_file = Path(db + ".key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_key(db=db, env={}) == key and len(key) == 32
    key_file.chmod(0o644)
    with pytest.raises(SandboxError, match=r"mode 0644.*chmod 600"):
        load_key(db=db, env={})


def test_key_from_the_environment(tmp_path):
    key = os.urandom(32)
    env = {"REGSYNC_SANDBOX_KEY": base64.b64encode(key).decode()}
    assert load_key(db=str(tmp_path / "x.db"), env=env) == key
    assert not (tmp_path / "x.db.key").exists()
    with pytest.raises(SandboxError, match="32 bytes"):
        load_key(db=":memory:", env={"REGSYNC_SANDBOX_KEY": base64.b64encode(b"short").decode()})


# -- validation and the test endpoint against a real registry ----------------------------
def test_create_validates_the_credentials_upstream(http, registry_basic):
    good = body(endpoint=registry_basic.endpoint, username=registry_basic.username,
                password=registry_basic.password, skipValidation=False)
    wrong_password = canary()
    bad = dict(good, slug="bad", password=wrong_password)
    r = http.post("/external_registry", json=bad)
    assert r.status_code == 400
    assert "401" in r.json()["message"] and wrong_password not in r.text
    r = http.post("/external_registry", json=good)
    assert r.status_code == 201
    r = http.post("/external_registry", json=dict(bad, skipValidation=True))
    assert r.status_code == 201
    slugs = [x["slug"] for x in http.get("/external_registries").json()["external_registries"]]
    assert slugs == [registry_basic.endpoint, "bad"]


def test_update_validates_a_new_password(http, registry_basic):
    http.post("/external_registry", json=body(endpoint=registry_basic.endpoint,
                                              username=registry_basic.username,
                                              password=registry_basic.password))
    slug = quote(registry_basic.endpoint, safe="")
    r = http.put(f"/external_registry/{slug}", json={"password": "wrong"})
    assert r.status_code == 400 and "401" in r.json()["message"]
    r = http.put(f"/external_registry/{slug}", json={"password": registry_basic.password})
    assert r.status_code == 200


def test_unreachable_registry_fails_validation_with_a_message(http):
    with socket_closed_port() as port:
        r = http.post("/external_registry", json=body(endpoint=f"127.0.0.1:{port}", skipValidation=False))
    assert r.status_code == 400 and "unreachable" in r.json()["message"]


@pytest.mark.parametrize("registry", ["registry_basic", "registry_token"])
def test_image_test_with_saved_credentials(request, http, registry):
    reg = request.getfixturevalue(registry)
    http.post("/external_registry", json=body(slug=registry, endpoint=reg.endpoint,
                                              username=reg.username, password=reg.password))
    r = http.put("/external_registry/test", json={"endpoint": reg.endpoint, "slug": registry,
                                                  "image": "test/hello:v1"})
    assert r.status_code == 200 and r.json() == {"status": 200, "error": ""}
    listed = http.get("/external_registries").json()["external_registries"]
    assert listed[0]["lastUsedAt"] is not None
    r = http.put("/external_registry/test", json={"endpoint": reg.endpoint, "slug": registry,
                                                  "image": "test/hello:nope"})
    assert r.status_code == 200 and r.json()["status"] == 404 and r.json()["error"]
    logs = http.get("/external_registry/logs", params={"slug": registry}).json()["logs"]
    assert [(x["tag"], x["statusCode"], x["isSuccess"]) for x in logs] == [
        ("nope", 404, False), ("v1", 200, True)]
    assert logs[0]["action"] == "test" and logs[0]["image"] == "test/hello"
    assert logs[0]["endpoint"] == reg.endpoint and logs[0]["slug"] == registry
    assert logs[0]["createdAt"] >= logs[1]["createdAt"]


@pytest.mark.parametrize("registry", ["registry_basic", "registry_token"])
def test_image_test_before_save_with_body_credentials(request, http, registry):
    reg = request.getfixturevalue(registry)
    test = {"endpoint": reg.endpoint, "image": "test/hello:v1", "username": reg.username}
    r = http.put("/external_registry/test", json=dict(test, password=reg.password))
    assert r.json() == {"status": 200, "error": ""}
    wrong = canary()
    r = http.put("/external_registry/test", json=dict(test, password=wrong))
    assert r.status_code == 200 and r.json()["status"] == 401 and wrong not in r.text
    assert http.get("/external_registries").json()["external_registries"] is None
    logs = http.get("/external_registry/logs", params={"Endpoint": reg.endpoint}).json()["logs"]
    assert [x["statusCode"] for x in logs] == [401, 200]


def test_image_test_of_an_unreachable_registry_is_502(http):
    with socket_closed_port() as port:
        r = http.put("/external_registry/test", json={
            "endpoint": f"127.0.0.1:{port}", "image": "a/b:1", "username": "u", "password": "p"})
    assert r.status_code == 200 and r.json()["status"] == 502 and r.json()["error"]


def test_image_test_and_logs_need_their_fields(http):
    r = http.put("/external_registry/test", json={"endpoint": "x.example.com"})
    assert r.status_code == 400 and r.json() == {"message": "image is required"}
    r = http.put("/external_registry/test", json={"image": "a/b:1"})
    assert r.status_code == 400 and r.json() == {"message": "endpoint is required"}
    r = http.put("/external_registry/test", json={"endpoint": "x.example.com", "image": "UPPER/x:1",
                                                  "password": "p"})
    assert r.status_code == 400 and "not a valid image reference" in r.json()["message"]
    r = http.get("/external_registry/logs")
    assert r.status_code == 400 and r.json() == {"message": "endpoint or slug is required"}


# -- faults ----------------------------------------------------------------------------
def test_drop_before_answers_nothing_and_creates_nothing(sandbox, http):
    sandbox.faults.add(FaultRule(method="POST", path=r"^/external_registry$", action="drop_before"))
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/external_registry", json=body())
    assert http.get("/external_registries").json()["external_registries"] is None
    assert http.post("/external_registry", json=body()).status_code == 201  # times=1: spent


def test_drop_after_answers_nothing_but_creates(sandbox, http):
    sandbox.faults.add(FaultRule(method="POST", path=r"^/external_registry$", action="drop_after"))
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/external_registry", json=body())
    assert len(http.get("/external_registries").json()["external_registries"]) == 1


def test_error_and_error_after(sandbox, http):
    sandbox.faults.add(FaultRule(method="POST", action="error", status=503, retry_after=2))
    r = http.post("/external_registry", json=body(slug="a"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "2" and "message" in r.json()
    assert sandbox.store.list() == []
    sandbox.faults.add(FaultRule(method="POST", action="error_after", status=502))
    r = http.post("/external_registry", json=body(slug="a"))
    assert r.status_code == 502
    assert [x.slug for x in sandbox.store.list()] == ["a"]
    assert http.post("/external_registry", json=body(slug="b")).status_code == 201


def test_rule_times_and_forever(sandbox, http):
    sandbox.faults.add(FaultRule(method="GET", path="registries", status=504, times=2))
    codes = [http.get("/external_registries").status_code for _ in range(3)]
    assert codes == [504, 504, 200]
    sandbox.faults.add(FaultRule(method="DELETE", status=500, times=-1))
    assert [http.delete("/external_registry/x").status_code for _ in range(3)] == [500] * 3
    sandbox.faults.clear()
    assert http.delete("/external_registry/x").status_code == 404


def test_rate_limit_answers_429_with_retry_after(sandbox, http):
    sandbox.faults.rate_limit = (2, 0.5)
    codes = [http.get("/external_registries") for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    wait = float(codes[2].headers["Retry-After"])
    assert 0 < wait <= 0.5
    # Poll until the window frees up (refused calls do not count towards it).
    deadline = time.monotonic() + 10
    while (answer := http.get("/external_registries")).status_code == 429:
        assert 0 < float(answer.headers["Retry-After"]) <= 0.5
        assert time.monotonic() < deadline, "the rate limit never let a call through again"
        time.sleep(0.02)
    assert answer.status_code == 200


def test_latency_is_added_to_each_request(sandbox, http):
    http.get("/external_registries")
    start = time.perf_counter()
    http.get("/external_registries")
    fast = time.perf_counter() - start
    sandbox.faults.latency_ms = 200
    start = time.perf_counter()
    http.get("/external_registries")
    slow = time.perf_counter() - start
    assert slow >= 0.2 and slow > fast


def test_random_faults_hit_only_writes_and_follow_the_seed():
    def outcomes(seed):
        faults = Faults(fail_before_rate=0.5, lose_after_rate=0.5, seed=seed)
        return [faults.decide("POST", "/external_registry", operation="create") for _ in range(40)]

    first = outcomes(7)
    assert first == outcomes(7)
    assert {d.before for d in first} == {None, "error"}
    assert {d.after for d in first} == {None, "drop_after"}
    faults = Faults(fail_before_rate=1.0, lose_after_rate=1.0, seed=1)
    assert faults.decide("GET", "/external_registries", operation="list").before is None


def test_control_endpoints_faults_stats_and_reset(sandbox, http):
    control = httpx.Client(base_url=sandbox.origin.removesuffix("/vendor"), timeout=5,
                           headers={"Authorization": sandbox.token})
    with control:
        r = control.post("/_sandbox/faults", json={
            "latency_ms": 0, "rate_limit": None,
            "rules": [{"method": "POST", "path": "^/external_registry$", "status": 503, "times": 1}]})
        assert r.status_code == 200 and len(r.json()["rules"]) == 1
        assert http.post("/external_registry", json=body()).status_code == 503
        assert http.post("/external_registry", json=body()).status_code == 201
        http.get("/external_registries")
        http.put("/external_registry/nope", json={})
        http.delete("/external_registry/nope")
        http.get("/external_registry/logs", params={"slug": "x"})
        http.put("/external_registry/test", json={"endpoint": "nope", "image": "a/b:1"})
        stats = control.get("/_sandbox/stats").json()
        assert stats["requests"] == 7
        assert {k: v for k, v in stats["by_operation"].items() if v} == {
            "create": 2, "list": 1, "update": 1, "delete": 1, "logs": 1, "test": 1}
        assert control.post("/_sandbox/faults", json={"rules": [{"action": "explode"}]}).status_code == 400
        rate_limit = {"rate_limit": {"requests": 1, "per_seconds": 60}}
        assert control.post("/_sandbox/faults", json=rate_limit).status_code == 200
        assert http.get("/external_registries").status_code == 200
        assert http.get("/external_registries").status_code == 429
        assert control.post("/_sandbox/reset").status_code == 200
        assert control.get("/_sandbox/stats").json()["requests"] == 0
        assert http.get("/external_registries").json() == {"external_registries": None}
        assert control.get("/_sandbox/stats", headers={"Authorization": "wrong"}).status_code == 401
    assert sandbox.stats.requests == 1


# -- secrets never shown -----------------------------------------------------------------
def test_no_response_or_access_log_contains_a_password(registry_basic):
    out = io.StringIO()
    secrets = [canary(), canary(), canary()]
    seen = []
    with SandboxServer(token="t", key=os.urandom(32), out=out) as s, client(s) as c:
        seen.append(c.post("/external_registry", json=body(slug="a", password=secrets[0])))
        seen.append(c.post("/external_registry", json=body(
            endpoint=registry_basic.endpoint, username=registry_basic.username,
            password=secrets[1], skipValidation=False)))
        seen.append(c.put("/external_registry/a", json={"password": secrets[2], "skipValidation": True}))
        seen.append(c.put("/external_registry/test", json={
            "endpoint": registry_basic.endpoint, "image": "test/hello:v1",
            "username": registry_basic.username, "password": secrets[1]}))
        seen.append(c.get("/external_registries"))
        seen.append(c.get("/external_registry/logs", params={"endpoint": registry_basic.endpoint}))
    text = out.getvalue() + "".join(r.text + str(r.headers) for r in seen)
    assert [r.status_code for r in seen] == [201, 400, 200, 200, 200, 200]
    assert "POST /vendor/v3/external_registry 201" in out.getvalue()
    for secret in secrets:
        assert secret not in text


# -- run(): the foreground server of `regsync sandbox` -----------------------------------
def socket_closed_port():
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        yield port

    return closed()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_until_a_signal_and_stops_cleanly(tmp_path, signum):
    code = ("import sys; from reconciler.sandbox.server import run; "
            f"sys.exit(run(port=0, db={str(tmp_path / 's.db')!r}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSYNC_SANDBOX")}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not (lines and lines[-1].startswith("REPLICATED_API_ORIGIN=")):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line.strip())
        print(f"sandbox start-up: {time.perf_counter() - started:.3f}s (interpreter included)")
        origin = lines[-1].split("=", 1)[1]
        assert any('default token "sandbox-token"' in x for x in lines)
        assert lines[-2] == "REPLICATED_API_TOKEN=sandbox-token"  # the lines to copy
        assert not any("warning" in x for x in lines)  # loopback: the default token is fine
        r = httpx.get(origin + "/v3/external_registries", headers={"Authorization": "sandbox-token"})
        assert r.json() == {"external_registries": None}
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in err and "Traceback" not in out
    assert "GET /vendor/v3/external_registries 200" in out
    assert out.rstrip().endswith("regsync sandbox: stopped")
    assert stat.S_IMODE((tmp_path / "s.db.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s.db").stat().st_mode) == 0o600


def test_an_unusable_db_path_is_a_sandbox_error(tmp_path):
    with pytest.raises(SandboxError, match="cannot open the sandbox database"):
        SandboxServer(db=str(tmp_path / "missing-dir" / "s.db"), token="t", key=os.urandom(32))


def test_port_in_use_is_a_sandbox_error(sandbox):
    with pytest.raises(SandboxError, match="cannot listen"):
        SandboxServer(port=sandbox.port, token="t", key=os.urandom(32)).start()


def test_a_wrong_key_for_an_existing_db_is_refused_at_start(tmp_path):
    db = str(tmp_path / "s.db")
    with SandboxServer(db=db, token="t", key=os.urandom(32)) as s, client(s) as c:
        c.post("/external_registry", json=body())
    with pytest.raises(SandboxError, match="key does not open the credentials"):
        SandboxServer(db=db, token="t", key=os.urandom(32))


def test_a_chunked_request_body_is_read(http):
    chunks = [b'{"endpoint": "chunked.example.com", "username": "u", ',
              b'"password": "p", "skipValidation": true}']
    r = http.post("/external_registry", content=iter(chunks), headers={"Content-Type": "application/json"})
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 201 and r.json()["external_registry"]["slug"] == "chunked.example.com"
    assert http.get("/external_registries").status_code == 200  # the connection is still in step


def test_rate_limit_option_parsing():
    assert parse_rate_limit("10/1.5") == (10, 1.5)
    for bad in ("10", "0/1", "a/b", "5/0"):
        with pytest.raises(ValueError, match="must be N/SECONDS"):
            parse_rate_limit(bad)


def test_saved_credentials_are_never_sent_to_another_endpoint(http, registry_basic):
    http.post("/external_registry", json=body(slug="mine", endpoint=registry_basic.endpoint,
                                              username=registry_basic.username,
                                              password=registry_basic.password))
    r = http.put("/external_registry/test", json={"slug": "mine", "endpoint": "evil.example.com",
                                                  "image": "test/hello:v1"})
    assert r.status_code == 400
    assert r.json() == {"message": 'endpoint "evil.example.com" is not the endpoint of external registry "mine"'}
    r = http.put("/external_registry/test", json={"slug": "mine", "image": "test/hello:v1"})
    assert r.json() == {"status": 200, "error": ""}  # slug alone: the saved endpoint


# -- a saved password only ever goes to the endpoint it was saved for --------------------
def test_changing_the_endpoint_needs_a_new_password(http, registry_basic):
    """The next test would send the saved password to the new host: refuse the change."""
    http.post("/external_registry", json=body(slug="victim", endpoint=registry_basic.endpoint,
                                              username=registry_basic.username,
                                              password=registry_basic.password))
    r = http.put("/external_registry/victim", json={"endpoint": "other-host.example.com"})
    assert r.status_code == 400
    assert r.json() == {"message": 'changing the endpoint of external registry "victim" needs '
                                   "its password: a saved password is only sent to the "
                                   "endpoint it was saved for"}
    assert http.get("/external_registries").json()["external_registries"][0]["endpoint"] == \
        registry_basic.endpoint
    same = http.put("/external_registry/victim", json={"endpoint": registry_basic.endpoint,
                                                       "username": registry_basic.username})
    assert same.status_code == 200  # the same endpoint is no change
    moved = http.put("/external_registry/victim", json={
        "endpoint": "other-host.example.com", "password": "a-new-one", "skipValidation": True})
    assert moved.status_code == 200
    assert moved.json()["external_registry"]["endpoint"] == "other-host.example.com"


def test_copy_password_needs_the_original_endpoint(http, registry_basic):
    http.post("/external_registry", json=body(slug="victim", endpoint=registry_basic.endpoint,
                                              username=registry_basic.username,
                                              password=registry_basic.password))
    copy = {"copyPassword": True, "originalSlug": "victim", "username": registry_basic.username,
            "slug": "copy"}
    r = http.post("/external_registry", json=dict(copy, endpoint="other-host.example.com"))
    assert r.status_code == 400
    assert r.json()["message"].startswith(
        f'copyPassword needs the endpoint of "victim" ({registry_basic.endpoint})')
    r = http.post("/external_registry", json=dict(copy, endpoint=registry_basic.endpoint))
    assert r.status_code == 201  # validated upstream with the copied password
    r = http.put("/external_registry/test", json={"slug": "copy", "image": "test/hello:v1"})
    assert r.json() == {"status": 200, "error": ""}
    r = http.post("/external_registry", json={"copyPassword": True, "originalSlug": "nope",
                                              "endpoint": "x.example.com", "username": "u"})
    assert r.status_code == 400 and r.json() == {"message": 'originalSlug "nope" is not an external registry'}
    r = http.post("/external_registry", json={"copyPassword": True, "endpoint": "x.example.com",
                                              "username": "u"})
    assert r.status_code == 400 and r.json() == {"message": "originalSlug is required"}


# -- malformed and odd requests: 400s and JSON, never a 500, a drop or an HTML page ---------
def test_a_lone_surrogate_in_a_string_field_is_a_400(http):
    raw = b'{"endpoint": "x.example.com", "username": "\\ud800", "password": "p", "skipValidation": true}'
    r = http.post("/external_registry", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"message": "the request body holds a string that is not valid Unicode "
                                   "(a lone surrogate escape)"}
    assert http.get("/external_registries").json() == {"external_registries": None}


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_a_body_nested_100000_deep_is_a_400(http, opener):
    closer = b"]" if opener == b"[" else b"}"
    raw = opener * 100_000 + b"1" + closer * 100_000
    r = http.put("/external_registry/test", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"message": "the request body is nested too deeply"}
    assert http.get("/external_registries").status_code == 200


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "BREW"])
def test_other_methods_answer_json(sandbox, method):
    with httpx.Client(timeout=5) as c:
        r = c.request(method, sandbox.origin + "/v3/external_registries")
    assert r.status_code in (405, 501)
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["message"]


def test_head_answers_405_without_a_body(sandbox):
    with httpx.Client(timeout=5) as c:
        r = c.head(sandbox.origin + "/v3/external_registries")
    assert r.status_code == 405 and r.content == b""
    assert r.headers["Content-Type"] == "application/json" and r.headers["Allow"]


def test_a_malformed_request_line_answers_json(sandbox):
    import socket

    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as sock:
        sock.sendall(b"GET /vendor/v3/external_registries HTTP/9.x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, data = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert "message" in __import__("json").loads(data)


# -- control endpoints: checked whole before anything is stored --------------------------
@pytest.fixture
def control(sandbox):
    with httpx.Client(base_url=sandbox.origin.removesuffix("/vendor"), timeout=5,
                      headers={"Authorization": sandbox.token}) as c:
        yield c


@pytest.mark.parametrize("bad, why", [
    ({"rules": [{"path": "(a+)+$"}]}, "not a regular expression"),
    ({"rules": [{"path": "["}]}, "not a regular expression"),
    ({"rules": [{"path": 5}]}, "non-empty string"),
    ({"rules": [{"status": "503"}]}, "status must be an integer from 100 to 599"),
    ({"rules": [{"times": -2}]}, "times must be an integer"),
    ({"rules": "all"}, "rules must be a list"),
    ({"latency_ms": 1e30}, "latency_ms must be a number from 0 to 60000"),
    ({"latency_ms": -1}, "latency_ms must be a number"),
    ({"seed": [1]}, "seed must be an integer"),
    ({"rate_limit": {"requests": 0, "per_seconds": 1}}, "rate_limit.requests"),
    ({"fail_before_rate": 2}, "fail_before_rate must be a number from 0 to 1"),
])
def test_bad_control_input_is_a_400_and_stores_nothing(sandbox, control, http, bad, why):
    before = control.post("/_sandbox/faults", json={}).json()
    body_with_a_good_part = dict({"rules": [{"method": "GET", "status": 500}], "latency_ms": 5}, **bad)
    r = control.post("/_sandbox/faults", json=body_with_a_good_part)
    assert r.status_code == 400 and why in r.json()["message"]
    assert control.post("/_sandbox/faults", json={}).json() == before
    assert http.get("/external_registries").status_code == 200  # the good rule was not stored
    assert control.post("/_sandbox/reset").status_code == 200  # and reset still works


def test_rule_paths_are_literal_with_anchors_and_wildcards(sandbox, control, http):
    r = control.post("/_sandbox/faults", json={"rules": [
        {"method": "PUT", "path": "^/external_registry/*.example.com$", "status": 502, "times": -1}]})
    assert r.status_code == 200
    http.post("/external_registry", json=body(slug="a.example.com"))
    http.post("/external_registry", json=body(slug="a-example-com"))
    assert http.put("/external_registry/a.example.com", json={"username": "x"}).status_code == 502
    assert http.put("/external_registry/a-example-com", json={"username": "x"}).status_code == 200
    assert http.put("/external_registry/a.example.com.evil", json={}).status_code == 404


def test_a_pattern_with_many_wildcards_costs_one_scan(sandbox, control, http):
    r = control.post("/_sandbox/faults", json={"rules": [{"path": "a*" * 200 + "b$", "times": -1}]})
    assert r.status_code == 200
    slug = "a" * 3000
    assert http.put(f"/external_registry/{slug}", json={}, timeout=5).status_code == 404


def test_an_existing_db_others_can_read_is_refused(tmp_path):
    db = tmp_path / "s.db"
    with SandboxServer(db=str(db), token="t", key=os.urandom(32)):
        pass
    db.chmod(0o644)
    with pytest.raises(SandboxError, match=r"database .*s\.db has mode 0644.*chmod 600"):
        SandboxServer(db=str(db), token="t", key=os.urandom(32))


# -- the official CLI's ways of naming a registry --------------------------------------
def saved(http, reg, slug):
    r = http.post("/external_registry", json=body(slug=slug, endpoint=reg.endpoint,
                                                  username=reg.username, password=reg.password))
    assert r.status_code == 201


def test_a_test_body_with_only_an_endpoint_finds_the_registry_saved_for_it(http, registry_basic):
    saved(http, registry_basic, "hub-mirror")  # its slug is not its endpoint
    r = http.put("/external_registry/test", json={"endpoint": registry_basic.endpoint,
                                                  "image": "test/hello:v1"})
    assert r.status_code == 200 and r.json() == {"status": 200, "error": ""}
    assert http.get("/external_registries").json()["external_registries"][0]["lastUsedAt"]
    logs = http.get("/external_registry/logs", params={"slug": "hub-mirror"}).json()["logs"]
    assert [(x["slug"], x["endpoint"], x["statusCode"]) for x in logs] == [
        ("hub-mirror", registry_basic.endpoint, 200)]


def test_a_test_body_whose_endpoint_is_a_slug_tests_that_registry_at_its_own_endpoint(
        http, registry_basic):
    saved(http, registry_basic, "local")
    r = http.put("/external_registry/test", json={"endpoint": "local", "image": "test/hello:v1"})
    assert r.status_code == 200 and r.json() == {"status": 200, "error": ""}
    logs = http.get("/external_registry/logs", params={"endpoint": "local"}).json()["logs"]
    assert [(x["slug"], x["endpoint"], x["isSuccess"]) for x in logs] == [
        ("local", registry_basic.endpoint, True)]  # the saved endpoint, never the name
    r = http.put("/external_registry/test", json={"endpoint": "nobody", "image": "test/hello:v1"})
    assert r.status_code == 404 and r.json() == {"message": 'external registry "nobody" not found'}


def test_logs_by_endpoint_match_a_slug_too(http, registry_basic):
    saved(http, registry_basic, "local")
    http.put("/external_registry/test", json={"slug": "local", "image": "test/hello:v1"})
    http.put("/external_registry/test", json={"slug": "local", "image": "test/hello:nope"})
    by_name = http.get("/external_registry/logs", params={"endpoint": "local"}).json()["logs"]
    by_host = http.get("/external_registry/logs",
                       params={"endpoint": registry_basic.endpoint}).json()["logs"]
    assert [x["tag"] for x in by_name] == ["nope", "v1"] and by_name == by_host
    assert http.get("/external_registry/logs", params={"endpoint": "other"}).json() == {"logs": []}


def test_a_test_may_copy_the_original_password_to_its_endpoint_only(http, registry_basic):
    saved(http, registry_basic, "orig")
    test = {"copyPassword": True, "originalSlug": "orig", "image": "test/hello:v1"}
    r = http.put("/external_registry/test", json=dict(test, endpoint=registry_basic.endpoint))
    assert r.json() == {"status": 200, "error": ""}
    r = http.put("/external_registry/test", json=dict(test, endpoint="other-host.example.com"))
    assert r.status_code == 400 and r.json()["message"].startswith('copyPassword needs the endpoint')


# -- apps ----------------------------------------------------------------------------------
def test_apps_are_empty_then_seeded_by_the_control_endpoint(sandbox, http, control):
    r = http.get("/apps", params={"excludeChannels": "true"})
    assert r.status_code == 200 and r.json() == {}
    r = control.post("/_sandbox/apps", json={"apps": [{"slug": "my-app", "name": "My App"},
                                                     {"slug": "other", "id": "2abcOTHER"}]})
    assert r.status_code == 200
    apps = http.get("/apps").json()["apps"]
    assert [(a["slug"], a["name"], a["id"]) for a in apps] == [
        ("my-app", "My App", apps[0]["id"]), ("other", "other", "2abcOTHER")]
    assert apps[0]["teamId"] == sandbox.store.team_id and apps[0]["created"].endswith("Z")
    bad = control.post("/_sandbox/apps", json={"apps": [{"slug": "fine"}, {"slug": "Not OK"}]})
    assert bad.status_code == 400 and "app slug 'Not OK' must be lowercase" in bad.json()["message"]
    dup = control.post("/_sandbox/apps", json={"apps": [{"slug": "my-app"}, {"slug": "my-app"}]})
    assert dup.status_code == 400 and dup.json()["message"] == "bad apps body: two apps have the slug 'my-app'"
    assert [a["slug"] for a in http.get("/apps").json()["apps"]] == ["my-app", "other"]
    assert control.post("/_sandbox/apps", json={"apps": [{"slug": "third"}]}).status_code == 200
    assert [a["slug"] for a in http.get("/apps").json()["apps"]] == ["third"]  # replaced
    control.post("/_sandbox/reset")
    assert http.get("/apps").json() == {}


def test_seeded_apps_have_stable_ids_and_come_back_on_reset(tmp_path):
    from reconciler.sandbox.apps import parse_app_option

    seeds = [parse_app_option("my-app"), parse_app_option("pinned=2PinnedId")]
    with SandboxServer(token="t", key=os.urandom(32), apps=seeds) as s, client(s) as c:
        first = c.get("/apps").json()["apps"]
        httpx.post(s.origin.removesuffix("/vendor") + "/_sandbox/apps", headers={"Authorization": "t"},
                   json={"apps": []})
        assert c.get("/apps").json() == {}
        httpx.post(s.origin.removesuffix("/vendor") + "/_sandbox/reset", headers={"Authorization": "t"})
        assert [a["id"] for a in c.get("/apps").json()["apps"]] == [a["id"] for a in first]
    with SandboxServer(token="t", key=os.urandom(32), apps=[parse_app_option("my-app")]) as s, client(s) as c:
        assert c.get("/apps").json()["apps"][0]["id"] == first[0]["id"]
    assert first[1]["id"] == "2PinnedId"
    with pytest.raises(ValueError, match="write SLUG or SLUG=ID"):
        parse_app_option("my app")


def test_the_read_only_token_lists_apps(sandbox):
    with client(sandbox, sandbox.readonly_token) as ro:
        assert ro.get("/apps").status_code == 200


# -- what `regsync sandbox` says when it starts ---------------------------------------------
def test_the_default_token_beyond_loopback_is_warned_about():
    from reconciler.sandbox.server import banner

    def lines(host, **kw):
        args = dict(origin="http://127.0.0.1:1/vendor", db=":memory:", token="sandbox-token",
                    default_token=True, env={})
        args.update(kw)
        return banner(host=host, **args)

    wide = lines("0.0.0.0")
    assert ('regsync sandbox: warning: listening on 0.0.0.0 with the well-known default token '
            '"sandbox-token": anyone who can reach this port can read and change its registries '
            "(set --token or REGSYNC_SANDBOX_TOKEN)") in wide
    for host in ("127.0.0.1", "::1", "localhost"):
        assert not any("warning" in x for x in lines(host))
    assert not any("warning" in x for x in lines("0.0.0.0", token="mine", default_token=False))
    assert wide[-2:] == ["REPLICATED_API_TOKEN=sandbox-token",
                         "REPLICATED_API_ORIGIN=http://127.0.0.1:1/vendor"]
    from_env = lines("127.0.0.1", token="s3cret-canary", default_token=False,
                     env={"REGSYNC_SANDBOX_TOKEN": "s3cret-canary"})
    assert from_env[-2] == "REPLICATED_API_TOKEN=$REGSYNC_SANDBOX_TOKEN"
    given = lines("127.0.0.1", token="s3cret-canary", default_token=False)
    assert given[-2] == "REPLICATED_API_TOKEN=<the token given with --token>"
    assert "s3cret-canary" not in "".join(from_env + given)


# -- the exact requests of the official CLI (replicatedhq/replicated) -------------------------
# pkg/platformclient/client.go DoJSON + setCommonHeaders: the origin + path, the raw token in
# Authorization, JSON Content-Type and Accept, "Replicated/<version>" as User-Agent; Go's
# transport adds Host, Accept-Encoding: gzip and, for a body, Content-Length; the body is
# json.Encoder output (compact, with a trailing newline).
# pkg/kotsclient/registry_validate.go TestKOTSRegistry: PUT /v3/external_registry/test with
#   {"endpoint": NAME, "image": IMAGE}, 200 expected, {"status"} read.
# pkg/kotsclient/registry_logs.go LogsRegistry: GET /v3/external_registry/logs?endpoint=
#   url.QueryEscape(NAME), no body, 200 expected, {"logs": [{createdAt, action, statusCode,
#   isSuccess, image}]} read.
# pkg/kotsclient/app.go ListApps: GET /v3/apps?excludeChannels=false, {"apps": [{id, name,
#   slug, ...}]} read (time fields as RFC 3339).
def cli_request(sandbox, method, path, body=None):
    import http.client
    import json as jsonlib
    from urllib.parse import urlsplit

    origin = urlsplit(sandbox.origin)
    conn = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
    try:
        conn.putrequest(method, origin.path + path, skip_accept_encoding=True)
        conn.putheader("User-Agent", "Replicated/0.0.0-test")
        data = None
        if body is not None:
            data = (jsonlib.dumps(body, separators=(",", ":")) + "\n").encode()
            conn.putheader("Content-Length", str(len(data)))
        conn.putheader("Accept", "application/json")
        conn.putheader("Authorization", sandbox.token)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Accept-Encoding", "gzip")
        conn.endheaders(data)
        answer = conn.getresponse()
        return answer.status, jsonlib.loads(answer.read() or b"null")
    finally:
        conn.close()


def test_the_official_cli_registry_test_and_logs_by_name(sandbox, http, registry_basic):
    from datetime import datetime
    from urllib.parse import quote_plus

    saved(http, registry_basic, "my registry/1")  # a name QueryEscape must encode
    name = "my registry/1"
    status, answer = cli_request(sandbox, "PUT", "/v3/external_registry/test",
                                 {"endpoint": name, "image": "test/hello:v1"})
    assert status == 200 and answer["status"] == 200  # "Registry conection appears ok"
    status, answer = cli_request(sandbox, "PUT", "/v3/external_registry/test",
                                 {"endpoint": name, "image": "test/hello:nope"})
    assert status == 200 and answer["status"] == 404  # the CLI's MANIFEST_UNKNOWN advice
    status, answer = cli_request(sandbox, "GET", f"/v3/external_registry/logs?endpoint={quote_plus(name)}")
    assert status == 200
    logs = answer["logs"]
    assert [(x["action"], x["statusCode"], x["isSuccess"], x["image"]) for x in logs] == [
        ("test", 404, False, "test/hello"), ("test", 200, True, "test/hello")]
    for entry in logs:
        datetime.fromisoformat(entry["createdAt"].replace("Z", "+00:00"))
    # by endpoint, as the CLI's own help once said (registry test HOSTNAME)
    status, answer = cli_request(sandbox, "PUT", "/v3/external_registry/test",
                                 {"endpoint": registry_basic.endpoint, "image": "test/hello:v1"})
    assert status == 200 and answer["status"] == 200


def test_the_official_cli_list_apps(sandbox, control):
    from datetime import datetime

    assert cli_request(sandbox, "GET", "/v3/apps?excludeChannels=false") == (200, {})
    control.post("/_sandbox/apps", json={"apps": [{"slug": "my-app", "name": "My App"}]})
    status, answer = cli_request(sandbox, "GET", "/v3/apps?excludeChannels=false")
    assert status == 200
    (app,) = answer["apps"]
    assert {"id", "name", "slug"} <= set(app) and app["slug"] == "my-app"
    datetime.fromisoformat(app["created"].replace("Z", "+00:00"))  # Go's time.Time: RFC 3339


def test_the_sandbox_command_seeds_apps(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSYNC_SANDBOX")}
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sandbox", "--port", "0", "--db",
                             ":memory:", "--app", "my-app", "--app", "other=2OtherId"],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        origin = None
        while origin is None:
            line = proc.stdout.readline()
            assert line, "regsync sandbox exited before printing its origin"
            if line.startswith("REPLICATED_API_ORIGIN="):
                origin = line.strip().split("=", 1)[1]
        r = httpx.get(origin + "/v3/apps", headers={"Authorization": "sandbox-token"}, timeout=5)
        assert [(a["slug"], a["id"]) for a in r.json()["apps"]][1] == ("other", "2OtherId")
        assert r.json()["apps"][0]["slug"] == "my-app"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_the_access_log_escapes_control_characters():
    import socket

    out = io.StringIO()
    with SandboxServer(token="t", key=os.urandom(32), out=out) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(b"GET /vendor/v3/\x1b[2J\x1b]0;title\x07 HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n")
            while sock.recv(4096):
                pass
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "GET /vendor/v3/\\x1b[2J\\x1b]0;title\\x07 401" in out.getvalue()
