"""Benchmark: plan and apply against the sandbox with 50 ms of latency per API call.

Prints:
1. for a plan of 200 registries (already in the sandbox): the number of API calls
   `regsync plan` makes (target: 1) and its wall time, also as a multiple of one call;
2. the wall time of `apply_plan` creating 120 registries at parallelism 4, divided by
   that of a plain sequential loop making the same 120 create calls against a freshly
   reset sandbox, in the same run (target: at most 0.35; ideal 30/120 = 0.25).

Usage: .venv/bin/python benchmarks/bench_apply.py [--latency-ms 50] [--plan-n 200] [--apply-n 120]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.api import VendorAPI  # noqa: E402
from reconciler.model import (  # noqa: E402
    Config,
    DesiredRegistry,
    RegistryWrite,
    SecretRef,
    Settings,
)
from reconciler.sandbox.server import SandboxServer  # noqa: E402
from reconciler.secret import Secret  # noqa: E402


def desired(i: int, password: str) -> DesiredRegistry:
    return DesiredRegistry(
        index=i,
        provider="other",
        slug=f"bench-{i:03d}",
        endpoint=f"registry-{i:03d}.example.com",
        auth_type="password",
        username=f"user{i}",
        secret_ref=SecretRef(field="password", env_var=f"BENCH_PW_{i:03d}"),
        skip_validation=True,
        secret=Secret(password),
    )


def registries_yaml(n: int) -> str:
    lines = ["version: 1", "registries:"]
    for i in range(n):
        lines += [
            "  - provider: other",
            f"    slug: bench-{i:03d}",
            f"    endpoint: registry-{i:03d}.example.com",
            f"    username: user{i}",
            f"    password: ${{BENCH_PW_{i:03d}}}",
            "    skip_validation: true",
        ]
    return "\n".join(lines) + "\n"


def cli_has_plan() -> bool:
    try:
        text = (ROOT / "reconciler" / "cli.py").read_text()
    except OSError:
        return False
    return "def plan(" in text


def bench_plan(sandbox: SandboxServer, token: str, n: int, latency_ms: int, tmp: Path) -> None:
    password = "bench-" + secrets.token_hex(8)
    with VendorAPI(token=token, origin=sandbox.origin) as api:  # no latency while seeding
        for i in range(n):
            r = desired(i, password)
            api.create_registry(
                RegistryWrite(provider=r.provider, endpoint=r.endpoint, slug=r.slug,
                              auth_type=r.auth_type, username=r.username,
                              password=r.secret, skip_validation=True)
            )
    sandbox.faults.latency_ms = latency_ms
    before = sandbox.stats.requests
    if cli_has_plan():
        how = "`python -m reconciler plan` (the real CLI, a subprocess)"
        cfg = tmp / "registries.yaml"
        cfg.write_text(registries_yaml(n))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_PW_")}
        env.update({f"BENCH_PW_{i:03d}": password for i in range(n)})
        env.update(REPLICATED_API_TOKEN=token, REPLICATED_API_ORIGIN=sandbox.origin,
                   NO_COLOR="1")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", "plan", "-c", str(cfg),
             "--state", str(tmp / "plan.state.json")],
            env=env, cwd=tmp, capture_output=True, text=True, timeout=120,
        )
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 2):
            print(f"plan failed (exit {proc.returncode}):\n{proc.stderr.strip()}", file=sys.stderr)
            raise SystemExit(1)
    else:
        how = "diff() + list_registries() in-process (reconciler/cli.py has no `plan` yet)"
        from reconciler.diff import diff
        from reconciler.state import Fingerprinter, State

        config = Config(path="bench.yaml", settings=Settings(),
                        registries=tuple(desired(i, password) for i in range(n)))
        start = time.perf_counter()
        with VendorAPI(token=token, origin=sandbox.origin) as api:
            diff(config, api.list_registries(), State(), Fingerprinter(b"k" * 32), prune=False)
        wall = time.perf_counter() - start
    calls = sandbox.stats.requests - before
    print(f"[1] plan of {n} registries via {how}")
    print(f"    API calls: {calls} (target: 1)")
    print(f"    wall time: {wall:.2f} s = {wall / (latency_ms / 1000):.1f} x one "
          f"{latency_ms} ms call (includes interpreter start-up)")


def bench_apply(sandbox: SandboxServer, token: str, n: int, latency_ms: int,
                parallelism: int, tmp: Path) -> float:
    from reconciler.apply import apply_plan
    from reconciler.diff import diff
    from reconciler.state import Fingerprinter, State

    password = "bench-" + secrets.token_hex(8)
    regs = [desired(i, password) for i in range(n)]
    config = Config(path="bench.yaml", settings=Settings(), registries=tuple(regs))

    # a plain sequential client: the same n create calls, one after another
    sandbox.reset()
    sandbox.faults.latency_ms = latency_ms
    with VendorAPI(token=token, origin=sandbox.origin) as api:
        bodies = [
            RegistryWrite(provider=r.provider, endpoint=r.endpoint, slug=r.slug,
                          auth_type=r.auth_type, username=r.username,
                          password=r.secret, skip_validation=True)
            for r in regs
        ]
        start = time.perf_counter()
        for body in bodies:
            api.create_registry(body)
        sequential = time.perf_counter() - start
        if len(api.list_registries()) != n:
            raise SystemExit("the sequential loop did not create every registry")

    # apply_plan on a freshly reset sandbox
    sandbox.reset()
    sandbox.faults.latency_ms = latency_ms
    fingerprinter = Fingerprinter(b"k" * 32)
    with VendorAPI(token=token, origin=sandbox.origin) as api:
        plan = diff(config, api.list_registries(), State(), fingerprinter, prune=False)
        state = State()
        start = time.perf_counter()
        outcomes = apply_plan(plan, api, state=state, state_path=tmp / "apply.state.json",
                              fingerprinter=fingerprinter, parallelism=parallelism)
        parallel = time.perf_counter() - start
    failed = [o for o in outcomes if o.status != "succeeded"]
    if failed or len(outcomes) != n:
        print(f"apply failed: {len(failed)} of {len(outcomes)} changes: {failed[0].error}",
              file=sys.stderr)
        raise SystemExit(1)
    ratio = parallel / sequential
    ideal = -(-n // parallelism) / n
    print(f"[2] apply_plan creating {n} registries at parallelism {parallelism} "
          f"vs a sequential loop of the same {n} create calls")
    print(f"    ratio apply/sequential: {ratio:.3f} (target <= 0.35; ideal {ideal:.2f})")
    print(f"    sequential: {sequential / n * 1000:.0f} ms per call; apply: "
          f"{parallel / -(-n // parallelism) * 1000:.0f} ms per round of {parallelism} "
          f"(state saved after each of the {n} creates)")
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--plan-n", type=int, default=200)
    ap.add_argument("--apply-n", type=int, default=120)
    ap.add_argument("--parallelism", type=int, default=4)
    args = ap.parse_args()
    token = "bench-" + secrets.token_hex(16)
    sandbox = SandboxServer(token=token, key=os.urandom(32)).start()
    try:
        with tempfile.TemporaryDirectory(prefix="regsync-bench-") as tmp:
            print(f"sandbox latency: {args.latency_ms} ms per API call")
            bench_plan(sandbox, token, args.plan_n, args.latency_ms, Path(tmp))
            ratio = bench_apply(sandbox, token, args.apply_n, args.latency_ms,
                                args.parallelism, Path(tmp))
    finally:
        sandbox.stop()
    return 0 if ratio <= 0.35 else 1


if __name__ == "__main__":
    raise SystemExit(main())
