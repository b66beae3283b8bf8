"""The state's plain logic: the location forms and their order, durations, the key
check, and apply's journal (records on disk before the next step, replayed after a
crash, compacted once), on real files."""

from __future__ import annotations

import json
import os
import time

import pytest

from reconciler.errors import StateError
from reconciler.state import Fingerprinter, RegistryState, State, load_state
from reconciler.state.location import Location, choose_location, parse_location
from reconciler.state.lock import parse_duration
from reconciler.state.store import StateStore, check_key, fingerprint_key
from tests.fixtures.gitrepos import git


@pytest.mark.parametrize("text, kind, path, bucket", [
    ("regsync.state.json", "file", "regsync.state.json", ""),
    ("file:state/x.json", "file", "state/x.json", ""),
    ("/abs/x.json", "file", "/abs/x.json", ""),
    ("s3://my-bucket/team/regsync.state.json", "s3", "team/regsync.state.json", "my-bucket"),
    ("git:regsync-state", "git", "regsync-state", ""),
    ("git:ops/regsync", "git", "ops/regsync", ""),
])
def test_the_pinned_location_forms(text, kind, path, bucket):
    location = parse_location(text)
    assert (location.kind, location.path, location.bucket) == (kind, path, bucket)
    assert location.shared == (kind != "file")
    if not text.startswith("file:"):
        assert str(location) == text


