"""Benchmark: what a shared state costs an apply.

Runs the real `regsync apply` (subprocess) creating N and 10 x N registries against
`regsync sandbox` (its own process, no added latency), once with a local state file and
once with a `git:` state on a local bare repository (a `git push` per write), and prints:

1. per backend, the ratio apply of 10 x N / apply of N (target at most 13, linear about 10);
2. the git state's commits (one per push: the state is pushed at the end and at most
   every 5 s, never once per change) and its time over the file's for 10 x N.

Usage: .venv/bin/python benchmarks/bench_state.py [--n 300] [--factor 10]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_apply import Sandbox, cli_env, json_registries, registries_yaml, run_cli  # noqa: E402


def git(cwd: Path, *args: str, env: dict) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True, timeout=120).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--factor", type=int, default=10)
    args = ap.parse_args()
    sandbox = Sandbox("bench-" + secrets.token_hex(16))
    password = "bench-" + secrets.token_hex(8)
    walls: dict[tuple[str, int], float] = {}
    commits = 0
    try:
        with tempfile.TemporaryDirectory(prefix="regsync-bench-state-") as tmp:
            root = Path(tmp)
            genv = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_CONFIG_GLOBAL": os.devnull}
            for backend in ("file", "git"):
                for count in (args.n, args.n * args.factor):
                    work = root / f"{backend}-{count}"
                    state = str(work / "regsync.state.json")
                    if backend == "git":
                        git(root, "init", "-q", "--bare", f"{backend}-{count}.git", env=genv)
                        git(root, "clone", "-q", f"{backend}-{count}.git", work.name, env=genv)
                        state = "git:regsync-state"
                    else:
                        work.mkdir()
                    (work / "registries.yaml").write_text(registries_yaml(count))
                    env = {**cli_env(sandbox.token, sandbox.origin, count, password), **genv,
                           "REGSYNC_STATE_KEY": "bench-key-" + secrets.token_hex(16)}
                    sandbox.reset(latency_ms=0)
                    walls[(backend, count)] = run_cli(
                        ["apply", "-c", str(work / "registries.yaml"), "--state", state,
                         "--auto-approve", "--skip-tests"], env, work)
                    if len(json_registries(sandbox)) != count:
                        raise SystemExit(f"{backend}: apply of {count} did not create every registry")
                    if backend == "git" and count == args.n * args.factor:
                        commits = len(git(root / f"{backend}-{count}.git", "rev-list", "regsync-state",
                                          env=genv).split())
    finally:
        sandbox.stop()
    big = args.n * args.factor
    ok = True
    for backend in ("file", "git"):
        ratio = walls[(backend, big)] / walls[(backend, args.n)]
        ok = ok and ratio <= 13
        print(f"[1] {backend}: apply of {big} / apply of {args.n}: {ratio:.2f} (target <= 13; linear "
              f"about {args.factor}); {walls[(backend, big)]:.2f} s vs {walls[(backend, args.n)]:.2f} s")
    print(f"[2] git: {commits} pushes of the state for {big} creates (one per 5 s at most, plus the "
          f"last); time git / file: {walls[('git', big)] / walls[('file', big)]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
