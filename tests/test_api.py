"""The Vendor API client against the sandbox over real loopback HTTP: each endpoint's
typed results, each error with the API's message, the token and the headers."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from reconciler import __version__
from reconciler.api import DEFAULT_ORIGIN, VendorAPI, from_env
from reconciler.errors import (
    APIAuthError,
    APIBadRequest,
    APIError,
    APINotFound,
    APIServerError,
)
from reconciler.model import PullTestResult, RegistryLog, RegistryWrite, RemoteRegistry
from reconciler.retry import RetryPolicy
from reconciler.sandbox.faults import FaultRule
from reconciler.secretvalue import Secret
from tests.fixtures.apiclient import FAST, write

# --- happy paths ---------------------------------------------------------------------


def test_list_of_none_is_empty(api):
    assert api.list_registries() == []


def test_create_returns_the_registry_and_list_shows_it(api):
    created = api.create_registry(write(app_ids=("app-1",)))
    assert isinstance(created, RemoteRegistry)
    assert (created.slug, created.endpoint, created.provider) == (
        "acme", "registry.example.com", "other")
    assert (created.auth_type, created.username) == ("password", "robot")
    assert created.app_ids == ("app-1",)
    assert created.created_at
    listed = api.list_registries()
    assert [r.slug for r in listed] == ["acme"]
    assert listed[0].username == "robot"


def test_create_without_slug_takes_the_endpoint(api):
    created = api.create_registry(write(slug=None, endpoint="quay.io", provider="quay"))
    assert created.slug == "quay.io"


def test_update_changes_fields_and_keeps_the_slug(api):
    api.create_registry(write())
    updated = api.update_registry("acme", RegistryWrite(username="deployer", app_ids=()))
    assert (updated.slug, updated.username, updated.app_ids) == ("acme", "deployer", ())
    assert api.list_registries()[0].username == "deployer"


def test_delete_removes_the_registry(api):
    api.create_registry(write())
    assert api.delete_registry("acme") is None
    assert api.list_registries() == []


@pytest.mark.parametrize("slug", ["registry.example.com:5000", "a.b:c", "my registry%"])
def test_slugs_are_percent_encoded_in_paths(api, slug):
    api.create_registry(write(slug=slug))
    assert api.update_registry(slug, RegistryWrite(username="other")).username == "other"
    api.delete_registry(slug)
    assert api.list_registries() == []


def test_test_registry_returns_the_upstream_status_and_logs_it(api, unused_port):
    endpoint = f"127.0.0.1:{unused_port}"  # nothing listens: the upstream is unreachable
    api.create_registry(write(slug="down", endpoint=endpoint))
    result = api.test_registry(image="team/app:1", slug="down", endpoint=endpoint)
    assert isinstance(result, PullTestResult)
    assert not result.ok
    assert result.status == 502 and result.error
    logs = api.registry_logs(slug="down")
    assert logs and all(isinstance(entry, RegistryLog) for entry in logs)
    assert logs[-1].slug == "down" and logs[-1].status_code == 502 and not logs[-1].is_success
    assert api.registry_logs(endpoint=endpoint)[-1].image.startswith("team/app")


def test_logs_of_a_registry_never_tested_are_empty(api):
    api.create_registry(write())
    assert api.registry_logs(slug="acme") == []


# --- errors carry the API's message ----------------------------------------------------


def test_duplicate_slug_is_a_bad_request_with_the_api_message(api):
    api.create_registry(write())
    with pytest.raises(APIBadRequest) as info:
        api.create_registry(write())
    err = info.value
    assert err.status == 400 and err.api_message
    assert err.api_message in str(err)
    assert "create registry 'acme'" in str(err)


@pytest.mark.parametrize("call", ["update", "delete"])
def test_unknown_slug_is_not_found(api, call):
    with pytest.raises(APINotFound) as info:
        if call == "update":
            api.update_registry("ghost", RegistryWrite(username="x"))
        else:
            api.delete_registry("ghost")
    assert info.value.status == 404
    assert "'ghost'" in str(info.value) and info.value.api_message in str(info.value)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, APIBadRequest), (404, APINotFound), (409, APIError), (500, APIServerError),
     (501, APIServerError)],
)
def test_each_error_status_maps_to_its_type_without_retrying(sandbox, api, status, kind):
    sandbox.faults.add(FaultRule(method="GET", path=r"^/external_registries$", status=status))
    with pytest.raises(kind) as info:
        api.list_registries()
    assert type(info.value) is kind
    assert info.value.status == status
    assert f"injected fault: HTTP {status}" in str(info.value)
    assert api.calls == 1  # not one of 429/502/503/504: never retried


def test_missing_token_says_to_set_the_variable():
    for env in ({}, {"REPLICATED_API_TOKEN": ""}, {"REPLICATED_API_TOKEN": "  "}):
        with pytest.raises(APIAuthError, match="set REPLICATED_API_TOKEN"):
            from_env(env)


def test_token_option_wins_over_the_environment(sandbox):
    env = {"REPLICATED_API_TOKEN": "wrong", "REPLICATED_API_ORIGIN": sandbox.origin + "/"}
    with from_env(env, token=sandbox.token, retry=FAST) as client:
        assert client.list_registries() == []


def test_origin_from_the_environment_with_a_trailing_slash(sandbox):
    env = {"REPLICATED_API_TOKEN": sandbox.token, "REPLICATED_API_ORIGIN": sandbox.origin + "/"}
    with from_env(env, retry=FAST) as client:
        assert client.origin == sandbox.origin
        assert client.list_registries() == []


def test_default_origin_is_replicated():
    with from_env({"REPLICATED_API_TOKEN": "t"}) as client:
        assert client.origin == DEFAULT_ORIGIN == "https://api.replicated.com/vendor"


def test_wrong_token_is_refused_with_a_hint(sandbox):
    with VendorAPI(token="not-the-token", origin=sandbox.origin, retry=FAST) as client:
        with pytest.raises(APIAuthError) as info:
            client.list_registries()
    text = str(info.value)
    assert "the API refused the token (401)" in text and "check REPLICATED_API_TOKEN" in text
    assert info.value.api_message and info.value.api_message in text
    assert "not-the-token" not in text


def test_read_only_token_may_list_but_not_write(sandbox):
    assert sandbox.readonly_token
    with VendorAPI(token=sandbox.readonly_token, origin=sandbox.origin, retry=FAST) as client:
        assert client.list_registries() == []
        with pytest.raises(APIAuthError) as info:
            client.create_registry(write())
    err = info.value
    assert err.status == 403
    assert "the API refused the token (403)" in str(err)
    assert "read-only" in err.api_message and err.api_message in str(err)  # {"error": {"message"}}


# --- the wire: headers, bodies -------------------------------------------------------


class Recording(httpx.BaseTransport):
    """Forwards to the real sandbox and keeps what was sent (the sandbox cannot say)."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request):
        request.read()
        self.requests.append(request)
        return self.inner.handle_request(request)

    def close(self):
        self.inner.close()


