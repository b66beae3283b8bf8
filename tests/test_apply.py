"""apply_plan and run_image_tests against the real sandbox (over loopback HTTP) and the
real docker-registry: what a user sees after `regsync apply`."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from reconciler.api import VendorAPI
from reconciler.apply import (
    ADVICE_NOT_FOUND,
    ADVICE_REFUSED,
    ApplyResult,
    apply_plan,
    run_image_tests,
    skipped_tests,
    untestable,
)
from reconciler.diff import diff
from reconciler.model import Config, DesiredRegistry, RegistryWrite, SecretRef, Settings
from reconciler.sandbox.faults import FaultRule
from reconciler.secretvalue import Secret
from reconciler.state import Fingerprinter, State, load_state


def canary() -> str:
    return f"CANARY-{uuid.uuid4()}"


def desired(index: int, slug: str, *, password: str | None = None, endpoint: str | None = None,
            username: str = "bot", tests=(), skip_validation: bool = True,
            app_ids=None) -> DesiredRegistry:
    return DesiredRegistry(
        index=index,
        provider="other",
        slug=slug,
        endpoint=endpoint or f"{slug}.registry.example.com",
        auth_type="password",
        username=username,
        secret_ref=SecretRef(field="password", env_var=f"PW_{index}"),
        app_ids=app_ids,
        tests=tuple(tests),
        skip_validation=skip_validation,
        secret=Secret(password or canary()),
    )


def config_of(*registries: DesiredRegistry, prune: bool = False) -> Config:
    return Config(path="registries.yaml", settings=Settings(prune=prune, max_deletes=10),
                  registries=tuple(registries))


@pytest.fixture
def api(sandbox):
    with VendorAPI(token=sandbox.token, origin=sandbox.origin) as client:
        yield client


@pytest.fixture
def fp():
    return Fingerprinter(b"test-state-key-0123456789abcdef!")


def plan_for(config, api, state, fp, *, prune=False):
    return diff(config, api.list_registries(), state, fp, prune=prune)


def seed(api, *regs: DesiredRegistry) -> None:
    """Registries that exist before the test's apply (made outside apply_plan)."""
    for r in regs:
        api.create_registry(RegistryWrite(provider=r.provider, endpoint=r.endpoint, slug=r.slug,
                                          auth_type=r.auth_type, username=r.username,
                                          password=r.secret, skip_validation=True))


def run(plan, api, tmp_path, fp, state=None, **kw):
    state = state if state is not None else State()
    outcomes = apply_plan(plan, api, state=state, state_path=tmp_path / "state.json",
                          fingerprinter=fp, **kw)
    return outcomes, state


# --- changes -------------------------------------------------------------------------


def test_first_apply_creates_everything_and_records_fingerprints_and_updated_at(
        api, tmp_path, fp):
    regs = [desired(0, "alpha"), desired(1, "beta", app_ids=("app-2", "app-1")),
            desired(2, "gamma")]
    config = config_of(*regs)
    events = []
    outcomes, state = run(plan_for(config, api, State(), fp), api, tmp_path, fp,
                          on_event=events.append)

    assert [(o.change.action, o.change.slug, o.status) for o in outcomes] == [
        ("create", "alpha", "succeeded"), ("create", "beta", "succeeded"),
        ("create", "gamma", "succeeded")]
    assert sorted(e.change.slug for e in events) == ["alpha", "beta", "gamma"]
    remote = {r.slug: r for r in api.list_registries()}
    assert set(remote) == {"alpha", "beta", "gamma"}
    assert set(remote["beta"].app_ids) == {"app-1", "app-2"}

    saved = load_state(tmp_path / "state.json")
    assert saved.serial == 1  # each create journalled, the file written once at the end
    assert not (tmp_path / "state.json.journal").exists()
    assert saved.key_id == fp.key_id
    for r in regs:
        entry = saved.registries[r.slug]
        assert entry.fingerprint == fp.fingerprint(r)
        assert entry.updated_at == remote[r.slug].updated_at
        assert (entry.provider, entry.endpoint) == ("other", r.endpoint)
    # the next plan has nothing left to do
    assert not plan_for(config, api, saved, fp).has_changes


