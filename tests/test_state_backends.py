"""Each state backend for real: a local file, S3 on a real SeaweedFS on 127.0.0.1, and git
with a real bare repository and two clones standing for two runners.

The same behaviour is asked of each: a missing state reads as none; a write is a
compare-and-swap on what was read; the lock is exclusive across processes and machines
and names its holder; what is stored never holds a secret.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from reconciler.errors import StateError
from reconciler.model import DesiredRegistry, SecretRef
from reconciler.secretvalue import Secret
from reconciler.state import Fingerprinter, RegistryState, State
from reconciler.state.location import Location, parse_location
from reconciler.state.lock import LockInfo
from reconciler.state.store import StateStore
from tests.fixtures.gitrepos import git

CANARY = f"CANARY-{uuid.uuid4().hex}"


def _registry(slug: str) -> DesiredRegistry:
    return DesiredRegistry(index=0, provider="quay", slug=slug, endpoint="quay.io",
                           auth_type="password", username="bot",
                           secret_ref=SecretRef("password", env_var="PW"), secret=Secret(CANARY))


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=["file", "s3", "git"])
def backend(request, tmp_path, monkeypatch):
    return _backend(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=["s3", "git"])
def shared(request, tmp_path, monkeypatch):
    return _backend(request.param, request, tmp_path, monkeypatch)


def _backend(kind, request, tmp_path, monkeypatch):
    """(make_store, stored_text): a way to open the same state as a new runner would, and
    everything the backend stores, as text."""
    if kind == "file":
        location = Location("file", str(tmp_path / "regsync.state.json"))

        def make():
            return StateStore(location)

        def stored() -> str:
            return "".join(p.read_text(errors="replace") for p in tmp_path.iterdir() if p.is_file())

        return make, stored
    if kind == "s3":
        bucket = request.getfixturevalue("s3")
        location = parse_location(bucket.url())

        def make():
            return StateStore(location)

        def stored() -> str:
            return "".join(v.decode(errors="replace") for v in bucket.objects().values())

        return make, stored
    origin = request.getfixturevalue("origin")
    runners = [origin.clone("runner-a"), origin.clone("runner-b")]
    for name, value in origin.env.items():
        monkeypatch.setenv(name, value)
    turn = iter(range(10**6))

    def make():
        return StateStore(Location("git", "regsync-state"), repo_dir=runners[next(turn) % 2])

    return make, origin.all_objects_text


def _state_with(n: int) -> State:
    fp = Fingerprinter(b"k" * 32)
    state = State(key_id=fp.key_id)
    for i in range(n):
        reg = _registry(f"reg-{i}")
        state.registries[reg.slug] = RegistryState("quay", "quay.io", fp.fingerprint(reg), None)
    return state


def test_no_state_yet_reads_as_empty_and_a_save_round_trips(backend):
    make, stored = backend
    first = make()
    assert first.load() == State() and not first.exists
    state = _state_with(3)
    first.save(state)
    again = make()  # another runner
    loaded = again.load()
    assert again.exists and loaded.serial == 1 and loaded.lineage == state.lineage
    assert loaded.registries == state.registries
    again.save(loaded)
    assert make().load().serial == 2
    assert CANARY not in stored()
    assert "hmac-sha256:" in stored()


def test_a_write_never_replaces_a_state_it_did_not_read(shared):
    make, _ = shared
    make().save(_state_with(1))
    a, b = make(), make()
    state_a, state_b = a.load(), b.load()
    state_a.registries.pop("reg-0")
    a.save(state_a)
    with pytest.raises(StateError) as err:
        b.save(state_b)
    assert "the state changed underneath" in str(err.value)
    assert str(b.location) in str(err.value)
    assert make().load().registries == {}


def test_the_lock_is_exclusive_and_names_its_holder(backend):
    make, _ = backend
    holder = make()
    with holder.locked("apply"):
        other = make()
        with pytest.raises(StateError) as err:
            with other.locked("apply", timeout=0.3):
                pass
        message = str(err.value)
        assert message.startswith(f"{other.location} is locked: lock ")
        assert "for `regsync apply` (regsync " in message and "waited 0.3s" in message
        info = other.backend.current_lock()
        assert info is not None and info.id in message and info.who in message and info.when in message
        if other.location.shared:
            assert f"regsync state unlock {info.id} --state {other.location}" in message
    assert make().backend.current_lock() is None
    with make().locked("apply"):
        pass


def test_a_lock_released_while_a_run_looks_at_it_is_taken_not_reported(s3):
    """The holder lets go between the refused create and the read of who holds it: the
    lock is free, so it is taken (not "locked: lock ? held by ?")."""
    location = parse_location(s3.url())
    holder, run = StateStore(location), StateStore(location)
    holder.backend.try_lock(LockInfo.new("apply"))

    def let_go(params, **_):  # boto3's own event hook: the holder ends just then
        if params.get("Key") == run.backend.lock_key:
            holder.backend.release()

    run.backend.client.meta.events.register("before-parameter-build.s3.GetObject", let_go)
    with run.locked("apply", timeout=0):
        assert run.backend.current_lock().operation == "apply"
    assert StateStore(location).backend.current_lock() is None


def test_unlock_removes_only_the_lock_it_names(shared):
    make, _ = shared
    crashed = make()  # takes the lock and never releases it, as a killed run
    crashed.backend.try_lock(LockInfo.new("apply"))
    info = make().backend.current_lock()
    with pytest.raises(StateError, match="is locked with another ID"):
        make().backend.force_unlock("not-" + info.id)
    assert make().backend.current_lock() == info
    make().backend.force_unlock(info.id)
    assert make().backend.current_lock() is None
    with pytest.raises(StateError, match="is not locked"):
        make().backend.force_unlock(info.id)


def test_a_run_whose_lock_was_removed_meanwhile_says_so(shared):
    make, _ = shared
    running = make()
    removed = r"the lock was removed \(by `regsync state unlock`\?\) or replaced while this run held it"
    with pytest.raises(StateError, match=removed):
        with running.locked("apply"):
            make().backend.force_unlock(make().backend.current_lock().id)
    assert make().backend.current_lock() is None


def test_a_lost_lock_does_not_hide_why_the_run_failed(shared):
    """The lock removed meanwhile and another run writing the state: the run's own error
    (its write refused) is what it reports, not the release that fails after it."""
    make, _ = shared
    make().save(_state_with(2))
    running = make()
    with pytest.raises(StateError, match="the state changed underneath"):
        with running.locked("apply"):
            state = running.load()
            make().backend.force_unlock(make().backend.current_lock().id)
            other = make()
            with other.locked("state rm"):
                theirs = other.load()
                theirs.registries.pop("reg-0")
                other.save(theirs)
            running.save(state)
    assert sorted(make().load().registries) == ["reg-1"]


def test_without_boto3_an_s3_state_says_how_to_install_it(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['boto3'] = None  # as if not installed\n"
        "from reconciler.state.location import parse_location\n"
        "from reconciler.state.store import StateStore\n"
        "from reconciler.errors import StateError\n"
        "try:\n"
        "    StateStore(parse_location('s3://bucket/k.json'))\n"
        "except StateError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT}, cwd=tmp_path)
    assert proc.stdout.strip() == (
        "s3://bucket/k.json: an s3:// state needs boto3, which is not installed: "
        "pip install 'regsync[s3]'"
    )


def test_a_state_that_is_not_json_or_newer_is_one_clear_error(backend):
    make, _ = backend
    store = make()
    store.save(State())
    store.backend.write("{not json", store.version)
    with pytest.raises(StateError, match=r"the state file is not valid JSON"):
        make().load()
    store = make()
    store.version = make().backend.read()[1]
    store.backend.write(json.dumps({"format_version": 99}), store.version)
    with pytest.raises(StateError, match=r"format_version 99, newer than this regsync understands"):
        make().load()


# --- S3 failures -------------------------------------------------------------


def test_s3_missing_bucket_wrong_secret_and_unreachable_endpoint(s3, monkeypatch):
    missing = StateStore(parse_location("s3://no-such-bucket-here/x.json"))
    with pytest.raises(StateError) as err:
        missing.load()
    assert str(err.value) == (
        "s3://no-such-bucket-here/x.json: bucket 'no-such-bucket-here' does not exist: "
        "create it, or fix the state location"
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    with pytest.raises(StateError) as err:
        StateStore(parse_location(s3.url())).load()
    assert "access denied (SignatureDoesNotMatch)" in str(err.value)
    assert CANARY not in str(err.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StateError) as err:
        StateStore(parse_location(s3.url())).load()
    assert "cannot reach the S3 endpoint" in str(err.value)
    assert "\n" not in str(err.value)


def test_s3_objects_are_the_state_and_its_lock(s3):
    store = StateStore(parse_location(s3.url("a/b.json")))
    with store.locked("apply"):
        assert set(s3.objects()) == {"a/b.json.lock"}
        store.save(_state_with(1))
        lock = json.loads(s3.objects()["a/b.json.lock"])
        assert set(lock) == {"id", "who", "when", "operation", "version"}
    assert set(s3.objects()) == {"a/b.json"}


# --- git failures and hygiene -----------------------------------------------------


def test_git_state_needs_a_repository_with_origin(tmp_path, origin, monkeypatch):
    for name, value in origin.env.items():
        monkeypatch.setenv(name, value)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(StateError, match=r"^git:s: .* is not in a git repository.*; run regsync "
                       r"in a clone of the repository, or choose another state location$"):
        StateStore(Location("git", "s"), repo_dir=plain)
    git(plain, "init", "--quiet", env=origin.env)
    with pytest.raises(StateError, match=r"has no 'origin' remote to keep the state on: add one "
                       r"\(git remote add origin URL\), or choose another state location$"):
        StateStore(Location("git", "s"), repo_dir=plain)
    git(plain, "remote", "add", "origin", str(tmp_path / "gone.git"), env=origin.env)
    with pytest.raises(StateError) as err:
        StateStore(Location("git", "s"), repo_dir=plain).load()
    assert str(err.value).startswith("git:s: cannot fetch refs/heads/s from origin: ")
    assert "check that origin is reachable" in str(err.value) and "\n" not in str(err.value)


def test_git_errors_never_show_credentials_of_the_remote_url(tmp_path, origin, monkeypatch):
    for name, value in origin.env.items():
        monkeypatch.setenv(name, value)
    runner = origin.clone("runner")
    git(runner, "remote", "set-url", "origin", f"http://ci:{CANARY}@127.0.0.1:9/team/repo.git", env=origin.env)
    with pytest.raises(StateError) as err:
        StateStore(Location("git", "s"), repo_dir=runner).load()
    assert CANARY not in str(err.value)
    assert str(err.value).startswith("git:s: cannot fetch refs/heads/s from origin: fatal: unable to access")


def test_a_push_origin_refuses_says_why_in_origin_s_words(origin, monkeypatch):
    """A protected branch (or any hook) refusing the push: the message shows origin's
    reason, not git's closing "failed to push some refs", and what to do."""
    for name, value in origin.env.items():
        monkeypatch.setenv(name, value)
    hook = origin.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\n"
                    "echo 'error: GH013: Repository rule violations found for refs/regsync-locks/s.' >&2\n"
                    "echo 'error: Changes must be made through a pull request.' >&2\nexit 1\n")
    hook.chmod(0o755)
    store = StateStore(Location("git", "s"), repo_dir=origin.clone("runner"))
    with pytest.raises(StateError) as err:
        with store.locked("apply"):
            pass
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("git:s: cannot push refs/regsync-locks/s to origin: remote: error: GH013: "
                              "Repository rule violations found for refs/regsync-locks/s.; ")
    assert message.endswith("origin refused the push (a protected branch, a rule or a hook): let git's "
                            "credentials push refs/heads/s and refs/regsync-locks/s")


