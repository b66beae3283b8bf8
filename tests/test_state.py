"""The state file: atomic, versioned, keyed fingerprints, never a secret; and its lock."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from reconciler.errors import StateError
from reconciler.model import DesiredRegistry, SecretRef
from reconciler.secretvalue import Secret
from reconciler.state import (
    Fingerprinter,
    RegistryState,
    State,
    StateLock,
    load_state,
    save_state,
    state_key,
)

CANARY = f"CANARY-{uuid.uuid4()}"


def registry(slug="acme-hub", secret=CANARY, username="acme", auth_type="password"):
    return DesiredRegistry(
        index=0,
        provider="dockerhub",
        slug=slug,
        endpoint="index.docker.io",
        auth_type=auth_type,
        username=username,
        secret_ref=SecretRef("password", env_var="HUB_PASSWORD"),
        secret=Secret(secret),
    )


def test_a_missing_state_file_is_an_empty_state(tmp_path):
    state = load_state(tmp_path / "regsync.state.json")
    assert state == State()


def test_save_and_load_round_trip_with_serial_and_lineage(tmp_path):
    path = tmp_path / "regsync.state.json"
    fp = Fingerprinter(b"key")
    state = State(key_id=fp.key_id)
    state.registries["acme-hub"] = RegistryState(
        "dockerhub", "index.docker.io", fp.fingerprint(registry()), "2026-01-02T03:04:05Z"
    )
    save_state(path, state)
    first = load_state(path)
    assert first.serial == 1
    assert len(first.lineage) == 32
    assert first.registries == state.registries
    assert first.key_id == fp.key_id

    save_state(path, first)
    second = load_state(path)
    assert second.serial == 2
    assert second.lineage == first.lineage

    data = json.loads(path.read_text())
    assert data["format_version"] == 1
    assert data["serial"] == 2


def test_state_file_is_private_and_no_temp_file_is_left(tmp_path):
    path = tmp_path / "regsync.state.json"
    save_state(path, State())
    save_state(path, load_state(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regsync.state.json"]


def test_state_file_never_contains_the_secret(tmp_path):
    path = tmp_path / "regsync.state.json"
    fp = Fingerprinter(state_key({}, "api-token"))
    state = State(key_id=fp.key_id)
    state.registries["acme-hub"] = RegistryState(
        "dockerhub", "index.docker.io", fp.fingerprint(registry()), None
    )
    save_state(path, state)
    text = path.read_text()
    assert CANARY not in text
    assert "hmac-sha256:" in text


def test_a_newer_state_format_asks_to_upgrade(tmp_path):
    path = tmp_path / "regsync.state.json"
    path.write_text(json.dumps({"format_version": 2, "serial": 5, "registries": {}}))
    with pytest.raises(StateError) as err:
        load_state(path)
    assert str(err.value) == (
        f"{path}: the state file has format_version 2, newer than this regsync "
        "understands (1); upgrade regsync"
    )


def test_corrupt_state_file_names_the_file_and_place(tmp_path):
    path = tmp_path / "regsync.state.json"
    path.write_text('{"format_version": 1,\n  "serial": \n')
    with pytest.raises(StateError) as err:
        load_state(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3:1: the state file is not valid JSON")
    assert "delete it to start over" in message


def test_state_entry_of_the_wrong_type_is_refused(tmp_path):
    path = tmp_path / "regsync.state.json"
    path.write_text(json.dumps({"format_version": 1, "registries": {"a": {"fingerprint": 3}}}))
    with pytest.raises(StateError, match=r"registries\.a\.fingerprint is not a string"):
        load_state(path)


def test_a_hostile_slug_in_the_state_is_clipped_and_escaped_in_the_error(tmp_path):
    # whoever may push the state branch or write the bucket writes what is read here
    path = tmp_path / "regsync.state.json"
    slug = "\x1b]0;owned\x07" + "x" * 100_000
    for entry in (5, {"fingerprint": 3}):
        path.write_text(json.dumps({"format_version": 1, "registries": {slug: entry}}))
        with pytest.raises(StateError) as err:
            load_state(path)
        message = str(err.value)
        assert message.startswith(f"{path}: not a regsync state file (registries.\\x1b]0;owned\\x07xxx")
        assert message.isprintable() and len(message) < len(str(path)) + 400


def test_state_without_format_version_is_refused(tmp_path):
    path = tmp_path / "regsync.state.json"
    path.write_text("[]")
    with pytest.raises(StateError, match="not a regsync state file"):
        load_state(path)


def test_saving_into_a_missing_directory_is_a_state_error(tmp_path):
    path = tmp_path / "nowhere" / "regsync.state.json"
    state = State()
    with pytest.raises(StateError, match=r"cannot write the state file"):
        save_state(path, state)
    assert state.serial == 0


# --- fingerprints -----------------------------------------------------------


def test_different_keys_give_different_fingerprints():
    reg = registry()
    a, b = Fingerprinter(b"key-a"), Fingerprinter(b"key-b")
    assert a.fingerprint(reg) != b.fingerprint(reg)
    assert a.key_id != b.key_id
    assert a.fingerprint(reg) == Fingerprinter(b"key-a").fingerprint(reg)


def test_fingerprint_changes_with_the_secret_and_the_username():
    fp = Fingerprinter(b"key")
    base = fp.fingerprint(registry())
    assert fp.fingerprint(registry(secret=CANARY + "x")) != base
    assert fp.fingerprint(registry(username="other")) != base


def test_a_fingerprint_is_not_the_plain_sha256_of_the_password():
    reg = registry()
    fingerprint = Fingerprinter(state_key({}, "api-token")).fingerprint(reg)
    assert fingerprint.startswith("hmac-sha256:")
    digest = fingerprint.removeprefix("hmac-sha256:")
    assert digest != hashlib.sha256(CANARY.encode()).hexdigest()
    unkeyed = json.dumps([reg.slug, reg.auth_type, reg.username, CANARY], separators=(",", ":"))
    assert digest != hashlib.sha256(unkeyed.encode()).hexdigest()
    assert CANARY not in fingerprint and CANARY not in repr(Fingerprinter(b"k"))


def test_state_key_prefers_regsync_state_key():
    assert state_key({"REGSYNC_STATE_KEY": "my-key"}, "token") == b"my-key"
    assert state_key({"REGSYNC_STATE_KEY": "my-key"}, "other") == b"my-key"


def test_state_key_derived_from_the_api_token_is_not_the_token():
    key = state_key({}, "token-1")
    assert key != b"token-1" and len(key) == 32
    assert state_key({}, "token-2") != key
    assert state_key({"REGSYNC_STATE_KEY": "  "}, "token-1") == key


def test_state_key_without_any_key_is_a_clear_error():
    with pytest.raises(StateError, match="set REGSYNC_STATE_KEY or REPLICATED_API_TOKEN"):
        state_key({}, "")


# --- the lock ---------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    from reconciler.state import StateLock
    with StateLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the state lock until told to let go."""
    path = tmp_path / "regsync.state.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield path, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _let_go(proc):
    proc.stdin.write("\n")
    proc.stdin.flush()