def test_a_failed_create_does_not_stop_the_others_and_state_records_what_succeeded(
        api, tmp_path, fp, registry_basic):
    secret = canary()
    refused = desired(1, "refused", endpoint=registry_basic.endpoint,
                      username=registry_basic.username, password=secret, skip_validation=False)
    regs = [desired(0, "alpha"), refused, desired(2, "gamma"), desired(3, "delta")]
    config = config_of(*regs)
    outcomes, _ = run(plan_for(config, api, State(), fp), api, tmp_path, fp)

    by_slug = {o.change.slug: o for o in outcomes}
    assert by_slug["refused"].status == "failed"
    assert "refused" in by_slug["refused"].error
    assert secret not in by_slug["refused"].error
    assert all(by_slug[s].status == "succeeded" for s in ("alpha", "gamma", "delta"))
    assert {r.slug for r in api.list_registries()} == {"alpha", "gamma", "delta"}

    saved = load_state(tmp_path / "state.json")
    assert set(saved.registries) == {"alpha", "gamma", "delta"}
    again = plan_for(config, api, saved, fp)
    assert [(c.action, c.slug) for c in again.changes if c.action != "noop"] == [
        ("create", "refused")]


def test_a_failed_update_keeps_the_old_fingerprint_so_the_next_plan_retries_it(
        sandbox, api, tmp_path, fp):
    old = [desired(0, "alpha"), desired(1, "beta"), desired(2, "gamma")]
    _, state = run(plan_for(config_of(*old), api, State(), fp), api, tmp_path, fp)
    before = load_state(tmp_path / "state.json")
    rotated = [desired(r.index, r.slug) for r in old]  # new passwords for all three
    sandbox.faults.add(FaultRule(method="PUT", path=r"^/external_registry/beta$",
                                 action="error", status=400, times=-1))

    outcomes, state = run(plan_for(config_of(*rotated), api, state, fp), api, tmp_path, fp,
                          state=state)

    assert {o.change.slug: (o.change.action, o.status) for o in outcomes} == {
        "alpha": ("update", "succeeded"), "beta": ("update", "failed"),
        "gamma": ("update", "succeeded")}
    saved = load_state(tmp_path / "state.json")
    assert saved.registries["beta"] == before.registries["beta"]
    assert saved.registries["alpha"].fingerprint == fp.fingerprint(rotated[0])
    assert saved.registries["alpha"].updated_at > before.registries["alpha"].updated_at
    sandbox.faults.clear()
    again = plan_for(config_of(*rotated), api, saved, fp)
    assert [(c.action, c.slug, c.field_names) for c in again.changes if c.action != "noop"] == [
        ("update", "beta", ("credentials",))]


def test_creates_and_updates_finish_before_any_delete_starts(sandbox, api, tmp_path, fp):
    keep, changed = desired(0, "keep"), desired(1, "changed")
    seed(api, keep, changed, desired(8, "old-1"), desired(9, "old-2"))
    state = State()
    # "changed" gets new app_ids; two new ones are created; old-1/old-2 are pruned
    wanted = config_of(keep, desired(1, "changed", app_ids=("app-9",)),
                       desired(2, "new-1"), desired(3, "new-2"), prune=True)
    plan = plan_for(wanted, api, state, fp, prune=True)
    sandbox.faults.latency_ms = 60
    events = []
    outcomes, _ = run(plan, api, tmp_path, fp, state=state, on_event=events.append)

    assert all(o.status == "succeeded" for o in outcomes)
    actions = [e.change.action for e in events]
    assert sorted(actions) == ["create", "create", "delete", "delete", "update", "update"]
    first_delete = actions.index("delete")
    assert set(actions[first_delete:]) == {"delete"}
    assert [o.change.action for o in outcomes] == [
        "create", "create", "update", "update", "delete", "delete"]
    assert {r.slug for r in api.list_registries()} == {"keep", "changed", "new-1", "new-2"}
    saved = load_state(tmp_path / "state.json")
    assert "old-1" not in saved.registries and "old-2" not in saved.registries