def test_git_without_git_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StateError, match=r"^git:s: git is not installed"):
        StateStore(Location("git", "s"), repo_dir=tmp_path)


def test_git_state_never_touches_the_work_tree_index_or_branches(origin, monkeypatch):
    for name, value in origin.env.items():
        monkeypatch.setenv(name, value)
    runner = origin.clone("runner")
    (runner / "registries.yaml").write_text("version: 1\n")
    git(runner, "add", "registries.yaml", env=origin.env)
    def look():
        return (git(runner, "status", "--porcelain", env=origin.env), git(runner, "branch", env=origin.env),
                (runner / ".git" / "HEAD").read_text(), sorted(p.name for p in runner.iterdir()))

    before = look()
    store = StateStore(Location("git", "regsync-state"), repo_dir=runner)
    with store.locked("apply"):
        assert "refs/regsync-locks/regsync-state" in origin.refs()
        store.save(_state_with(2))
    assert look() == before
    assert set(origin.refs()) == {"refs/heads/regsync-state"}
    log = git(origin.bare, "log", "--format=%an <%ae>|%s", "regsync-state", env=origin.env)
    assert log.strip() == "regsync <regsync@localhost>|regsync: state"
    assert CANARY not in origin.all_objects_text()


def test_two_runners_race_for_the_git_lock_and_exactly_one_wins(origin, monkeypatch):
    for name, value in origin.env.items():
        monkeypatch.setenv(name, value)
    runners = [origin.clone(f"r{i}") for i in range(4)]
    code = (
        "import sys\n"
        "from reconciler.state.location import Location\n"
        "from reconciler.state.lock import LockInfo\n"
        "from reconciler.state.store import StateStore\n"
        "s = StateStore(Location('git', 'st'), repo_dir=sys.argv[1])\n"
        "print('won' if s.backend.try_lock(LockInfo.new('apply')) is None else 'lost')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(r)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": ROOT}) for r in runners]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["lost", "lost", "lost", "won"]
