"""Benchmark: `regsync validate` on a 200-registry file, against the bare imports it needs.

Runs, alternating, N rounds of
  A: regsync validate FILE           (the console script of this venv)
  B: python -c "import typer, yaml, jsonschema"
and prints the median wall time of each and A/B (target: at most 1.3).

A first, untimed run of each warms the file cache and writes any missing bytecode (as
`pip install` does), even where PYTHONDONTWRITEBYTECODE is set: otherwise every timed
run of an edited checkout would compile the edited modules again.

Usage: .venv/bin/python benchmarks/bench_validate.py [--rounds 25] [--registries 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROVIDER_ENTRIES = [
    "  - provider: ghcr\n    slug: ghcr-{i}\n    username: bot{i}\n    token: ${{GHCR_TOKEN_{i}}}\n"
    "    tests: [acme/api-{i}:v1.0.{i}]\n",
    "  - provider: dockerhub\n    slug: dh-{i}\n    auth_type: token\n    username: acme{i}\n"
    "    token: ${{DH_TOKEN_{i}}}\n    app_ids: [app-{i}, app-x{i}]\n",
    "  - provider: ecr\n    slug: ecr-{i}\n    endpoint: 123456789012.dkr.ecr.us-east-1.amazonaws.com\n"
    "    access_key_id: AKIA{i}\n    secret_access_key: ${{AWS_{i}}}\n",
    "  - provider: gar\n    slug: gar-{i}\n    endpoint: us-east1-docker.pkg.dev\n    auth_type: serviceaccount\n"
    "    service_account_key: ${{GAR_{i}}}\n",
    "  - provider: quay\n    slug: quay-{i}\n    username: q{i}\n    password: ${{QUAY_{i}}}\n",
    "  - provider: nexus\n    endpoint: nexus{i}.example.net:8443\n    username: n{i}\n    password: ${{NEXUS_{i}}}\n",
    "  - provider: other\n    endpoint: registry{i}.example.com\n    username: o{i}\n    password: ${{OTHER_{i}}}\n"
    "    skip_validation: true\n",
]


def build_file(directory: Path, count: int) -> Path:
    body = "version: 1\nsettings:\n  prune: false\n  max_deletes: 1\nregistries:\n"
    body += "".join(PROVIDER_ENTRIES[i % len(PROVIDER_ENTRIES)].format(i=i) for i in range(count))
    path = directory / "registries.yaml"
    path.write_text(body)
    return path


def regsync_command() -> list[str]:
    script = Path(sys.executable).parent / "regsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reconciler"]


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=60)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout.decode()}{proc.stderr.decode()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--registries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = build_file(directory, args.registries)
        validate = [*regsync_command(), "validate", str(path)]
        baseline = [sys.executable, "-c", "import typer, yaml, jsonschema"]
        writes_bytecode = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        timed(validate, directory, writes_bytecode), timed(baseline, directory, writes_bytecode)
        a, b = [], []
        for _ in range(args.rounds):
            a.append(timed(validate, directory))
            b.append(timed(baseline, directory))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"registries in file:                       {args.registries}")
    print(f"rounds:                                   {args.rounds}")
    print(f"median regsync validate:                  {ma * 1000:.1f} ms")
    print(f"median python -c 'import typer, yaml, jsonschema': {mb * 1000:.1f} ms")
    print(f"ratio (target <= 1.3):                    {ma / mb:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