def test_headers_raw_token_user_agent_and_json(sandbox):
    recorder = Recording()
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=FAST,
                   transport=recorder) as client:
        client.create_registry(write())
        client.list_registries()
    assert len(recorder.requests) == 2 == client.calls
    for request in recorder.requests:
        assert request.headers["Authorization"] == sandbox.token  # raw, no "Bearer"
        assert request.headers["User-Agent"] == f"regsync/{__version__}"
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Content-Type"] == "application/json"
    post = recorder.requests[0]
    assert post.method == "POST" and post.url.path == "/vendor/v3/external_registry"


def test_test_call_body_and_logs_query_names(sandbox, unused_port):
    recorder = Recording()
    endpoint = f"127.0.0.1:{unused_port}"
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=FAST,
                   transport=recorder) as client:
        client.test_registry(image="app:1", endpoint=endpoint, username="u",
                             password=Secret("before-save"))
        client.registry_logs(endpoint=endpoint, slug="s")
    body = json.loads(recorder.requests[0].content)
    assert body == {"endpoint": endpoint, "image": "app:1", "username": "u",
                    "password": "before-save"}
    assert recorder.requests[0].method == "PUT"
    assert recorder.requests[0].url.path == "/vendor/v3/external_registry/test"
    assert dict(recorder.requests[1].url.params) == {"endpoint": endpoint, "slug": "s"}


def test_slug_with_reserved_characters_is_one_path_segment(sandbox):
    recorder = Recording()
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=FAST,
                   transport=recorder) as client:
        with pytest.raises(APINotFound):
            client.delete_registry("a/b:c.d")
    assert recorder.requests[0].url.raw_path == b"/vendor/v3/external_registry/a%2Fb%3Ac.d"