def test_a_failed_create_holds_back_the_deletes_so_the_team_never_has_fewer_registries(
        sandbox, api, tmp_path, fp):
    old = desired(0, "acme-old")
    seed(api, old)
    state = State()
    renamed = config_of(desired(0, "acme-new"), prune=True)  # a rename: create + delete
    plan = plan_for(renamed, api, state, fp, prune=True)
    assert [c.action for c in plan.changes] == ["create", "delete"]
    sandbox.faults.add(FaultRule(method="POST", path=r"^/external_registry$", action="error",
                                 status=400, times=-1))
    events = []
    outcomes, _ = run(plan, api, tmp_path, fp, state=state, on_event=events.append)

    create, delete = outcomes
    assert create.status == "failed"
    assert delete.status == "skipped"
    assert "acme-new" in delete.error and "create" in delete.error
    assert len(events) == 2
    assert [r.slug for r in api.list_registries()] == ["acme-old"]
    result = ApplyResult(changes=outcomes)
    assert not result.ok
    assert result.counts["destroyed"] == 0 and result.counts["skipped"] == 1


def test_a_failed_delete_is_reported_and_stays_in_the_state(sandbox, api, tmp_path, fp):
    seed(api, desired(0, "gone-1"), desired(1, "gone-2"))
    state = State()
    plan = plan_for(config_of(prune=True), api, state, fp, prune=True)
    sandbox.faults.add(FaultRule(method="DELETE", path=r"/gone-1$", action="error",
                                 status=403, times=-1))
    outcomes, _ = run(plan, api, tmp_path, fp, state=state)
    assert {o.change.slug: o.status for o in outcomes} == {"gone-1": "failed",
                                                           "gone-2": "succeeded"}
    assert [r.slug for r in api.list_registries()] == ["gone-1"]


def _max_in_window(times: list[datetime], width: float) -> int:
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if (t - start).total_seconds() < width))
    return best


@pytest.mark.parametrize("parallelism", [4, 1])
def test_concurrency_is_bounded_by_parallelism(sandbox, api, tmp_path, fp, parallelism):
    """The sandbox stamps createdAt after its injected latency: one worker's creates are
    at least a latency apart, so no window shorter than the latency can hold more
    creates than there are workers, and unbounded concurrency would put them all in one."""
    latency = 0.15
    regs = [desired(i, f"reg-{i:02d}") for i in range(10)]
    plan = plan_for(config_of(*regs), api, State(), fp)
    sandbox.faults.latency_ms = int(latency * 1000)
    outcomes, _ = run(plan, api, tmp_path, fp, parallelism=parallelism)
    assert all(o.status == "succeeded" for o in outcomes)
    sandbox.faults.latency_ms = 0
    created = [datetime.fromisoformat(r.created_at.replace("Z", "+00:00"))
               for r in api.list_registries()]
    assert len(created) == 10
    peak = _max_in_window(created, latency * 0.9)
    assert peak <= parallelism
    if parallelism > 1:
        assert peak >= 2  # the changes really ran side by side


# --- image tests ---------------------------------------------------------------------


def test_image_tests_pull_through_the_saved_credentials(api, tmp_path, fp, registry_basic):
    good = desired(0, "good", endpoint=registry_basic.endpoint, username=registry_basic.username,
                   password=registry_basic.password, skip_validation=False,
                   tests=["test/hello:v1", "test/hello:no-such-tag"])
    wrong_password = canary()
    bad = desired(1, "bad", endpoint=registry_basic.endpoint, username=registry_basic.username,
                  password=wrong_password, tests=["test/hello:v1"])
    untested = desired(2, "untested")
    config = config_of(good, bad, untested)
    outcomes, _ = run(plan_for(config, api, State(), fp), api, tmp_path, fp)
    assert all(o.status == "succeeded" for o in outcomes)

    seen = []
    tests = run_image_tests(config, api, on_event=seen.append)
    assert [(t.slug, t.image, t.status, t.ok) for t in tests] == [
        ("good", "test/hello:v1", 200, True),
        ("good", "test/hello:no-such-tag", 404, False),
        ("bad", "test/hello:v1", 401, False),
    ]
    assert len(seen) == 3
    assert tests[0].advice == "" and tests[0].error == ""
    assert tests[1].advice == ADVICE_NOT_FOUND
    assert tests[2].advice == ADVICE_REFUSED
    assert all(wrong_password not in repr(t) for t in tests)

    only_bad = run_image_tests(config, api, slugs={"bad"})
    assert [(t.slug, t.status) for t in only_bad] == [("bad", 401)]


def test_image_tests_through_bearer_token_auth(api, tmp_path, fp, registry_token):
    reg = desired(0, "tokened", endpoint=registry_token.endpoint,
                  username=registry_token.username, password=registry_token.password,
                  tests=["test/hello:v1"])
    run(plan_for(config_of(reg), api, State(), fp), api, tmp_path, fp)
    (outcome,) = run_image_tests(config_of(reg), api)
    assert (outcome.status, outcome.ok) == (200, True)