@pytest.mark.parametrize("text, message", [
    ("", "the state location is empty"),
    ("s3://bucket", "'s3://bucket' names no object"),
    ("s3://bucket/dir/", "names no object"),
    ("s3://B_ad/x", "'B_ad' is not an S3 bucket name"),
    ("git:", "git: needs a branch name"),
    ("git:bad..name", "'bad..name' is not a valid git branch name"),
    ("git:x.lock", "is not a valid git branch name"),
    ("git:-x", "is not a valid git branch name"),
    ("gs://bucket/x", "'gs://bucket/x' is not a state location regsync knows"),
    ("file:", "file: needs a path"),
    (" x.json", "spaces or control characters"),
])
def test_what_is_not_a_location_says_why(text, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_location(text)


def test_first_match_wins_option_env_settings_default(tmp_path):
    config = tmp_path / "team" / "registries.yaml"
    config.parent.mkdir()

    def choose(option=None, env=None, settings=None):
        return choose_location(option, env=env or {}, settings_state=settings, config_path=config)

    assert choose() == Location("file", str(config.parent / "regsync.state.json"))
    assert choose(settings="s.json") == Location("file", str(config.parent / "s.json"))
    assert choose(settings="git:st") == Location("git", "st")
    assert choose(env={"REGSYNC_STATE": "s3://b-1/k"}, settings="git:st") == Location("s3", "k", "b-1")
    assert choose("x.json", env={"REGSYNC_STATE": "s3://b-1/k"}, settings="git:st") == Location("file", "x.json")
    with pytest.raises(ValueError, match="^REGSYNC_STATE: "):
        choose(env={"REGSYNC_STATE": "s3://"})


@pytest.mark.parametrize("text, seconds", [("0", 0), ("0s", 0), ("30s", 30), ("2m", 120), ("1h", 3600),
                                           ("500ms", 0.5), ("1.5s", 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1s", "inf", "nan", "5 parsecs"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_a_shared_state_refuses_the_token_derived_key():
    with pytest.raises(StateError, match="a shared state needs REGSYNC_STATE_KEY"):
        fingerprint_key(Location("git", "s"), {}, "token")
    assert fingerprint_key(Location("git", "s"), {"REGSYNC_STATE_KEY": "k"}, "token") == b"k"
    assert fingerprint_key(Location("file", "x"), {}, "token") != b"token"


def test_the_key_check_is_one_error_and_rekey_drops_only_the_fingerprints():
    old, new = Fingerprinter(b"old-key"), Fingerprinter(b"new-key")
    state = State(key_id=old.key_id, registries={
        "a": RegistryState("quay", "quay.io", "hmac-sha256:aa", "2026-01-01T00:00:00Z"),
        "b": RegistryState("quay", "quay.io", None, None),
    })
    assert check_key(Location("file", "x"), state, old) is False
    with pytest.raises(StateError) as err:
        check_key(Location("git", "s"), state, new)
    assert str(err.value).startswith(
        f"git:s: this state was written with another REGSYNC_STATE_KEY (key check {old.key_id}, "
        f"yours {new.key_id};")
    assert check_key(Location("git", "s"), state, new, rekey=True) is True
    assert state.key_id == new.key_id
    assert state.registries["a"] == RegistryState("quay", "quay.io", None, "2026-01-01T00:00:00Z")


# --- the journal --------------------------------------------------------------------


def _record(n: int) -> RegistryState:
    return RegistryState("quay", "quay.io", f"hmac-sha256:{n:064x}", f"2026-01-01T00:00:{n:02d}Z")


def test_each_record_is_on_disk_before_add_returns_and_a_crash_loses_none(tmp_path):
    path = tmp_path / "regsync.state.json"
    store = StateStore(Location("file", str(path)))
    state = store.load()
    writer = store.writer(state, key_id="k1")
    for n in range(5):
        writer.add(f"r{n}", _record(n))
    writer.add("r0", None)
    # the run dies here: no close, no compaction; the file was never written
    assert not path.exists()
    recovered = load_state(path)
    assert sorted(recovered.registries) == ["r1", "r2", "r3", "r4"]
    assert recovered.registries["r3"] == _record(3) and recovered.key_id == "k1"

    again = StateStore(Location("file", str(path)))
    state = again.load()
    assert again.recovered
    writer = again.writer(state, key_id="k1")  # compacts what was recovered first
    assert load_state(path).serial == 1 and json.loads(path.read_text())["registries"]["r4"]
    writer.add("r9", _record(9))
    writer.close()
    assert not os.path.exists(f"{path}.journal")
    final = load_state(path)
    assert sorted(final.registries) == ["r1", "r2", "r3", "r4", "r9"] and final.serial == 2


def test_a_journal_from_another_state_is_not_replayed(tmp_path):
    path = tmp_path / "regsync.state.json"
    store = StateStore(Location("file", str(path)))
    state = store.load()
    writer = store.writer(state, key_id="k")
    writer.add("a", _record(1))
    writer.close()  # compacted: the file is at serial 1
    stale = {"journal": 1, "base_lineage": state.lineage, "base_serial": 0, "lineage": state.lineage}
    (tmp_path / "regsync.state.json.journal").write_text(
        json.dumps(stale) + "\n" + json.dumps({"slug": "ghost", "record": None}) + "\n{\"slug\": \"tor")
    assert sorted(load_state(path).registries) == ["a"]


def test_an_apply_without_changes_writes_nothing(tmp_path):
    path = tmp_path / "regsync.state.json"
    store = StateStore(Location("file", str(path)))
    store.writer(store.load(), key_id="k").close()
    assert list(tmp_path.iterdir()) == []


def test_a_write_removes_temporary_files_a_killed_write_left(tmp_path):
    path = tmp_path / "regsync.state.json"
    old = tmp_path / ".regsync.state.json.k1ll3d.tmp"
    recent = tmp_path / ".regsync.state.json.inflight.tmp"
    other = tmp_path / ".other.json.k1ll3d.tmp"
    for p in (old, recent, other):
        p.write_text("{}")
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    StateStore(Location("file", str(path))).save(State())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.json.k1ll3d.tmp", ".regsync.state.json.inflight.tmp", "regsync.state.json"]


def test_a_shared_state_is_pushed_within_the_interval_and_at_close(origin, monkeypatch):
    for name, value in origin.env.items():
        monkeypatch.setenv(name, value)
    runner = origin.clone("runner")
    store = StateStore(Location("git", "st"), repo_dir=runner)
    state = store.load()
    writer = store.writer(state, key_id="k", push_interval=0.05)
    writer.add("a", _record(1))
    deadline = time.monotonic() + 30
    while "refs/heads/st" not in origin.refs():
        assert time.monotonic() < deadline, "never pushed"
        time.sleep(0.02)
    writer.add("b", _record(2))
    writer.close()
    reader = StateStore(Location("git", "st"), repo_dir=origin.clone("other"))
    assert sorted(reader.load().registries) == ["a", "b"]
    pushes = git(origin.bare, "rev-list", "st", env=origin.env).split()
    assert len(pushes) == 2  # one within the interval, one at close: never one per change


@pytest.mark.parametrize("crash", [False, True])
def test_workers_recording_at_once_lose_nothing(tmp_path, crash):
    """apply's workers add records in parallel; every one is in the journal, and the
    compacted file holds them all."""
    import threading

    path = tmp_path / "regsync.state.json"
    store = StateStore(Location("file", str(path)))
    writer = store.writer(store.load(), key_id="k")
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(25):
            writer.add(f"r-{n}-{i}", _record(i))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not crash:
        writer.close()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["regsync.state.json"]
    on_disk = load_state(path)
    assert len(on_disk.registries) == 200
    assert on_disk.serial == (0 if crash else 1)
