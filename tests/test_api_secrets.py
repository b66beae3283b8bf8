"""Canaries through every error path of the client: an API (a small server on a real
loopback socket) that repeats the password and the token back, in every form a reply
can take, never gets either into an error, a test result or a log line."""

from __future__ import annotations

import base64
import json
import logging
import traceback
import uuid

import pytest

from reconciler.api import VendorAPI
from reconciler.errors import APIError
from reconciler.model import RegistryWrite
from reconciler.redact import MIN_MASKED, WITHHELD
from reconciler.retry import RetryPolicy
from reconciler.secretvalue import Secret
from tests.fixtures.apiclient import cli_project
from tests.fixtures.badserver import json_response, response

U = uuid.uuid4().hex
TOKEN = f"CANARYTOKEN{U}"
PEM = "\n".join(["-----BEGIN PRIVATE KEY-----", f"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{U}",
                 f"BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj{U}", "-----END PRIVATE KEY-----", ""])
SA_KEY = json.dumps({"type": "service_account", "project_id": "p",
                     "private_key_id": f"CANARYKEYID{U}", "private_key": PEM,
                     "client_email": "bot@p.iam.gserviceaccount.com"}, indent=2)
SECRETS = {
    "tab-newline": f"CANARY\tTAB{U}\nNEWLINE{U}\r\n  end",
    "quotes": f"CANARY\"dq{U}\"'sq{U}'\\back{U}/slash",
    "json-key": SA_KEY,
    "plain": f"CANARY-{U}",
}
USERNAME = "robot"


def forms(secret: str) -> list[str]:
    """What must not appear: the secret, reshaped as a reply might reshape it."""
    out = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], " ".join(secret.split()),
           "".join(secret.split())}
    out |= {line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_MASKED}
    for plain in (secret, f"{USERNAME}:{secret}"):
        out.add(base64.b64encode(plain.encode()).decode())
    if secret.startswith("{"):
        data = json.loads(secret)
        out.add(json.dumps(data, separators=(",", ":")))
        out |= {v for v in data.values() if isinstance(v, str) and len(v) >= 20}
    return sorted(out)


def echoes(secret: str, token: str) -> dict[str, str]:
    """The reply texts: each form of the secret, and the token as a header echo."""
    collapsed = " ".join(secret.split())
    texts = {
        "raw": f"password {secret} is refused",
        "collapsed": f"password {collapsed} is refused",
        "squeezed": "password " + "".join(secret.split()),
        "lines": " / ".join(secret.splitlines()),
        "base64": "basic " + base64.b64encode(f"{USERNAME}:{secret}".encode()).decode(),
        "base64-alone": base64.b64encode(secret.encode()).decode(),
        "token": f"Authorization: {token} is not valid",
    }
    if secret.startswith("{"):
        texts["compact-json"] = json.dumps(json.loads(secret), separators=(",", ":"))
    return texts


STATUSES = [400, 401, 403, 404, 429, 500, 503]


def _replies(request, form: str, status: int, kind: str, secret: str) -> bytes:
    secret = (request.json() or {}).get("password", secret)  # a list repeats the last one
    text = echoes(secret, request.headers.get("authorization", ""))[form]
    if kind == "message":
        return json_response(status, {"message": text})
    if kind == "error-object":
        return json_response(status, {"error": {"message": text}})
    if kind == "html":  # not JSON: the excerpt path, the secret JSON-escaped in a body
        return response(status, f"<p>{json.dumps(text)}</p>".encode(), headers={"Content-Type": "text/html"})
    if kind == "test-error":  # a test answer's error field (a 200)
        return json_response(200, {"status": 401, "error": text})
    if kind == "garbage":  # not HTTP at all: the transport error repeats the bad line
        return f"HTTP/1.1 {text}\r\n\r\n".encode()
    raise AssertionError(kind)


def _texts(err: BaseException) -> str:
    return "\n".join([str(err), repr(err), repr(err.args), getattr(err, "api_message", ""),
                      "".join(traceback.format_exception(err))])