# --- answers that are not the contract's JSON (no real server answers this way) ------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [(200, b"<html>maintenance</html>", APIError), (200, b"[1, 2]", APIError),
     (200, b'{"external_registries": "nope"}', APIError), (200, b"{}", APIError),
     (502, b"<html>Bad Gateway</html>", APIServerError)],
)
def test_a_body_that_is_not_the_contracts_json(status, body, kind):
    def answer(request):
        return httpx.Response(status, content=body, headers={"Content-Type": "text/html"})

    retry = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
    with VendorAPI(token="test-token", origin="http://127.0.0.1:9/vendor",
                   transport=httpx.MockTransport(answer), retry=retry) as client:
        with pytest.raises(kind) as info:
            client.list_registries()
    assert type(info.value) is kind
    assert str(status) in str(info.value)
    if status == 200:
        assert "not the contract's JSON" in str(info.value)
    assert body.decode()[:20] in str(info.value)


def test_a_huge_non_json_body_is_truncated():
    def answer(request):
        return httpx.Response(200, content=b"x" * 100_000)

    with VendorAPI(token="test-token", origin="http://127.0.0.1:9/vendor",
                   transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(APIError) as info:
            client.list_registries()
    assert len(str(info.value)) < 400


# --- the test call against a real registry (Debian's docker-registry, htpasswd) --------


def test_test_registry_pulls_through_a_real_registry(api, registry_basic):
    reg = registry_basic
    api.create_registry(write(slug="local", endpoint=reg.endpoint, username=reg.username,
                              password=Secret(reg.password), skip_validation=False))
    ok = api.test_registry(image=f"{reg.endpoint}/test/hello:v1", slug="local",
                           endpoint=reg.endpoint)
    assert ok == PullTestResult(status=200, error="") and ok.ok
    unknown = api.test_registry(image="test/hello:nope", slug="local", endpoint=reg.endpoint)
    assert unknown.status == 404 and unknown.error
    before_save = api.test_registry(image="test/hello:v1", endpoint=reg.endpoint,
                                    username=reg.username, password=Secret("wrong-password"))
    assert before_save.status == 401 and not before_save.ok
    assert "wrong-password" not in before_save.error
    logs = api.registry_logs(slug="local")
    assert sorted((e.status_code, e.is_success) for e in logs) == [(200, True), (404, False)]
    assert api.list_registries()[0].last_used_at


def test_create_with_refused_credentials_is_a_bad_request(api, registry_basic):
    reg = registry_basic
    with pytest.raises(APIBadRequest) as info:
        api.create_registry(write(slug="local", endpoint=reg.endpoint, username=reg.username,
                                  password=Secret("wrong-password"), skip_validation=False))
    assert "refused the credentials" in str(info.value)
    assert "wrong-password" not in str(info.value)
    assert api.list_registries() == []


def test_an_origin_that_is_not_an_http_url_is_refused():
    for origin in ("ftp://example.com/vendor", "api.replicated.com/vendor",
                   "https://user:pw@api.replicated.com/vendor", "ftp://u:pw@x",
                   "http://[::1", "http://127.0.0.1:port/vendor"):
        with pytest.raises(APIError, match="REPLICATED_API_ORIGIN") as info:
            from_env({"REPLICATED_API_TOKEN": "t", "REPLICATED_API_ORIGIN": origin})
        assert "pw@" not in str(info.value)


def test_a_token_no_header_can_carry_is_refused_without_echoing_it():
    canary = "CANARY-tok\nen"
    with pytest.raises(APIAuthError, match="check REPLICATED_API_TOKEN") as info:
        from_env({"REPLICATED_API_TOKEN": canary})
    assert "CANARY" not in str(info.value) and "CANARY" not in repr(info.value.args)


def _answering(body: dict | bytes):
    def answer(request):
        if isinstance(body, bytes):
            return httpx.Response(200, content=body)
        return httpx.Response(200, json=body)

    return VendorAPI(token="test-token", origin="http://127.0.0.1:9/vendor",
                     transport=httpx.MockTransport(answer))


def test_a_registry_with_extra_fields_missing_fields_and_null_app_ids_is_read():
    listed = {"external_registries": [{
        "slug": "acme", "endpoint": "quay.io", "appIds": None, "isReplicated": None,
        "updatedAt": "2026-01-01T00:00:00.123456789+02:00", "somethingNew": {"x": [1]},
    }]}
    with _answering(listed) as client:
        (remote,) = client.list_registries()
    assert (remote.slug, remote.endpoint, remote.provider, remote.app_ids) == (
        "acme", "quay.io", "", ())
    assert remote.updated_at == "2026-01-01T00:00:00.123456789+02:00"
    assert remote.is_replicated is False


@pytest.mark.parametrize(
    ("field", "value"),
    [("updatedAt", 1767225600), ("slug", 7), ("appIds", "app-1"), ("appIds", [1, 2]),
     ("username", {"name": "x"}), ("isReplicated", "yes")],
)
def test_a_registry_field_of_the_wrong_type_is_refused_naming_it(field, value):
    """Taken as it came, a numeric updatedAt would crash the plan and be written into
    the state file, which would then refuse to load."""
    listed = {"external_registries": [{"slug": "acme", "endpoint": "quay.io", field: value}]}
    with _answering(listed) as client:
        with pytest.raises(APIError) as info:
            client.list_registries()
    assert "not the contract's JSON" in str(info.value)
    assert repr(field) in str(info.value)
    with _answering({"external_registry": listed["external_registries"][0]}) as client:
        with pytest.raises(APIError):
            client.update_registry("acme", RegistryWrite(username="bot"))


def test_a_log_status_code_too_large_for_an_integer_is_refused():
    with _answering(b'{"logs": [{"statusCode": 1e400}]}') as client:
        with pytest.raises(APIError) as info:
            client.registry_logs(slug="acme")
    assert "not the contract's JSON" in str(info.value)


@pytest.mark.parametrize("status", [400, 200, 502])
def test_an_api_answer_that_echoes_the_password_never_puts_it_in_the_error(status):
    """The contract does not promise the API never quotes what it was sent; whatever
    it says, the password is masked before it reaches an error message."""
    secret = f"CANARY-{uuid.uuid4()}"

    def answer(request):
        if status == 200:  # not the contract's JSON: the excerpt is shown
            return httpx.Response(200, content=f"<p>login {secret} refused</p>".encode())
        return httpx.Response(status, json={"error_code": "E1",
                                            "message": f"password {secret!r} is refused"})

    body = RegistryWrite(provider="other", endpoint="r.example.com", slug="r",
                         auth_type="password", username="bot", password=Secret(secret))
    with VendorAPI(token="test-token", origin="http://127.0.0.1:9/vendor",
                   transport=httpx.MockTransport(answer),
                   retry=RetryPolicy(max_attempts=1)) as client:
        calls = [lambda: client.create_registry(body),
                 lambda: client.update_registry("r", body),
                 lambda: client.test_registry(image="a/b:1", endpoint="r.example.com",
                                              username="bot", password=Secret(secret))]
        for call in calls:
            with pytest.raises(APIError) as info:
                call()
            assert secret not in str(info.value)
            assert secret not in info.value.api_message
            assert "********" in str(info.value)


def test_a_password_is_masked_before_the_excerpt_clips_it():
    secret = f"CANARY-{uuid.uuid4()}"

    def answer(request):  # the excerpt keeps 120 characters: the password straddles the cut
        return httpx.Response(200, content=("x" * 100 + secret + "y" * 100).encode())

    with VendorAPI(token="test-token", origin="http://127.0.0.1:9/vendor",
                   transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(APIError) as info:
            client.test_registry(image="a/b:1", endpoint="r.example.com", username="bot",
                                 password=Secret(secret))
    assert secret[:8] not in str(info.value)
    assert "x" * 100 + "********" in str(info.value)


def test_a_password_the_api_itself_cut_short_is_masked_too():
    secret = f"CANARY-{uuid.uuid4()}"

    def answer(request):
        return httpx.Response(400, json={"message": f"bad password {secret[:20]}..."})

    with VendorAPI(token="test-token", origin="http://127.0.0.1:9/vendor",
                   transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(APIError) as info:
            client.create_registry(RegistryWrite(slug="r", endpoint="r.example.com",
                                                 password=Secret(secret)))
    assert secret[:12] not in str(info.value)
    assert "bad password ********..." in str(info.value)
