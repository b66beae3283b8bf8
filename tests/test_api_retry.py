"""The client's retry rules, driven by the sandbox's injected faults over real HTTP:
what is retried, what a lost answer does to a create or a delete, the bounds, threads,
and that no secret reaches an error."""

from __future__ import annotations

import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import httpx
import pytest

from reconciler.api import Timeout, VendorAPI
from reconciler.errors import APIError, APIServerError, APIUnavailable
from reconciler.model import RegistryWrite
from reconciler.retry import ANSWERED, CONNECT, TIMEOUT, RetryPolicy, parse_retry_after
from reconciler.sandbox.faults import FaultRule
from reconciler.secretvalue import Secret
from tests.fixtures.apiclient import FAST, closed_port, write

LIST = r"^/external_registries$"
CREATE = r"^/external_registry$"
BY_SLUG = r"^/external_registry/acme$"


def ops(sandbox) -> dict[str, int]:
    return sandbox.stats.by_operation


# --- what is retried ---------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(sandbox, api):
    sandbox.faults.add(FaultRule(method="GET", path=LIST, status=429, retry_after=0.3))
    started = time.monotonic()
    assert api.list_registries() == []
    assert time.monotonic() - started >= 0.3
    assert api.calls == 2 == ops(sandbox)["list"]


def test_a_rate_limited_burst_all_gets_through(sandbox, api):
    sandbox.faults.rate_limit = (2, 0.3)
    for _ in range(5):
        assert api.list_registries() == []
    assert api.calls > 5  # some were answered 429 and retried after the window


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(sandbox, api, status):
    sandbox.faults.add(FaultRule(method="GET", path=LIST, status=status, times=2))
    assert api.list_registries() == []
    assert api.calls == 3 == ops(sandbox)["list"]


def test_a_list_whose_connection_drops_is_retried(sandbox, api):
    sandbox.faults.add(FaultRule(method="GET", path=LIST, action="drop_before", times=2))
    assert api.list_registries() == []
    assert api.calls == 3


def test_an_update_whose_answer_is_lost_is_sent_again(sandbox, api):
    api.create_registry(write())
    sandbox.faults.add(FaultRule(method="PUT", path=BY_SLUG, action="drop_after"))
    assert api.update_registry("acme", RegistryWrite(username="deployer")).username == "deployer"
    assert ops(sandbox)["update"] == 2


# --- a create is never sent twice blindly ----------------------------------------------


@pytest.mark.parametrize("action", ["drop_after", "error_after"])
def test_a_create_that_landed_but_lost_its_answer_makes_one_registry(sandbox, api, action):
    sandbox.faults.add(FaultRule(method="POST", path=CREATE, action=action, status=503))
    created = api.create_registry(write())
    assert (created.slug, created.endpoint, created.username) == (
        "acme", "registry.example.com", "robot")
    assert ops(sandbox)["create"] == 1  # found by listing, not sent again
    assert ops(sandbox)["list"] == 1
    assert [r.slug for r in api.list_registries()] == ["acme"]


@pytest.mark.parametrize(
    ("action", "status"), [("drop_before", 503), ("error", 503), ("error", 502)])
def test_a_create_that_did_not_land_is_sent_again_after_listing(sandbox, api, action, status):
    sandbox.faults.add(FaultRule(method="POST", path=CREATE, action=action, status=status))
    assert api.create_registry(write()).slug == "acme"
    assert ops(sandbox)["create"] == 2
    assert ops(sandbox)["list"] == 1
    assert [r.slug for r in api.list_registries()] == ["acme"]


def test_a_429_on_create_is_retried_without_listing(sandbox, api):
    sandbox.faults.add(FaultRule(method="POST", path=CREATE, status=429, retry_after=0.05))
    assert api.create_registry(write()).slug == "acme"
    assert ops(sandbox)["create"] == 2 and ops(sandbox)["list"] == 0