def test_an_api_failure_of_one_test_is_reported_and_the_others_still_run(sandbox, api, tmp_path,
                                                                        fp, registry_basic):
    good = desired(0, "good", endpoint=registry_basic.endpoint, username=registry_basic.username,
                   password=registry_basic.password, tests=["test/hello:v1"])
    missing = desired(1, "never-created", tests=["test/hello:v1"])
    run(plan_for(config_of(good), api, State(), fp), api, tmp_path, fp)
    tests = run_image_tests(config_of(good, missing), api)
    assert [(t.slug, t.ok) for t in tests] == [("good", True), ("never-created", False)]
    failed = tests[1]
    assert failed.status == 0 and "never-created" in failed.error
    assert ApplyResult(tests=tests).counts["tests_failed"] == 1


def test_skipped_tests_are_reported_without_calling_the_api(sandbox, api, tmp_path, fp):
    regs = [desired(0, "a", tests=["x/y:1"]), desired(1, "b", tests=["x/y:2", "x/z:3"])]
    before = sandbox.stats.requests
    tests = run_image_tests(config_of(*regs), api, skip={"a": "its create failed",
                                                         "b": "its create failed"})
    assert sandbox.stats.requests == before
    assert [(t.slug, t.result) for t in tests] == [("a", "skipped"), ("b", "skipped"),
                                                   ("b", "skipped")]
    skipped = skipped_tests(config_of(*regs), reason="--skip-tests", slugs={"b"})
    assert [t.image for t in skipped] == ["x/y:2", "x/z:3"]
    result = ApplyResult(tests=skipped)
    assert result.ok and result.counts["tests_skipped"] == 2


# --- the report and secrets ----------------------------------------------------------


def test_report_data_and_no_secret_anywhere(sandbox, api, tmp_path, fp, registry_basic):
    secrets = [canary() for _ in range(3)]
    ok = desired(0, "ok", endpoint=registry_basic.endpoint, username=registry_basic.username,
                 password=registry_basic.password, tests=["test/hello:v1"])
    wrong = desired(1, "wrong", endpoint=registry_basic.endpoint,
                    username=registry_basic.username, password=secrets[0],
                    tests=["test/hello:v1"])
    refused = desired(2, "refused", endpoint=registry_basic.endpoint,
                      username=registry_basic.username, password=secrets[1],
                      skip_validation=False, tests=["test/hello:v1"])
    plain = desired(3, "plain", password=secrets[2])
    config = config_of(ok, wrong, refused, plain)
    events = []
    outcomes, _ = run(plan_for(config, api, State(), fp), api, tmp_path, fp,
                      on_event=events.append)
    tests = run_image_tests(config, api, skip=untestable(outcomes))
    result = ApplyResult(changes=outcomes, tests=tests)
    report = result.report_data()

    assert not result.ok
    assert report["ok"] is False
    assert report["summary"] == {"added": 3, "changed": 0, "destroyed": 0, "failed": 1,
                                 "skipped": 0, "tests_passed": 1, "tests_failed": 1,
                                 "tests_skipped": 1}
    changes = {c["slug"]: c for c in report["changes"]}
    assert changes["ok"]["result"] == "succeeded" and changes["ok"]["action"] == "create"
    assert "credentials" in changes["ok"]["fields"]
    assert changes["refused"]["result"] == "failed" and changes["refused"]["reason"]
    assert "reason" not in changes["plain"]
    tests_by_slug = {t["slug"]: t for t in report["tests"]}
    assert tests_by_slug["ok"] == {"slug": "ok", "image": "test/hello:v1",
                                   "result": "succeeded", "upstream_status": 200}
    assert tests_by_slug["wrong"]["result"] == "failed"
    assert tests_by_slug["wrong"]["upstream_status"] == 401
    assert tests_by_slug["wrong"]["advice"] == ADVICE_REFUSED
    assert tests_by_slug["refused"]["result"] == "skipped"
    assert "create failed" in tests_by_slug["refused"]["reason"]

    text = json.dumps(report)
    state_text = (tmp_path / "state.json").read_text()
    shown = repr(outcomes) + repr(tests) + repr(events) + "".join(
        o.error for o in outcomes) + "".join(t.error for t in tests)
    for s in secrets + [registry_basic.password]:
        assert s not in text
        assert s not in state_text
        assert s not in shown