def _calls(client: VendorAPI, secret: str):
    body = RegistryWrite(provider="other", endpoint="r.example.com", slug="r",
                         auth_type="password", username=USERNAME, password=Secret(secret))
    yield "create", lambda: client.create_registry(body)
    yield "update", lambda: client.update_registry("r", body)
    yield "test", lambda: client.test_registry(image="a/b:1", endpoint="r.example.com",
                                               username=USERNAME, password=Secret(secret))


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_form_of_a_password_or_the_token_reaches_any_error(bad_server, name, caplog):
    secret = SECRETS[name]
    state = {}
    server = bad_server(lambda request, conn: conn.sendall(_replies(request, **state)))
    policy = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, total_time=10.0)
    outputs: list[str] = []
    caplog.set_level(logging.DEBUG, logger="regsync")  # what regsync itself logs
    with VendorAPI(token=TOKEN, origin=server.origin, retry=policy) as client:
        for form in echoes(secret, TOKEN):
            cases = [(s, k) for s in STATUSES for k in ("message", "error-object", "html")]
            cases += [(200, "test-error"), (0, "garbage")]
            for status, kind in cases:
                state.update(form=form, status=status, kind=kind, secret=secret)
                for call_name, call in _calls(client, secret):
                    if kind == "test-error" and call_name != "test":
                        continue
                    try:
                        result = call()
                    except APIError as exc:
                        outputs.append(_texts(exc))
                    else:
                        outputs.append(result.error)
    outputs.append(caplog.text)
    assert len(outputs) > 300
    everything = "\n".join(outputs)
    assert "********" in everything  # the masks are there, the secrets are not
    for shape in forms(secret) + forms(TOKEN):
        assert shape not in everything, f"{name}: {shape!r} reached an output"


@pytest.mark.parametrize("short", ["h", "hunter2", "\t x\n"])
def test_a_short_password_withholds_the_message_instead_of_masking_it(bad_server, short):
    server = bad_server(lambda request, conn: conn.sendall(json_response(
        400, {"message": f"the API rejected the request: bad password {request.json()['password']}"})))
    with VendorAPI(token=TOKEN, origin=server.origin) as client:
        with pytest.raises(APIError) as info:
            client.create_registry(RegistryWrite(slug="r", endpoint="r.example.com",
                                                 password=Secret(short)))
    text = str(info.value)
    assert WITHHELD in text and WITHHELD == info.value.api_message
    assert "********" not in text and "bad password" not in text


def test_a_short_token_withholds_what_the_api_says_too(bad_server):
    server = bad_server(lambda request, conn: conn.sendall(json_response(
        401, {"message": f"token {request.headers['authorization']} unknown"})))
    with VendorAPI(token="abc", origin=server.origin) as client:
        with pytest.raises(APIError) as info:
            client.list_registries()
    assert WITHHELD in str(info.value) and "unknown" not in str(info.value)


def test_apply_output_and_report_hold_no_form_of_the_secrets(bad_server, tmp_path, monkeypatch, capsys):
    """The whole CLI: an apply whose creates and image tests are answered with echoes
    of the password and the token, in every form, prints and reports none of them."""
    from reconciler.cli import main

    secret = SECRETS["json-key"]
    texts = list(echoes(secret, TOKEN).values())

    def handle(request, conn):
        if request.method == "GET":
            conn.sendall(json_response(200, {"external_registries": []}))
        elif request.path.endswith("/test"):
            conn.sendall(json_response(200, {"status": 401, "error": " | ".join(texts)}))
        else:
            conn.sendall(json_response(400, {"message": " | ".join(texts)}))

    server = bad_server(handle)
    cli_project(monkeypatch, tmp_path,
                "version: 1\nregistries:\n  - provider: gar\n    endpoint: us-east1-docker.pkg.dev\n"
                "    auth_type: serviceaccount\n    service_account_key: ${GAR_KEY}\n"
                "    tests: [us-east1-docker.pkg.dev/p/r/img:1]\n",
                origin=server.origin, token=TOKEN, GAR_KEY=secret, REGSYNC_API_RETRY_TIME="5")
    assert main(["apply", "--auto-approve", "--report", "report.json"]) == 1
    captured = capsys.readouterr()
    everything = captured.out + captured.err + (tmp_path / "report.json").read_text()
    assert "create FAILED" in everything and "********" in everything
    for shape in forms(secret) + forms(TOKEN):
        assert shape not in everything, f"{shape!r} reached the output or the report"


