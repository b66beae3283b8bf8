"""Saved plans: written without a secret, applied only while they still hold."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace

import pytest

from reconciler.diff import diff
from reconciler.errors import PlanError
from reconciler.model import Config, Settings
from reconciler.planfile import (
    check_fresh,
    config_digest,
    fingerprints,
    load_plan,
    remote_digest,
    save_plan,
)
from reconciler.secretvalue import Secret
from reconciler.state import Fingerprinter, RegistryState, State
from tests.builders import CANARY, FP, T0, have, want


class World:
    """The registries file on disk, the team's registries, the state: what a plan reads."""

    def __init__(self, tmp_path):
        self.config_path = tmp_path / "registries.yaml"
        self.config_path.write_text("registries: []  # the bytes are what counts\n")
        self.config = Config(
            path=str(self.config_path),
            settings=Settings(prune=True),
            registries=(want("a-hub", 0), want("b-hub", 1)),
        )
        self.remote = [have("b-hub"), have("old", last_used_at="2026-02-01T00:00:00Z")]
        self.state = State(key_id=FP.key_id)
        self.fingerprinter = FP

    def plan(self):
        return diff(self.config, self.remote, self.state, self.fingerprinter, prune=False)

    def save(self, path):
        save_plan(
            path,
            self.plan(),
            config_path=self.config_path,
            config_sha256=config_digest(self.config_path),
            remote_sha256=remote_digest(self.remote),
            fingerprints=fingerprints(self.config, self.fingerprinter),
            key_id=self.fingerprinter.key_id,
        )

    def check(self, saved):
        check_fresh(
            saved,
            config_sha256=config_digest(self.config_path),
            remote_sha256=remote_digest(self.remote),
            fingerprints=fingerprints(self.config, self.fingerprinter),
            plan=self.plan(),
            key_id=self.fingerprinter.key_id,
        )


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


@pytest.fixture
def saved(world, tmp_path):
    path = tmp_path / "plan.json"
    world.save(path)
    return load_plan(path)


def test_a_plan_file_round_trips_and_holds_no_secret(world, tmp_path):
    path = tmp_path / "plan.json"
    world.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert CANARY not in text
    loaded = load_plan(path)
    assert loaded.data == world.plan().data
    assert loaded.config_path == str(world.config_path)
    assert loaded.config_sha256 == config_digest(world.config_path)
    assert loaded.key_id == FP.key_id
    assert sorted(loaded.fingerprints) == ["a-hub", "b-hub"]
    assert all(v.startswith("hmac-sha256:") for v in loaded.fingerprints.values())


def test_an_unchanged_world_is_fresh(world, saved):
    world.check(saved)


def test_a_new_last_used_at_does_not_make_a_plan_stale(world, saved):
    world.remote = [have("old", last_used_at="2026-05-05T00:00:00Z"), have("b-hub")]
    world.check(saved)


def test_stale_when_the_registries_file_changed(world, saved):
    world.config_path.write_text("registries: []  # edited after the plan\n")
    with pytest.raises(PlanError) as err:
        world.check(saved)
    assert str(err.value) == (
        "the saved plan is stale: the registries file changed since the plan "
        f"({world.config_path}); run regsync plan again and review the new plan"
    )


def test_stale_when_the_teams_registries_changed(world, saved):
    world.remote = [have("b-hub", updated_at="2026-06-01T00:00:00Z"), world.remote[1]]
    with pytest.raises(PlanError) as err:
        world.check(saved)
    assert str(err.value) == (
        "the saved plan is stale: the team's registries changed since the plan (someone "
        "created, changed or deleted one); run regsync plan again and review the new plan"
    )


def test_stale_when_a_secret_no_longer_matches(world, saved):
    rotated = replace(world.config.registries[1], secret=Secret(CANARY + "-rotated"))
    world.config = replace(world.config, registries=(world.config.registries[0], rotated))
    with pytest.raises(PlanError) as err:
        world.check(saved)
    message = str(err.value)
    assert message == (
        'the saved plan is stale: the secret of registries[1] (dockerhub "b-hub") no longer '
        "matches the plan; run regsync plan again and review the new plan"
    )
    assert CANARY not in message