def test_a_slug_taken_by_another_endpoint_is_not_mistaken_for_our_create(sandbox, api):
    api.create_registry(write(endpoint="other.example.com"))
    sandbox.faults.add(FaultRule(method="POST", path=CREATE, action="drop_before"))
    with pytest.raises(APIError, match="already exists with endpoint 'other.example.com'"):
        api.create_registry(write(endpoint="registry.example.com"))
    assert api.list_registries()[0].endpoint == "other.example.com"


class LostThenStale(httpx.BaseTransport):
    """Forwards to the real sandbox, except: the first create's answer is lost after the
    sandbox committed it, and the first list answers from a lagging replica (empty).
    The sandbox cannot lag, so this edge is injected; the 400 comes from the sandbox."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.lost = self.stale = False

    def handle_request(self, request):
        if request.method == "GET" and not self.stale:
            self.stale = True
            return httpx.Response(200, json={"external_registries": None})
        response = self.inner.handle_request(request)
        if request.method == "POST" and not self.lost:
            self.lost = True
            response.close()
            raise httpx.ReadError("connection reset", request=request)
        return response

    def close(self):
        self.inner.close()


def test_already_exists_after_a_lost_answer_is_resolved_by_listing(sandbox):
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=FAST,
                   transport=LostThenStale()) as client:
        created = client.create_registry(write())
        assert created.slug == "acme"
        assert [r.slug for r in client.list_registries()] == ["acme"]
    assert ops(sandbox)["create"] == 2  # the second answered 400 "already exists"


# --- a delete whose answer is lost ---------------------------------------------------------


@pytest.mark.parametrize("action", ["drop_after", "error_after"])
def test_a_delete_that_landed_but_lost_its_answer_succeeds(sandbox, api, action):
    api.create_registry(write())
    sandbox.faults.add(FaultRule(method="DELETE", path=BY_SLUG, action=action, status=503))
    assert api.delete_registry("acme") is None
    assert ops(sandbox)["delete"] == 2  # the retry's 404 means the first one landed
    assert api.list_registries() == []


# --- bounds ------------------------------------------------------------------------------


def test_503_forever_ends_as_a_server_error_after_the_attempts(sandbox):
    policy = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, total_time=5.0)
    sandbox.faults.add(FaultRule(method="GET", path=LIST, status=503, times=-1))
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=policy) as client:
        with pytest.raises(APIServerError) as info:
            client.list_registries()
    assert info.value.status == 503
    assert "after 4 attempts" in str(info.value) and "injected fault: HTTP 503" in str(info.value)
    assert client.calls == 4 == ops(sandbox)["list"]


def test_the_time_bound_stops_retries_before_the_attempts_do(sandbox):
    policy = RetryPolicy(max_attempts=1000, base_delay=0.1, max_delay=0.1, total_time=0.5)
    sandbox.faults.add(FaultRule(method="GET", path=LIST, status=502, times=-1))
    started = time.monotonic()
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=policy) as client:
        with pytest.raises(APIServerError):
            client.list_registries()
    # the time bound stopped it (not the 1000 attempts); the slack is for a loaded machine
    assert time.monotonic() - started < policy.total_time + 3.0
    assert 1 <= client.calls < 1000


def test_a_retry_after_past_the_time_left_gives_up_at_once(sandbox):
    policy = RetryPolicy(base_delay=0.01, max_delay=0.05, total_time=2.0)
    sandbox.faults.add(FaultRule(method="GET", path=LIST, status=429, retry_after=30))
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=policy) as client:
        with pytest.raises(APIError, match=r"rate limited by the API \(429\)") as info:
            client.list_registries()
    assert info.value.status == 429 and client.calls == 1


def test_no_answer_forever_ends_as_unavailable(sandbox, api):
    sandbox.faults.add(FaultRule(method="GET", path=LIST, action="drop_before", times=-1))
    with pytest.raises(APIUnavailable, match="no answer from .* after 5 attempts") as info:
        api.list_registries()
    assert "RemoteProtocolError" in str(info.value)
    assert api.calls == 5


def test_a_create_never_answered_says_it_may_have_landed(sandbox, api):
    sandbox.faults.add(FaultRule(method="POST", path=CREATE, action="drop_before", times=-1))
    with pytest.raises(APIUnavailable, match="it may have been created"):
        api.create_registry(write())
    assert ops(sandbox)["create"] == 3 and ops(sandbox)["list"] == 2  # 5 attempts in all
    assert api.list_registries() == []


def test_connection_refused_is_retried_for_connect_time_then_unavailable():
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, total_time=5.0,
                         connect_time=0.3, max_connect_delay=0.05)
    started = time.monotonic()
    with VendorAPI(token="test-token", origin=f"http://127.0.0.1:{closed_port()}/vendor",
                   retry=policy) as client:
        with pytest.raises(APIUnavailable, match="ConnectError") as info:
            client.create_registry(write())
    assert policy.connect_time <= time.monotonic() - started < policy.total_time
    # retried past max_attempts (nothing was sent, so no list in between)
    assert client.calls > 3
    assert f"after {client.calls} attempts" in str(info.value)
    assert "may have been created" not in str(info.value)


def test_a_slow_answer_times_out_and_is_unavailable(sandbox):
    sandbox.faults.latency_ms = 500
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, total_time=5.0)
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=policy,
                   timeout=Timeout(read=0.1)) as client:
        with pytest.raises(APIUnavailable, match="ReadTimeout"):
            client.list_registries()
    assert client.calls == 2


# --- threads -------------------------------------------------------------------------------


def test_twenty_creates_from_four_threads_all_land_and_are_counted(sandbox, api):
    with ThreadPoolExecutor(max_workers=4) as pool:
        created = list(pool.map(lambda i: api.create_registry(write(slug=f"r{i:02d}")), range(20)))
    expected = [f"r{i:02d}" for i in range(20)]
    assert [r.slug for r in created] == expected
    assert api.calls == 20 == ops(sandbox)["create"]
    assert sorted(r.slug for r in api.list_registries()) == expected


@pytest.mark.parametrize("seed", [7, 2026])
def test_concurrent_creates_under_random_faults_each_land_once(sandbox, seed):
    # Seeded: the faults are drawn from one sequence (which thread meets which draw
    # still varies, but no run can meet more faults than the seed gives).
    sandbox.faults.configure({"seed": seed, "fail_before_rate": 0.2, "lose_after_rate": 0.2})
    policy = RetryPolicy(max_attempts=14, base_delay=0.005, max_delay=0.02, total_time=20.0)
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=policy) as client:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda i: client.create_registry(write(slug=f"r{i:02d}")), range(20)))
        sandbox.faults.clear()
        assert sorted(r.slug for r in client.list_registries()) == [f"r{i:02d}" for i in range(20)]
        assert client.calls == sandbox.stats.requests


# --- no secret in any error ------------------------------------------------------------------


def _texts(err: BaseException) -> str:
    return "\n".join([str(err), repr(err), repr(err.args), getattr(err, "api_message", ""),
                      "".join(traceback.format_exception(err))])


def test_a_password_never_reaches_an_error(sandbox):
    unused_port = closed_port()
    canary = f"CANARY-{uuid.uuid4()}"
    body = write(password=Secret(canary))
    quick = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, total_time=5.0,
                        connect_time=0.2, max_connect_delay=0.05)
    errors: list[BaseException] = []

    def attempt(call, rules=(), **knobs):
        sandbox.faults.clear()
        for rule in rules:
            sandbox.faults.add(rule)
        for key, value in knobs.items():
            setattr(sandbox.faults, key, value)
        with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=quick,
                       timeout=Timeout(read=0.1)) as client:
            with pytest.raises(APIError) as info:
                call(client)
        errors.append(info.value)

    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=quick) as client:
        client.create_registry(write())
    attempt(lambda c: c.create_registry(body))  # 400: the slug exists
    attempt(lambda c: c.update_registry("ghost", body))  # 404
    for status in (400, 500, 503):
        attempt(lambda c: c.create_registry(write(slug="new", password=Secret(canary))),
                rules=[FaultRule(method="POST", path=CREATE, status=status, times=-1)])
    attempt(lambda c: c.create_registry(write(slug="slow", password=Secret(canary))),
            latency_ms=400)  # read timeouts
    attempt(lambda c: c.test_registry(image="a:1", endpoint=f"127.0.0.1:{unused_port}",
                                      username="u", password=Secret(canary)), latency_ms=400)
    with VendorAPI(token=canary, origin=sandbox.origin, retry=quick) as client:
        with pytest.raises(APIError) as info:  # 401, the token itself is the canary
            client.create_registry(body)
        errors.append(info.value)
        assert canary not in repr(client)
    with VendorAPI(token="test-token", origin=f"http://127.0.0.1:{closed_port()}/vendor",
                   retry=quick) as client:
        with pytest.raises(APIUnavailable) as info:
            client.create_registry(body)
        errors.append(info.value)

    assert len(errors) == 9
    assert {type(e).__name__ for e in errors} >= {
        "APIBadRequest", "APINotFound", "APIServerError", "APIUnavailable", "APIAuthError"}
    for err in errors:
        assert canary not in _texts(err)


# --- pure pieces: Retry-After and backoff -------------------------------------------------


def test_retry_after_in_seconds_or_as_an_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert 8.0 <= parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10.0
    assert parse_retry_after(formatdate(time.time() - 100, usegmt=True)) == 0.0
    for junk in (None, "", "soon", "nan"):
        assert parse_retry_after(junk) is None


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter():
    top = RetryPolicy(base_delay=0.5, max_delay=4.0, random=lambda: 0.999999)
    assert [round(top.backoff(n), 3) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert RetryPolicy(base_delay=0.5, random=lambda: 0.0).backoff(3) == 0.0


def test_a_server_retry_after_is_capped():
    slept: list[float] = []
    policy = RetryPolicy(max_retry_after=2.0, total_time=60.0, sleep=slept.append)
    budget = policy.budget()
    budget.begin_attempt()
    assert budget.wait(retry_after=3600) is True
    assert slept == [2.0]


def test_a_create_that_did_not_land_with_no_attempt_left_says_so(sandbox):
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, total_time=5.0)
    sandbox.faults.add(FaultRule(method="POST", path=CREATE, status=503, times=-1))
    with VendorAPI(token=sandbox.token, origin=sandbox.origin, retry=policy) as client:
        with pytest.raises(APIServerError, match=r"\(it was not created\)"):
            client.create_registry(write())
        assert client.calls == 2  # the create, then the list that found nothing
        assert client.list_registries() == []


def test_a_503_with_retry_after_is_honoured_too(sandbox, api):
    sandbox.faults.add(FaultRule(method="GET", path=LIST, status=503, retry_after=0.3))
    started = time.monotonic()
    assert api.list_registries() == []
    assert time.monotonic() - started >= 0.3


def test_connection_failures_are_retried_for_connect_time_whatever_max_attempts_says():
    """A three-second restart: connection failures keep being retried (with waits of at
    most max_connect_delay) until connect_time has passed since the first of them."""
    now = [0.0]
    policy = RetryPolicy(max_attempts=2, connect_time=20.0, max_connect_delay=1.0,
                         clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s),
                         random=lambda: 0.999)
    budget = policy.budget()
    waits = 0
    while now[0] < 3.0:  # the API is down for three seconds
        budget.begin_attempt()
        now[0] += 0.01  # a refused connect is quick
        assert budget.wait(ended=CONNECT)
        waits += 1
    assert waits > policy.max_attempts and not budget.spent()  # still one answered attempt left
    budget.begin_attempt()
    assert budget.wait(ended=ANSWERED)  # a 503 once it is back: counted as usual
    budget.begin_attempt()
    while budget.wait(ended=CONNECT):  # down for good: retried until connect_time passed
        budget.begin_attempt()
    assert 20.0 <= now[0] < 22.0 and budget.counted() == 1


def test_unanswered_requests_end_the_call_after_max_timeouts():
    policy = RetryPolicy(max_attempts=10, max_timeouts=2, base_delay=0.0, max_delay=0.0,
                         sleep=lambda s: None)
    budget = policy.budget()
    budget.begin_attempt()
    assert budget.wait(ended=TIMEOUT)
    budget.begin_attempt()
    assert not budget.wait(ended=TIMEOUT) and budget.spent()
