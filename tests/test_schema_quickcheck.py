"""validate's fast path agrees with jsonschema: an entry the quick check passes has no
schema error, and an entry without errors passes it (unless the check says it is unsure
and hands the entry to jsonschema). Random entries, seeded, derived from the example."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import yaml

from reconciler import quickcheck, schema
from reconciler.providers import PROVIDERS

EXAMPLE = Path(__file__).resolve().parents[1] / "registries.yaml.example"
VALUES = [
    None, True, False, 0, 1, -1, 1.0, 2.5, "", " ", "x", "${VAR}", "${1BAD}", "ENC[AES256_GCM,data:x]",
    "token", "password", "serviceaccount", "accesskey", "index.docker.io", "ghcr.io",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east1-docker.pkg.dev", "gcr.io",
    "eu.gcr.io", "https://quay.io", "quay.io/path", "127.0.0.1:5000", "acme/api:v1",
    [], ["a"], ["a", "a"], ["a", 1], [None], {}, {"k": "v"},
]
KEYS = ["provider", "slug", "endpoint", "auth_type", "username", "password", "token",
        "access_key_id", "secret_access_key", "service_account_key", "app_ids", "tests",
        "skip_validation", "usernme", "extra"]


def mutate(entry: dict, rng: random.Random) -> dict:
    entry = copy.deepcopy(entry)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.3 and entry:
            entry.pop(rng.choice(sorted(entry)))
        elif roll < 0.8:
            entry[rng.choice(KEYS)] = copy.deepcopy(rng.choice(VALUES))
        else:
            entry[rng.choice(KEYS)] = rng.choice(VALUES[:20])
    entry.setdefault("provider", rng.choice(sorted(PROVIDERS)))
    if not isinstance(entry["provider"], str) or entry["provider"] not in PROVIDERS:
        entry["provider"] = rng.choice(sorted(PROVIDERS))
    return entry


def test_the_quick_check_is_sound_and_complete_against_jsonschema():
    seeds = yaml.safe_load(EXAMPLE.read_text())["registries"]
    rng = random.Random(20261127)
    passed = failed = unsure = 0
    for _ in range(4000):
        entry = mutate(rng.choice(seeds), rng)
        provider = entry["provider"]
        errors = list(schema._provider_validator(provider).iter_errors(entry))
        try:
            verdict = quickcheck.compile_check(schema._provider_schema(provider))(entry)
        except quickcheck.Unsure:
            unsure += 1
            assert not schema._provider_quick_check(provider)(entry)  # jsonschema decides
            continue
        assert verdict == (not errors), (entry, [e.message for e in errors])
        passed += verdict
        failed += not verdict
    # the sample exercises both answers, not just one
    assert passed > 100 and failed > 1000, (passed, failed, unsure)
