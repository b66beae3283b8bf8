"""Benchmark: the sandbox under load, measured in one run.

The sandbox runs in a child process (as the real API is another machine: in-process,
its request handling would share the clients' interpreter lock).

Prints:
1. 200 simultaneous connections, each one GET /external_registries, against a sandbox
   with socketserver's old listen backlog of 5 and with the sandbox's backlog of 128:
   p50/p99 of connect+answer and how many timed out, and the p99 ratio
   (target: backlog 128 has no timeouts and a p99 well under the old one's);
2. N image tests (PUT /external_registry/test, saved credentials, a real anonymous
   docker-registry upstream) sent one after another, then by P threads at once: the
   speedup serial/parallel (target: well above 1; building an SSL context per check,
   ~30 ms of CPU under the interpreter lock, kept it near 1), and what building one
   SSL context costs, for scale.

Usage: .venv/bin/python benchmarks/bench_sandbox.py [--connections 200] [--tests 120] [--parallel 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

TOKEN = "bench-token"
CHILD = """
import os, sys, threading
from reconciler.sandbox.server import SandboxServer
server = SandboxServer(port=0, token={token!r}, key=os.urandom(32), backlog={backlog})
server.start()
print(server.port, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.stop()
"""


class Sandbox:
    """A SandboxServer with the given listen backlog, in a child process."""

    def __init__(self, backlog: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(token=TOKEN, backlog=backlog)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip():
            self.stop()
            raise SystemExit("the sandbox did not start")
        self.port = int(line)
        self.origin = f"http://127.0.0.1:{self.port}/vendor"

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def burst(port: int, connections: int, timeout: float) -> tuple[list[float], int]:
    """``connections`` clients released at once; (seconds per answered one, timeouts)."""
    barrier = threading.Barrier(connections)
    times: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def one():
        barrier.wait()
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", "/vendor/v3/external_registries", headers={"Authorization": TOKEN})
            conn.getresponse().read()
            with lock:
                times.append(time.perf_counter() - start)
        except OSError:
            with lock:
                failures[0] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=one) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, failures[0]


def bench_backlog(connections: int, timeout: float) -> None:
    print(f"1. {connections} simultaneous connections (timeout {timeout:g}s each)")
    p99 = {}
    for backlog in (5, 128):
        sandbox = Sandbox(backlog)
        try:
            times, timeouts = burst(sandbox.port, connections, timeout)
        finally:
            sandbox.stop()
        p99[backlog] = percentile(times, 99) if times else float("inf")
        print(f"   backlog {backlog:>3}: p50 {percentile(times, 50) * 1000:7.1f} ms, "
              f"p99 {p99[backlog] * 1000:7.1f} ms, {timeouts} timed out")
    print(f"   p99 ratio backlog 128 / backlog 5: {p99[128] / p99[5]:.3f}")


class Registry:
    """Debian's docker-registry without auth, one image pushed."""

    def __init__(self, root: Path):
        from tests.fixtures.ocibuild import build_image
        from tests.fixtures.ocipush import push_image

        binary = shutil.which("docker-registry")
        if binary is None:
            raise SystemExit("docker-registry is not installed (apt-get install docker-registry)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": str(root / "storage")}},
                  "http": {"addr": f"127.0.0.1:{self.port}", "secret": "bench"}}
        (root / "config.yml").write_text(json.dumps(config))
        self.proc = subprocess.Popen([binary, "serve", str(root / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + "/v2/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("docker-registry did not start") from None
                time.sleep(0.05)
        push_image(url, "bench/hello", "v1", build_image(b"bench\n"), authorization="")
        self.endpoint = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench_image_tests(n: int, parallel: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    print(f"2. {n} image tests through the sandbox, serial vs {parallel} at once")
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp))
        sandbox = Sandbox(128)
        try:
            with httpx.Client(base_url=sandbox.origin + "/v3", timeout=60,
                              headers={"Authorization": TOKEN},
                              limits=httpx.Limits(max_connections=parallel)) as api:
                api.post("/external_registry", json={
                    "slug": "bench", "endpoint": registry.endpoint, "username": "u",
                    "password": "p", "skipValidation": True}).raise_for_status()

                def one(_):
                    r = api.put("/external_registry/test", json={"slug": "bench",
                                                                  "image": "bench/hello:v1"})
                    assert r.json()["status"] == 200, r.text

                for _ in range(5):  # warm up both processes
                    one(None)
                start = time.perf_counter()
                for i in range(n):
                    one(i)
                serial = time.perf_counter() - start
                with ThreadPoolExecutor(parallel) as pool:
                    start = time.perf_counter()
                    list(pool.map(one, range(n)))
                    concurrent = time.perf_counter() - start
        finally:
            sandbox.stop()
            registry.stop()
    start = time.perf_counter()
    for _ in range(10):
        httpx.create_ssl_context()
    context_ms = (time.perf_counter() - start) / 10 * 1000
    print(f"   serial: {serial / n * 1000:.1f} ms per test; {parallel} at once: "
          f"{concurrent / n * 1000:.1f} ms per test")
    print(f"   speedup serial / parallel: {serial / concurrent:.2f}x "
          f"(one SSL context costs {context_ms:.1f} ms to build; the sandbox builds one in all)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--tests", type=int, default=120)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    os.environ.pop("REGSYNC_SANDBOX_KEY", None)
    bench_backlog(args.connections, args.timeout)
    bench_image_tests(args.tests, args.parallel)


if __name__ == "__main__":
    main()