def _saving_api(bad_server):
    """An API that takes creates (201) and repeats each saved password, and the token,
    in the error of every later image test: a test by slug sends no password, so the
    client cannot learn it from that request."""
    saved: dict[str, str] = {}

    def handle(request, conn):
        if request.method == "GET":
            items = [{"slug": s, "endpoint": "registry.example.com", "provider": "other",
                      "authType": "password", "username": USERNAME} for s in saved]
            conn.sendall(json_response(200, {"external_registries": items}))
        elif request.method == "POST":
            body = request.json()
            saved[body["slug"]] = body["password"]
            conn.sendall(json_response(201, {"external_registry": {
                "slug": body["slug"], "endpoint": body["endpoint"], "provider": "other",
                "authType": "password", "username": USERNAME}}))
        else:
            echo = " | ".join(" / ".join(echoes(p, request.headers["authorization"]).values())
                              for p in saved.values())
            conn.sendall(json_response(200, {"status": 401, "error": f"pull refused: {echo}"}))

    return bad_server(handle)


_SAVED_FILE = ("version: 1\nregistries:\n  - provider: other\n    slug: harbor\n"
               "    endpoint: registry.example.com\n    username: robot\n"
               "    password: ${HARBOR_PASSWORD}\n    tests: [registry.example.com/a/b:1]\n")


@pytest.mark.parametrize("name", ["tab-newline", "plain"])
def test_a_saved_password_repeated_in_a_test_by_slug_is_masked(bad_server, tmp_path, monkeypatch,
                                                               capsys, name):
    """apply's image tests and `regsync test` ask by slug (no password in the request);
    the API repeats the saved password in the test's error: it is masked all the same."""
    from reconciler.cli import main

    secret = SECRETS[name]
    server = _saving_api(bad_server)
    cli_project(monkeypatch, tmp_path, _SAVED_FILE, origin=server.origin, token=TOKEN,
                HARBOR_PASSWORD=secret, REGSYNC_API_RETRY_TIME="5")
    assert main(["apply", "--auto-approve", "--report", "report.json"]) == 1
    assert main(["test"]) == 1
    captured = capsys.readouterr()
    everything = captured.out + captured.err + (tmp_path / "report.json").read_text()
    assert everything.count("pull refused: password ******** is refused") == 3  # apply, its report, `regsync test`
    for shape in forms(secret) + forms(TOKEN):
        assert shape not in everything, f"{shape!r} reached the output or the report"


@pytest.mark.parametrize("kind", ["message", "html"])
def test_a_proxy_that_repeats_the_request_shows_none_of_its_credentials(bad_server, monkeypatch,
                                                                        kind):
    """HTTP_PROXY's password goes in Proxy-Authorization (base64 of user:password); a
    proxy that repeats the request it refused must not put it, in any form, in the error."""
    password = f"CANARY-PROXY-{U}"

    def refuse(request, conn):
        echo = (f"{request.method} {request.path}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()))
        conn.sendall(json_response(407, {"message": echo}) if kind == "message"
                     else response(407, echo.encode(), headers={"Content-Type": "text/plain"}))

    proxy = bad_server(refuse)
    monkeypatch.setenv("HTTP_PROXY", f"http://proxyuser:{password}@127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    with VendorAPI(token=TOKEN, origin="http://a:9/vendor") as client:
        with pytest.raises(APIError) as info:
            client.list_registries()
    text = _texts(info.value)
    assert proxy.requests and "proxy-authorization" in proxy.requests[0].headers
    assert "407" in str(info.value) and "********" in str(info.value)
    for shape in forms(password) + [base64.b64encode(f"proxyuser:{password}".encode()).decode()]:
        assert shape not in text, f"{shape!r} reached the error"