def test_stale_when_the_fingerprint_key_changed(world, saved):
    world.fingerprinter = Fingerprinter(b"another-key")
    with pytest.raises(PlanError, match=r"the fingerprint key changed since the plan"):
        world.check(saved)


def test_stale_when_the_plan_computed_now_differs(world, saved):
    # another apply recorded b-hub's credentials meanwhile: the plan now has no update
    world.state.registries["b-hub"] = RegistryState(
        "dockerhub", "index.docker.io", FP.fingerprint(world.config.registries[1]), T0
    )
    with pytest.raises(PlanError) as err:
        world.check(saved)
    assert str(err.value) == (
        "the saved plan is stale: the plan computed now differs from the saved one (saved "
        "1 to add, 1 to change, 1 to destroy; now 1 to add, 0 to change, 1 to destroy; "
        "differs in: change noop b-hub, change update b-hub): the "
        "state file changed, or other --target/--prune options were given; run regsync plan "
        "again and review the new plan"
    )


def test_remote_digest_ignores_order_and_last_used_at_only():
    a, b = have("a", app_ids=("x", "y")), have("b")
    assert remote_digest([a, b]) == remote_digest([b, replace(a, app_ids=("y", "x"))])
    used = replace(b, last_used_at="2026-09-09T00:00:00Z")
    assert remote_digest([a, b]) == remote_digest([a, used])
    assert remote_digest([a, b]) != remote_digest([a, replace(b, username="other")])
    assert remote_digest([a, b]) != remote_digest([a])


def test_config_digest_of_a_missing_file_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError, match=r"registries\.yaml: cannot read the registries file"):
        config_digest(tmp_path / "registries.yaml")


def test_load_plan_of_a_missing_file(tmp_path):
    path = tmp_path / "plan.json"
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(err.value) == f"{path}: cannot read the plan file: No such file or directory"


def test_load_plan_of_invalid_json(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("{nope")
    with pytest.raises(PlanError, match=r"plan\.json:1:2: not a regsync plan file \(invalid JSON"):
        load_plan(path)


def test_load_plan_of_some_other_json(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format_version": 1, "changes": []}))
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(err.value) == f"{path}: not a regsync plan file (written by regsync plan --out)"


def test_load_plan_of_a_registries_file_says_to_give_it_with_c(tmp_path):
    # `regsync apply registries.yaml`: validate takes files as arguments, apply does not
    path = tmp_path / "registries.yaml"
    path.write_text("version: 1\nregistries: []\n")
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(err.value).endswith(
        "; this is a registries file: write regsync apply -c FILE (a PLANFILE is what "
        "regsync plan --out saves)")


def test_load_plan_of_a_json_plan_points_at_expect_plan(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format_version": 1, "changes": [], "digest": "sha256:00"}))
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(err.value) == (
        f"{path}: not a regsync plan file (written by regsync plan --out); this is the output "
        "of regsync plan --format json: pass it as regsync apply --expect-plan FILE")


def test_load_plan_of_a_newer_format_asks_to_upgrade(world, tmp_path):
    path = tmp_path / "plan.json"
    world.save(path)
    doc = json.loads(path.read_text())
    doc["format_version"] = 9
    path.write_text(json.dumps(doc))
    newer = r"format_version 9, newer than this regsync understands \(1\); upgrade regsync"
    with pytest.raises(PlanError, match=newer):
        load_plan(path)


def test_load_plan_of_a_damaged_file(world, tmp_path):
    path = tmp_path / "plan.json"
    world.save(path)
    doc = json.loads(path.read_text())
    doc["fingerprints"] = ["not", "a", "map"]
    path.write_text(json.dumps(doc))
    with pytest.raises(PlanError, match="the plan file is damaged"):
        load_plan(path)
