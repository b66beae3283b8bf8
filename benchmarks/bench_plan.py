"""Benchmark: `regsync plan` of a team that already has every registry of the file,
against `regsync validate` of the same file.

The sandbox runs as its own process (as in bench_apply.py), seeded with N registries;
a state file records regsync's fingerprints of them, so the plan finds no change: what
is measured is the plan's own cost (the list call, the state, the secrets, the diff),
not the rendering of N changes. Runs, alternating, R rounds of

  A: regsync plan -c FILE --state STATE   (the console script of this venv)
  B: regsync validate FILE

(after an untimed run of each that writes any missing bytecode) and prints the
median wall time of each and A/B (target: at most 1.6), and the time
of `diff()` alone over the N registries, in this process.

Usage: .venv/bin/python benchmarks/bench_plan.py [--registries 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_apply import Sandbox, cli_env, create_body, desired, registries_yaml  # noqa: E402

from reconciler.api import VendorAPI  # noqa: E402
from reconciler.diff import diff  # noqa: E402
from reconciler.state import Fingerprinter, RegistryState, State, save_state, state_key  # noqa: E402
from reconciler.workflow import load_desired  # noqa: E402


def regsync_command() -> list[str]:
    script = Path(sys.executable).parent / "regsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reconciler"]


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[-4:])} failed ({proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.registries
    token = "bench-" + secrets.token_hex(8)
    password = "bench-" + secrets.token_hex(8)
    sandbox = Sandbox(token)
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            with VendorAPI(token=token, origin=sandbox.origin) as api, \
                    ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda i: api.create_registry(create_body(desired(i, password))),
                              range(n)))
                remote = api.list_registries()
            if len(remote) != n:
                sys.exit(f"seeded {len(remote)} registries, not {n}")
            cfg = tmp / "registries.yaml"
            cfg.write_text(registries_yaml(n))
            state_path = tmp / "regsync.state.json"
            env = cli_env(token, sandbox.origin, n, password)

            # the state an apply would have left: regsync set every credential
            config = load_desired(cfg, env=env)
            fingerprinter = Fingerprinter(state_key(env, token))
            listed = {r.slug: r for r in remote}
            state = State(key_id=fingerprinter.key_id, registries={
                d.slug: RegistryState(provider=d.provider, endpoint=d.endpoint,
                                      fingerprint=fingerprinter.fingerprint(d),
                                      updated_at=listed[d.slug].updated_at,
                                      team_id=listed[d.slug].team_id)
                for d in config.registries})
            save_state(state_path, state)

            start = time.perf_counter()
            plan = diff(config, remote, state, fingerprinter, prune=False)
            diff_time = time.perf_counter() - start
            if plan.has_changes:
                sys.exit("the seeded team does not match the file: the plan has changes")

            cmd = regsync_command()
            plan_argv = [*cmd, "plan", "-c", str(cfg), "--state", str(state_path)]
            validate_argv = [*cmd, "validate", str(cfg)]
            # untimed: warm the file cache and write any missing bytecode (as `pip install`
            # does), even where PYTHONDONTWRITEBYTECODE is set
            warm = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
            timed(plan_argv, warm, tmp)
            timed(validate_argv, warm, tmp)
            plans, validates = [], []
            for _ in range(args.rounds):
                plans.append(timed(plan_argv, env, tmp))
                validates.append(timed(validate_argv, env, tmp))
    finally:
        sandbox.stop()
    a, b = statistics.median(plans), statistics.median(validates)
    print(f"plan of {n} existing registries vs validate of the same file, {args.rounds} rounds")
    print(f"  A regsync plan:     median {a:.3f} s")
    print(f"  B regsync validate: median {b:.3f} s")
    print(f"  A/B = {a / b:.2f} (target: at most 1.6)")
    print(f"  diff() alone over {n} registries: {diff_time * 1000:.0f} ms")


if __name__ == "__main__":
    main()
