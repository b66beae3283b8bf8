"""diff() on plain data: what the plan says, per slug, and what apply would send."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reconciler.diff import diff
from reconciler.errors import PlanError
from reconciler.model import Config, Settings
from reconciler.plan import FieldChange
from reconciler.secretvalue import Secret
from reconciler.state import Fingerprinter, RegistryState, State
from tests.builders import CANARY, FP, T0, have, want


def config(*registries, **settings) -> Config:
    return Config(path="registries.yaml", settings=Settings(**settings), registries=registries)


def recorded(*registries, updated_at=T0, fp=FP) -> State:
    """The state regsync leaves after setting these registries itself."""
    return State(
        key_id=fp.key_id,
        registries={
            r.slug: RegistryState(r.provider, r.endpoint, fp.fingerprint(r), updated_at)
            for r in registries
        },
    )


def only(plan):
    (change,) = plan.changes
    return change


def test_a_registry_missing_from_the_team_is_created_with_its_credentials_set():
    reg = want("acme-hub", app_ids=("app-2", "app-1"), skip_validation=True)
    plan = diff(config(reg), [], State(), FP, prune=False)
    change = only(plan)
    assert change.action == "create"
    assert change.fields == (
        FieldChange("provider", None, "dockerhub"),
        FieldChange("endpoint", None, "index.docker.io"),
        FieldChange("authType", None, "password"),
        FieldChange("username", None, "acme"),
        FieldChange("appIds", None, ("app-1", "app-2")),
        FieldChange("credentials", None, "(will be set)", secret=True),
    )
    body = change.write_body()
    assert body.to_body(create=True) == {
        "provider": "dockerhub",
        "endpoint": "index.docker.io",
        "slug": "acme-hub",
        "authType": "password",
        "username": "acme",
        "password": CANARY,
        "appIds": ["app-2", "app-1"],
        "skipValidation": True,
    }
    assert plan.summary == {"create": 1, "update": 0, "delete": 0}


def test_create_without_app_ids_sends_no_app_ids():
    change = only(diff(config(want("acme-hub")), [], State(), FP, prune=False))
    assert change.write_body().app_ids is None
    assert "appIds" not in change.write_body().to_body(create=True)


def test_a_registry_that_matches_and_was_set_by_regsync_is_a_noop():
    reg = want("acme-hub")
    plan = diff(config(reg), [have("acme-hub")], recorded(reg), FP, prune=False)
    assert only(plan).action == "noop"
    assert not plan.has_changes
    assert plan.summary == {"create": 0, "update": 0, "delete": 0}


@pytest.mark.parametrize(
    ("desired_ids", "remote_ids"),
    [(("b", "a"), ("a", "b")), (("a", "a", "b"), ("b", "a")), (None, ()), (None, None)],
)
def test_app_ids_compare_as_sets_and_omitted_means_every_app(desired_ids, remote_ids):
    reg = want("acme-hub", app_ids=desired_ids)
    remote = have("acme-hub", app_ids=remote_ids) if remote_ids is not None else have("acme-hub")
    plan = diff(config(reg), [remote], recorded(reg), FP, prune=False)
    assert only(plan).action == "noop"


def test_omitting_app_ids_shares_a_scoped_registry_with_every_app_again():
    reg = want("acme-hub")
    plan = diff(config(reg), [have("acme-hub", app_ids=("app-1",))], recorded(reg), FP, prune=False)
    change = only(plan)
    assert change.action == "update"
    assert change.fields == (FieldChange("appIds", ("app-1",), ()),)
    body = change.write_body()
    assert body.app_ids == ()
    assert body.to_body(create=False) == {"appIds": [], "skipValidation": False}


def test_each_changed_field_shows_old_and_new_and_only_those_are_sent():
    reg = want("acme-hub", endpoint="registry.acme.io", username="bot", app_ids=("a", "c"))
    remote = have("acme-hub", app_ids=("a", "b"))
    change = only(diff(config(reg), [remote], recorded(reg), FP, prune=False))
    assert change.action == "update"
    assert change.fields == (
        FieldChange("endpoint", "index.docker.io", "registry.acme.io"),
        FieldChange("username", "acme", "bot"),
        FieldChange("appIds", ("a", "b"), ("a", "c")),
    )
    assert change.write_body().to_body(create=False) == {
        "endpoint": "registry.acme.io",
        "username": "bot",
        "password": CANARY,  # a new endpoint always gets the password: saved ones stay put
        "appIds": ["a", "c"],
        "skipValidation": False,
    }


def test_provider_and_auth_type_changes_are_updates():
    reg = want("acme", provider="quay", endpoint="quay.io", auth_type="password")
    remote = have("acme", provider="dockerhub", endpoint="quay.io", auth_type="token")
    change = only(diff(config(reg), [remote], recorded(reg), FP, prune=False))
    assert change.field_names == ("provider", "authType")
    body = change.write_body()
    assert (body.provider, body.auth_type, body.endpoint, body.password) == (
        "quay",
        "password",
        None,
        None,
    )


def test_a_registry_regsync_never_set_shows_credentials_will_be_set():
    reg = want("acme-hub")
    change = only(diff(config(reg), [have("acme-hub")], State(), FP, prune=False))
    assert change.action == "update"  # only the credentials: still an update
    assert change.fields == (FieldChange("credentials", None, "(will be set)", secret=True),)
    body = change.write_body()
    assert body.password == Secret(CANARY)
    assert body.to_body(create=False) == {"password": CANARY, "skipValidation": False}


def test_a_rotated_secret_is_an_update_of_the_credentials_only():
    old = want("acme-hub", secret=CANARY + "-old")
    new = want("acme-hub")
    plan = diff(config(new), [have("acme-hub")], recorded(old), FP, prune=False)
    change = only(plan)
    assert change.action == "update"
    assert change.fields == (FieldChange("credentials", None, "(changed)", secret=True),)
    assert change.reasons == ()
    assert plan.summary == {"create": 0, "update": 1, "delete": 0}


def test_a_change_made_outside_regsync_re_sets_the_credentials():
    reg = want("acme-hub")
    remote = have("acme-hub", updated_at="2026-02-01T10:00:00Z")
    change = only(diff(config(reg), [remote], recorded(reg), FP, prune=False))
    assert change.action == "update"
    assert change.reasons == (
        "changed outside regsync (updatedAt 2026-02-01T10:00:00Z, regsync's last change "
        "2026-01-01T00:00:00Z): credentials will be re-set from the file",
    )
    assert change.fields == (
        FieldChange("credentials", None, "(re-set: changed outside regsync)", secret=True),
    )
    assert change.write_body().password == Secret(CANARY)


@pytest.mark.parametrize(
    ("remote_ts", "state_ts", "action"),
    [
        ("2026-01-01T00:00:01.123456789Z", "2026-01-01T00:00:00Z", "update"),  # Go's ns
        ("2026-01-01T00:00:05Z", "2026-01-01T00:00:00.999Z", "update"),
        # within a second: a store that rounds its timestamps, not someone else's change
        ("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00Z", "noop"),
        ("2026-01-01T00:00:01Z", "2026-01-01T00:00:00.123456789Z", "noop"),
        ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z", "noop"),  # same instant
        ("2025-12-31T00:00:00Z", "2026-01-01T00:00:00Z", "noop"),
        (None, "2026-01-01T00:00:00Z", "noop"),
    ],
)
def test_updated_at_compares_as_instants(remote_ts, state_ts, action):
    reg = want("acme-hub")
    plan = diff(
        config(reg), [have("acme-hub", updated_at=remote_ts)], recorded(reg, updated_at=state_ts),
        FP, prune=False,
    )
    assert only(plan).action == action


def test_a_changed_state_key_says_why_every_credential_is_re_set():
    reg = want("acme-hub")
    other = Fingerprinter(b"another-key")
    change = only(diff(config(reg), [have("acme-hub")], recorded(reg, fp=other), FP, prune=False))
    assert change.fields == (FieldChange("credentials", None, "(changed)", secret=True),)
    assert change.reasons == (
        "the state file's fingerprint key changed (REGSYNC_STATE_KEY or the API token is "
        "different): credentials will be re-set from the file",
    )


def test_registries_not_in_the_file_are_unmanaged_without_prune():
    plan = diff(config(), [have("legacy", last_used_at="2026-03-01T00:00:00Z")], State(), FP,
                prune=False)
    assert plan.changes == ()
    assert [r.slug for r in plan.unmanaged] == ["legacy"]
    assert plan.data["unmanaged"] == ["legacy"]


@pytest.mark.parametrize(("flag", "setting"), [(True, False), (False, True)])
def test_registries_not_in_the_file_are_deleted_when_pruning(flag, setting):
    remote = have("legacy", provider="quay", last_used_at="2026-03-01T00:00:00Z")
    plan = diff(config(prune=setting), [remote], State(), FP, prune=flag)
    change = only(plan)
    assert (change.action, change.slug, change.provider, change.last_used_at) == (
        "delete",
        "legacy",
        "quay",
        "2026-03-01T00:00:00Z",
    )
    assert plan.unmanaged == ()
    assert plan.warnings == ()
    with pytest.raises(ValueError):
        change.write_body()


def test_ignored_slugs_are_never_touched_whether_listed_or_not():
    listed = want("vendor-mirror", endpoint="changed.example.com")
    keep = want("acme-hub")
    remote = [have("vendor-mirror"), have("vendor-cache"), have("acme-hub"), have("stale")]
    plan = diff(
        config(listed, keep, ignore=("vendor-*",)), remote, recorded(keep), FP, prune=True
    )
    assert [(c.action, c.slug) for c in plan.changes] == [("delete", "stale"), ("noop", "acme-hub")]
    assert plan.ignored == ("vendor-cache", "vendor-mirror")
    assert plan.data["ignored"] == ["vendor-cache", "vendor-mirror"]


def test_registries_replicated_provides_are_never_pruned():
    remote = [have("replicated-proxy", is_replicated=True), have("stale")]
    plan = diff(config(), remote, State(), FP, prune=True)
    assert [(c.action, c.slug) for c in plan.changes] == [("delete", "stale")]
    assert plan.ignored == ("replicated-proxy",)


def test_targets_plan_only_those_slugs():
    a, b = want("a", 0), want("b", 1, endpoint="new.example.com")
    remote = [have("b"), have("c"), have("d")]
    plan = diff(config(a, b), remote, recorded(b), FP, prune=False, targets=["b", "d"])
    assert [(c.action, c.slug) for c in plan.changes] == [("update", "b")]
    assert [r.slug for r in plan.unmanaged] == ["d"]
    assert plan.warnings == ()


def test_targets_take_the_globs_of_settings_ignore():
    regs = [want("team-a", 0), want("team-b", 1), want("other", 2)]
    plan = diff(config(*regs), [], State(), FP, prune=False, targets=["team-?"])
    assert [c.slug for c in plan.changes] == ["team-a", "team-b"]
    plan = diff(config(*regs), [], State(), FP, prune=False, targets=["[ot]*r"])
    assert [c.slug for c in plan.changes] == ["other"]


def test_a_target_that_matches_nothing_is_an_error_naming_it():
    with pytest.raises(PlanError) as info:
        diff(config(want("a")), [have("c")], State(), FP, prune=False, targets=["a", "nope", "x*"])
    assert str(info.value) == (
        "--target 'nope', 'x*': matches no registry in the file or the team (slugs: a, c)"
    )


def test_a_username_only_change_shows_only_the_username():
    before = want("acme-hub", username="old-bot")
    reg = want("acme-hub", username="new-bot")  # same secret
    change = only(diff(config(reg), [have("acme-hub", username="old-bot")], recorded(before), FP,
                       prune=False))
    assert change.fields == (FieldChange("username", "old-bot", "new-bot"),)
    assert change.write_body().to_body(create=False) == {"username": "new-bot", "skipValidation": False}


def test_a_username_and_secret_change_shows_both():
    before = want("acme-hub", username="old-bot")
    reg = want("acme-hub", username="new-bot", secret=CANARY + "-rotated")
    change = only(diff(config(reg), [have("acme-hub", username="old-bot")], recorded(before), FP,
                       prune=False))
    assert change.field_names == ("username", "credentials")


def test_more_deletes_than_max_deletes_warns_and_apply_refuses_without_force():
    remote = [have("old-1"), have("old-2"), have("old-3")]
    plan = diff(config(max_deletes=2), remote, State(), FP, prune=True)
    assert plan.summary["delete"] == 3
    assert plan.warnings == (
        "This plan destroys 3 registries, more than settings.max_deletes (2). "
        "regsync apply refuses it without --force.",
    )
    with pytest.raises(PlanError) as err:
        plan.raise_if_unsafe(force=False)
    assert str(err.value) == (
        "the plan deletes 3 registries, more than settings.max_deletes (2); "
        "review it, then apply with --force"
    )
    plan.raise_if_unsafe(force=True)


def test_max_deletes_is_an_absolute_count_and_equal_is_allowed():
    plan = diff(config(max_deletes=1), [have("old-1")], State(), FP, prune=True)
    assert plan.warnings == ()
    plan.raise_if_unsafe(force=False)


def test_changes_are_ordered_creates_updates_deletes_then_noops():
    same, changed = want("m-same", 0), want("a-changed", 1, username="new")
    plan = diff(
        config(want("z-new", 2), same, changed, want("b-new", 3), max_deletes=5),
        [have("m-same"), have("a-changed"), have("y-old"), have("c-old")],
        recorded(same, changed),
        FP,
        prune=True,
    )
    assert [(c.action, c.slug) for c in plan.changes] == [
        ("create", "b-new"),
        ("create", "z-new"),
        ("update", "a-changed"),
        ("delete", "c-old"),
        ("delete", "y-old"),
        ("noop", "m-same"),
    ]
    assert [c.slug for c in plan.pending] == ["b-new", "z-new", "a-changed", "c-old", "y-old"]
    assert plan.summary == {"create": 2, "update": 1, "delete": 2}


def test_plan_data_never_holds_a_secret_or_a_fingerprint():
    rotated = want("rotated", 1)
    plan = diff(
        config(want("new", 0), rotated),
        [have("rotated", updated_at="2027-01-01T00:00:00Z")],
        recorded(want("rotated", 1, secret="old")),
        FP,
        prune=False,
    )
    text = json.dumps(plan.data)
    assert CANARY not in text
    assert "hmac-sha256" not in text
    assert CANARY not in repr(plan)


def test_an_unresolved_secret_is_refused_naming_the_registry():
    expected = r'registries\[3\] \(dockerhub "acme-hub"\): the credential is not resolved'
    with pytest.raises(PlanError, match=expected):
        diff(config(want("acme-hub", 3, secret=None)), [], State(), FP, prune=False)


def test_planning_modules_do_not_import_deepdiff_or_httpx():
    code = (
        "import sys, reconciler.diff, reconciler.plan, reconciler.render, "
        "reconciler.state, reconciler.planfile\n"
        "print(sorted(m for m in ('deepdiff', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_state_recorded_for_another_team_does_not_vouch_for_the_credentials():
    """One registries file applied to two teams with the same REGSYNC_STATE_KEY: the
    fingerprint matches, and team B's registry (older than regsync's change in team A)
    must not pass as set by regsync; its credentials are set from the file."""
    reg = want("acme-hub")
    state = recorded(reg)
    state.registries["acme-hub"].team_id = "team-a"
    remote = have("acme-hub", team_id="team-b", updated_at="2025-06-01T00:00:00Z")
    change = only(diff(config(reg), [remote], state, FP, prune=False))
    assert change.action == "update"
    assert change.fields == (FieldChange("credentials", None, "(will be set)", secret=True),)
    assert change.reasons == (
        'the state file recorded this registry for team "team-a", but the API lists it '
        'in team "team-b": credentials will be set from the file',
    )
    assert change.write_body().password == Secret(CANARY)


def test_the_same_team_or_an_unknown_team_keeps_the_recorded_credentials():
    reg = want("acme-hub")
    for recorded_team, listed_team in (("team-a", "team-a"), (None, "team-a"), ("team-a", "")):
        state = recorded(reg)
        state.registries["acme-hub"].team_id = recorded_team
        plan = diff(config(reg), [have("acme-hub", team_id=listed_team)], state, FP, prune=False)
        assert only(plan).action == "noop", (recorded_team, listed_team)