def test_an_interrupted_apply_starts_nothing_more_and_the_state_matches_the_team(
        sandbox, api, tmp_path, fp):
    """Ctrl-C arrives in the CLI's on_event (the main thread's wait re-raises it): the
    queued changes are cancelled, and what did happen is in the state file."""
    regs = [desired(i, f"reg-{i}") for i in range(8)]
    plan = plan_for(config_of(*regs), api, State(), fp)
    sandbox.faults.latency_ms = 50

    def interrupt(outcome):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(plan, api, tmp_path, fp, parallelism=1, on_event=interrupt)
    made = {r.slug for r in api.list_registries()}
    assert 1 <= len(made) <= 2  # the first, and at most the one already in flight
    assert set(load_state(tmp_path / "state.json").registries) == made


def test_a_state_file_from_another_team_does_not_hide_that_team_s_stale_credentials(
        tmp_path, fp):
    """The same file and REGSYNC_STATE_KEY applied to team A, then to team B where the
    registry already exists with another password: B's credentials are set, not
    trusted on the strength of what regsync did in A."""
    import os

    from reconciler.sandbox.server import SandboxServer

    reg = desired(0, "shared")
    team_a = SandboxServer(token="token-a", key=os.urandom(32), team_id="team-a")
    team_b = SandboxServer(token="token-b", key=os.urandom(32), team_id="team-b")
    try:
        team_a.start()
        team_b.start()
        with VendorAPI(token="token-a", origin=team_a.origin) as api_a, \
                VendorAPI(token="token-b", origin=team_b.origin) as api_b:
            seed(api_b, desired(0, "shared"))  # another password, set before A's apply
            _, state = run(plan_for(config_of(reg), api_a, State(), fp), api_a, tmp_path, fp)
            saved = load_state(tmp_path / "state.json")
            assert saved.registries["shared"].team_id == "team-a"

            plan = plan_for(config_of(reg), api_b, saved, fp)
            (change,) = plan.changes
            assert (change.action, change.field_names) == ("update", ("credentials",))
            outcomes, _ = run(plan, api_b, tmp_path, fp, state=saved)
            assert [o.status for o in outcomes] == ["succeeded"]
            assert team_b.store.password("shared") == reg.secret
            assert load_state(tmp_path / "state.json").registries["shared"].team_id == "team-b"
    finally:
        team_a.stop()
        team_b.stop()


def test_when_the_state_cannot_be_saved_every_change_says_so_and_nothing_hangs(api, tmp_path, fp):
    """The group commit hands a failed write to every record it carried."""
    regs = [desired(i, f"reg-{i}") for i in range(8)]
    plan = plan_for(config_of(*regs), api, State(), fp)
    outcomes = apply_plan(plan, api, state=State(), state_path=tmp_path / "gone" / "state.json",
                          fingerprinter=fp, parallelism=4)
    assert [o.status for o in outcomes] == ["failed"] * 8
    assert all(o.error.startswith("applied, but the state file could not be saved: ")
               for o in outcomes)
    assert {r.slug for r in api.list_registries()} == {f"reg-{i}" for i in range(8)}


def test_every_event_is_reported_on_the_calling_thread_so_lines_never_interleave(
        api, tmp_path, fp, registry_basic):
    # The CLI prints each event as it comes; from one thread, its lines cannot mix.
    import threading

    regs = [desired(i, f"reg-{i}", endpoint=registry_basic.endpoint,
                    username=registry_basic.username, password=registry_basic.password,
                    tests=["test/hello:v1", "test/hello:missing"]) for i in range(6)]
    config = config_of(*regs)
    threads = []
    outcomes, _ = run(plan_for(config, api, State(), fp), api, tmp_path, fp, parallelism=8,
                      on_event=lambda o: threads.append(threading.get_ident()))
    tests = run_image_tests(config, api, parallelism=8,
                            on_event=lambda o: threads.append(threading.get_ident()))
    assert len(outcomes) == 6 and len(tests) == 12
    assert [t.slug for t in tests] == [r.slug for r in regs for _ in range(2)]  # file order
    assert set(threads) == {threading.get_ident()} and len(threads) == 18
