"""Benchmark: plan and apply against the sandbox with 50 ms of latency per API call.

The sandbox runs as its own process (`regsync sandbox`), as the real API is another
machine: in-process, its request handling would share the client's interpreter lock.
It is driven through its control endpoints (/_sandbox/faults, /stats, /reset).

Prints:
1. for a plan of 200 registries (already in the sandbox): the number of API calls
   `regsync plan` makes (target: 1) and its wall time, also as a multiple of one call;
2. the wall time of `regsync apply` (the real CLI: interpreter start-up, the list call
   and the plan included) creating 120 registries at parallelism 4, divided by that of
   a plain sequential client making the same 120 create calls against a freshly reset
   sandbox, in the same run (target: at most 0.35; ideal 30/120 = 0.25); and the same
   ratio for the apply engine alone (`apply_plan`, in this process).

3. the state's cost: `regsync apply` creating 3,000 registries divided by creating 300
   (no added latency, so the state's work shows; target at most 13, linear is about 10).
   Each change is one journal line; the state file is written once at the end.

Usage: .venv/bin/python benchmarks/bench_apply.py [--latency-ms 50] [--plan-n 200] [--apply-n 120]
       [--scale-n 300] [--scale-factor 10]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from reconciler.api import VendorAPI  # noqa: E402
from reconciler.model import Config, DesiredRegistry, RegistryWrite, SecretRef, Settings  # noqa: E402
from reconciler.secretvalue import Secret  # noqa: E402


class Sandbox:
    """`regsync sandbox` in a child process, in memory, on a free loopback port."""

    def __init__(self, token: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.token = token
        self.origin = f"http://127.0.0.1:{port}/vendor"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "sandbox", "--port", str(port), "--db", ":memory:",
             "--token", token],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "REGSYNC_SANDBOX_KEY": "A" * 43 + "="},
        )
        self.control = httpx.Client(base_url=f"http://127.0.0.1:{port}/_sandbox",
                                    headers={"Authorization": token}, timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.stats()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise SystemExit("regsync sandbox did not start") from None
                time.sleep(0.05)

    def stats(self) -> int:
        return self.control.get("/stats").raise_for_status().json()["requests"]

    def latency(self, ms: int) -> None:
        self.control.post("/faults", json={"latency_ms": ms}).raise_for_status()

    def reset(self, *, latency_ms: int) -> None:
        self.control.post("/reset").raise_for_status()
        self.latency(latency_ms)

    def stop(self) -> None:
        self.control.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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


def create_body(r: DesiredRegistry) -> RegistryWrite:
    return RegistryWrite(provider=r.provider, endpoint=r.endpoint, slug=r.slug,
                         auth_type=r.auth_type, username=r.username, password=r.secret,
                         skip_validation=True)


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


def cli_env(token: str, origin: str, n: int, password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_PW_")}
    env.update({f"BENCH_PW_{i:03d}": password for i in range(n)})
    env.update(REPLICATED_API_TOKEN=token, REPLICATED_API_ORIGIN=origin, NO_COLOR="1")
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "reconciler", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        print(f"regsync {args[0]} failed (exit {proc.returncode}):\n{proc.stderr.strip()}",
              file=sys.stderr)
        raise SystemExit(1)
    return wall


def bench_plan(sandbox: Sandbox, n: int, latency_ms: int, tmp: Path) -> None:
    password = "bench-" + secrets.token_hex(8)
    sandbox.reset(latency_ms=0)  # no latency while seeding
    with VendorAPI(token=sandbox.token, origin=sandbox.origin) as api:
        for i in range(n):
            api.create_registry(create_body(desired(i, password)))
    sandbox.latency(latency_ms)
    cfg = tmp / "registries.yaml"
    cfg.write_text(registries_yaml(n))
    before = sandbox.stats()
    wall = run_cli(["plan", "-c", str(cfg), "--state", str(tmp / "plan.state.json")],
                   cli_env(sandbox.token, sandbox.origin, n, password), tmp)
    calls = sandbox.stats() - before
    print(f"[1] plan of {n} registries via `python -m reconciler plan` (the real CLI)")
    print(f"    API calls: {calls} (target: 1)")
    print(f"    wall time: {wall:.2f} s = {wall / (latency_ms / 1000):.1f} x one "
          f"{latency_ms} ms call (includes interpreter start-up)")


def bench_apply(sandbox: Sandbox, n: int, latency_ms: int, parallelism: int,
                tmp: Path) -> float:
    from reconciler.apply import apply_plan
    from reconciler.diff import diff
    from reconciler.state import Fingerprinter, State

    password = "bench-" + secrets.token_hex(8)
    regs = [desired(i, password) for i in range(n)]

    # a plain sequential client: the same n create calls, one after another
    sandbox.reset(latency_ms=latency_ms)
    with VendorAPI(token=sandbox.token, origin=sandbox.origin) as api:
        bodies = [create_body(r) for r in regs]
        start = time.perf_counter()
        for body in bodies:
            api.create_registry(body)
        sequential = time.perf_counter() - start
        if len(api.list_registries()) != n:
            raise SystemExit("the sequential loop did not create every registry")

    # the real `regsync apply`, a subprocess, on a freshly reset sandbox
    sandbox.reset(latency_ms=latency_ms)
    cfg = tmp / "apply.yaml"
    cfg.write_text(registries_yaml(n))
    whole = run_cli(["apply", "-c", str(cfg), "--state", str(tmp / "cli.state.json"),
                     "--auto-approve", "--skip-tests", "--parallelism", str(parallelism)],
                    cli_env(sandbox.token, sandbox.origin, n, password), tmp)

    # the apply engine alone, in this process
    sandbox.reset(latency_ms=latency_ms)
    config = Config(path="bench.yaml", settings=Settings(), registries=tuple(regs))
    fingerprinter = Fingerprinter(b"k" * 32)
    with VendorAPI(token=sandbox.token, origin=sandbox.origin) as api:
        plan = diff(config, api.list_registries(), State(), fingerprinter, prune=False)
        start = time.perf_counter()
        outcomes = apply_plan(plan, api, state=State(), state_path=tmp / "engine.state.json",
                              fingerprinter=fingerprinter, parallelism=parallelism)
        engine = time.perf_counter() - start
        created = len(api.list_registries())
    failed = [o for o in outcomes if o.status != "succeeded"]
    if failed or created != n:
        raise SystemExit(f"apply failed: {len(failed)} of {len(outcomes)} changes")

    ratio = whole / sequential
    rounds = -(-n // parallelism)
    print(f"[2] creating {n} registries at parallelism {parallelism} vs a sequential client "
          f"making the same {n} create calls ({sequential / n * 1000:.0f} ms per call)")
    print(f"    regsync apply (whole command) / sequential: {ratio:.3f} "
          f"(target <= 0.35; ideal {rounds / n:.2f}); {whole:.2f} s vs {sequential:.2f} s")
    print(f"    apply engine alone / sequential: {engine / sequential:.3f}; "
          f"{engine / rounds * 1000:.0f} ms per round of {parallelism} "
          f"(each of the {n} creates journalled, the state written once)")
    return ratio


def bench_scaling(sandbox: Sandbox, n: int, factor: int, parallelism: int, tmp: Path) -> float:
    password = "bench-" + secrets.token_hex(8)
    walls = {}
    for count in (n, n * factor):
        sandbox.reset(latency_ms=0)
        cfg = tmp / f"scale-{count}.yaml"
        cfg.write_text(registries_yaml(count))
        state = tmp / f"scale-{count}.state.json"
        walls[count] = run_cli(["apply", "-c", str(cfg), "--state", str(state), "--auto-approve",
                                "--skip-tests", "--parallelism", str(parallelism)],
                               cli_env(sandbox.token, sandbox.origin, count, password), tmp)
        if len(json_registries(sandbox)) != count:
            raise SystemExit(f"apply of {count} did not create every registry")
    big, small = walls[n * factor], walls[n]
    ratio = big / small
    print(f"[3] regsync apply creating {n * factor} registries / creating {n} (no added latency)")
    print(f"    ratio: {ratio:.2f} (target <= 13; linear about {factor}); "
          f"{big:.2f} s vs {small:.2f} s, {big / (n * factor) * 1000:.2f} ms per create")
    engine = {count: engine_wall(sandbox, count, parallelism, password, tmp)
              for count in (n, n * factor)}
    print(f"    apply engine alone (no interpreter start-up, no plan): "
          f"{engine[n * factor] / engine[n]:.2f}; {engine[n * factor]:.2f} s vs {engine[n]:.2f} s")
    return ratio


def engine_wall(sandbox: Sandbox, count: int, parallelism: int, password: str, tmp: Path) -> float:
    """``apply_plan`` alone creating ``count`` registries, recording into a local state."""
    from reconciler.apply import apply_plan
    from reconciler.diff import diff
    from reconciler.state import Fingerprinter, State

    sandbox.reset(latency_ms=0)
    regs = tuple(desired(i, password) for i in range(count))
    config = Config(path="bench.yaml", settings=Settings(), registries=regs)
    fingerprinter = Fingerprinter(b"k" * 32)
    with VendorAPI(token=sandbox.token, origin=sandbox.origin) as api:
        plan = diff(config, [], State(), fingerprinter, prune=False)
        start = time.perf_counter()
        outcomes = apply_plan(plan, api, state=State(), state_path=tmp / f"engine-{count}.state.json",
                              fingerprinter=fingerprinter, parallelism=parallelism)
        wall = time.perf_counter() - start
    if any(o.status != "succeeded" for o in outcomes):
        raise SystemExit(f"engine apply of {count} failed")
    return wall


def json_registries(sandbox: Sandbox) -> list:
    with VendorAPI(token=sandbox.token, origin=sandbox.origin) as api:
        return api.list_registries()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--plan-n", type=int, default=200)
    ap.add_argument("--apply-n", type=int, default=120)
    ap.add_argument("--parallelism", type=int, default=4)
    ap.add_argument("--scale-n", type=int, default=300)
    ap.add_argument("--scale-factor", type=int, default=10)
    args = ap.parse_args()
    sandbox = Sandbox("bench-" + secrets.token_hex(16))
    try:
        with tempfile.TemporaryDirectory(prefix="regsync-bench-") as tmp:
            print(f"sandbox latency: {args.latency_ms} ms per API call (sandbox in its own process)")
            bench_plan(sandbox, args.plan_n, args.latency_ms, Path(tmp))
            ratio = bench_apply(sandbox, args.apply_n, args.latency_ms, args.parallelism,
                                Path(tmp))
            scaling = bench_scaling(sandbox, args.scale_n, args.scale_factor, args.parallelism,
                                    Path(tmp))
    finally:
        sandbox.stop()
    return 0 if ratio <= 0.35 and scaling <= 13 else 1


if __name__ == "__main__":
    raise SystemExit(main())
