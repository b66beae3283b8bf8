"""The whole story on one machine: a real registry, the sandbox, and regsync.

Starts a private OCI registry on 127.0.0.1 (Debian's docker-registry with htpasswd
when it is installed, else the small read-only demo registry regsync ships) holding
one image, starts `regsync sandbox`, writes a registries file, then runs what a user
runs: validate, plan, apply (whose image test really pulls), and a second plan that
must show no changes. Everything it starts, it stops. Run it with scripts/demo.sh.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from reconciler.sandbox.demo_registry import (  # noqa: E402
    DEMO_REPOSITORY,
    DEMO_TAG,
    DemoRegistry,
    build_image,
)

WORK = Path(os.environ.get("REGSYNC_DEMO_DIR") or ROOT / ".regsync-demo")
USER = "demo"
SANDBOX_TOKEN = "demo-sandbox-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, what: str, proc: subprocess.Popen | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"demo: {what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"demo: {what} did not answer within {timeout}s")


class RealRegistry:
    """Debian's docker-registry with htpasswd auth, config and storage of our own."""

    def __init__(self, password: str):
        import bcrypt

        self.dir = WORK / "registry"
        self.dir.mkdir(parents=True)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
        (self.dir / "htpasswd").write_text(f"{USER}:{hashed}\n")  # before start
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "storage")}},
            "http": {"addr": self.endpoint, "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": "demo", "path": str(self.dir / "htpasswd")}},
        }
        (self.dir / "config.yml").write_text(json.dumps(config))
        self.log = open(self.dir / "registry.log", "wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(self.dir / "config.yml")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )
        wait_for(f"http://{self.endpoint}/v2/", "docker-registry", self.proc)
        self.push(password)
        self.image = f"{DEMO_REPOSITORY}:{DEMO_TAG}"

    def push(self, password: str) -> None:
        from tests.fixtures.ocipush import push_image

        basic = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()
        push_image(f"http://{self.endpoint}", DEMO_REPOSITORY, DEMO_TAG, build_image(),
                   authorization=basic)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def bold(text: str) -> str:
    """``text`` in bold on a terminal; as it is in a pipe or a log (or with NO_COLOR)."""
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[1m{text}\033[0m"
    return text


def step(title: str, args: list[str], env: dict, expect: int) -> None:
    print(f"\n{bold('$ regsync ' + ' '.join(args))}   # {title}", flush=True)
    rc = subprocess.run([sys.executable, "-m", "reconciler", *args], env=env, cwd=WORK).returncode
    if rc != expect:
        raise SystemExit(f"demo: `regsync {' '.join(args)}` exited {rc}, expected {expect}")


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    password = secrets.token_urlsafe(12)
    started = []
    try:
        if shutil.which("docker-registry"):
            registry = RealRegistry(password)
            kind = "Debian's docker-registry"
        else:
            registry = DemoRegistry(username=USER, password=password).start()
            kind = "regsync's read-only demo registry: docker-registry is not installed"
        started.append(registry)
        print(f"demo: private registry ({kind}) at {registry.endpoint} holding {registry.image}")

        port = free_port()
        sandbox_log = open(WORK / "sandbox.log", "wb")
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "sandbox", "--port", str(port),
             "--db", str(WORK / "sandbox.db"), "--token", SANDBOX_TOKEN],
            stdin=subprocess.DEVNULL, stdout=sandbox_log, stderr=sandbox_log,
        )
        started.append(sandbox)
        origin = f"http://127.0.0.1:{port}/vendor"
        wait_for(f"{origin}/v3/external_registries", "regsync sandbox", sandbox)

        (WORK / "registries.yaml").write_text(textwrap.dedent(f"""\
            # yaml-language-server: $schema={ROOT}/schema/registries.schema.json
            version: 1
            settings:
              prune: true
              max_deletes: 1
            registries:
              - provider: other
                slug: demo-registry
                endpoint: {registry.endpoint}
                username: {USER}
                password: ${{DEMO_REGISTRY_PASSWORD}}
                tests: [{registry.image}]
              - provider: dockerhub
                auth_type: token
                username: acme-bot
                token: ${{DOCKERHUB_TOKEN}}
                skip_validation: true   # no internet here: save without logging in
            """))
        env = {
            **os.environ,
            "REPLICATED_API_TOKEN": SANDBOX_TOKEN,
            "REPLICATED_API_ORIGIN": origin,
            "DEMO_REGISTRY_PASSWORD": password,
            "DOCKERHUB_TOKEN": "dckr_pat_" + secrets.token_urlsafe(16),
        }
        print(f"demo: sandbox at {origin} (log: {WORK / 'sandbox.log'})")
        step("offline check, no secrets needed", ["validate"], env, 0)
        step("what would change", ["plan"], env, 0)
        step("make it so, then pull the image through the saved credentials",
             ["apply", "--auto-approve"], env, 0)
        step("nothing left to do (exit 0 = no changes)", ["plan", "--detailed-exitcode"], env, 0)
        step("the team's registries", ["ls"], env, 0)
        print(f"\ndemo: done. Everything it started is stopped; its files stay in {WORK}/")
        return 0
    finally:
        for thing in reversed(started):
            if isinstance(thing, subprocess.Popen):
                thing.send_signal(signal.SIGINT)
                try:
                    thing.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    thing.kill()
            else:
                thing.stop()


if __name__ == "__main__":
    sys.exit(main())