def test_a_second_lock_waits_then_fails_naming_the_holder(holder):
    path, proc = holder
    started = time.monotonic()
    with pytest.raises(StateError) as err:
        StateLock(path, timeout=0.5).acquire()
    assert time.monotonic() - started >= 0.45
    message = str(err.value)
    assert message.startswith(f"{path} is locked: lock ")
    assert f"held by {getpass.getuser()}@{socket.gethostname()} since " in message
    assert "for `regsync apply` (regsync " in message
    assert "waited 0.5s. Try again when it has finished" in message
    _let_go(proc)
    proc.wait(timeout=10)
    with StateLock(path, timeout=2):
        pass


def test_a_second_lock_succeeds_once_the_first_is_released(holder):
    path, proc = holder
    timer = threading.Timer(0.3, _let_go, args=(proc,))
    timer.start()
    try:
        started = time.monotonic()
        with StateLock(path, timeout=10) as lock:
            assert time.monotonic() - started >= 0.25
            with open(lock.lock_path) as f:
                held = json.load(f)
            assert held["operation"] == "apply" and len(held["id"]) == 36
    finally:
        timer.cancel()


def test_the_lock_is_released_on_exit(tmp_path):
    path = tmp_path / "regsync.state.json"
    with StateLock(path, timeout=0.2):
        pass
    with StateLock(path, timeout=0.2):
        pass


def test_a_live_local_lock_is_shown_and_unlock_refuses_it(holder, tmp_path):
    """A local file's lock ends with its process: `state unlock` says so, whatever the ID."""
    path, proc = holder
    lock_id = json.loads((tmp_path / "regsync.state.json.lock").read_text())["id"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}

    def regsync(*args):
        return subprocess.run([sys.executable, "-m", "reconciler", *args, "--state", str(path)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    shown = json.loads(regsync("state", "show", "--format", "json").stdout)
    assert shown["lock"]["id"] == lock_id and shown["lock"]["operation"] == "apply"
    refused = regsync("state", "unlock", lock_id)
    assert refused.returncode == 1
    assert "is held by a running process on this machine" in refused.stderr
    assert "stop it instead" in refused.stderr
    other = regsync("state", "unlock", "another-id")
    assert "is locked with another ID" in other.stderr
    _let_go(proc)
    proc.wait(timeout=10)
    assert json.loads(regsync("state", "show", "--format", "json").stdout)["lock"] is None
