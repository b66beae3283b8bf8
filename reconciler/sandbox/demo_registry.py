"""A tiny read-only OCI registry serving one demo image, behind Basic auth.

For the demo on machines where Debian's ``docker-registry`` cannot be installed: just
enough of the distribution API for a pull check (``/v2/``, manifests by tag or digest,
blobs, GET and HEAD). Anything without the right Basic credentials gets a 401 with a
Basic challenge; writes get 405 (read-only). The image is built in memory with the
stdlib OCI layout recipe, so its digest is the same on every run and every machine.

    reg = DemoRegistry(username="demo", password="demo-pass").start()
    check_pull(reg.endpoint, reg.image, username="demo", password=Secret("demo-pass"))
    reg.stop()
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import re
import tarfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from reconciler.sandbox.serving import ServerThread
from reconciler.secretvalue import Secret

DEMO_REPOSITORY = "demo/hello"
DEMO_TAG = "v1"
DEMO_CONTENT = b"hello from the regsync demo registry\n"
REALM = "regsync-demo"

_MEDIA = {  # flavour -> (manifest, config, layer) media types
    "oci": (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ),
    "docker": (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
}
_PATH_RE = re.compile(r"^/v2/(?P<name>[a-z0-9._/-]+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Image:
    """A built image: the manifest bytes, its media type, and its blobs by digest."""

    manifest: bytes
    media_type: str
    blobs: dict

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def build_image(content: bytes = DEMO_CONTENT, *, flavour: str = "oci") -> Image:
    """One layer holding ``hello.txt``; deterministic (tar and gzip mtimes are 0)."""
    manifest_type, config_type, layer_type = _MEDIA[flavour]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(content), 0, 0o644
        tf.addfile(info, io.BytesIO(content))
    tar = raw.getvalue()
    layer = gzip.compress(tar, mtime=0)
    config = _compact(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(tar)]},  # of the uncompressed tar
        }
    )
    manifest = _compact(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": layer_type, "digest": digest_of(layer), "size": len(layer)}],
        }
    )
    blobs = {digest_of(config): config, digest_of(layer): layer}
    return Image(manifest=manifest, media_type=manifest_type, blobs=blobs)


class DemoRegistry:
    """Serves ``demo/hello:v1`` on ``host:port`` (0 = a free port) from a daemon thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, username: str, password: Secret | str):
        self.host = host
        self.port = port
        self.username = username
        self._password = Secret(password)
        self.built = build_image()
        self._serving: ServerThread | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def image(self) -> str:
        return f"{DEMO_REPOSITORY}:{DEMO_TAG}"

    @property
    def digest(self) -> str:
        return self.built.digest

    def authorized(self, header: str | None) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self._password.reveal()}".encode()).decode()
        return hmac.compare_digest((header or "").encode(), expected.encode())

    def lookup(self, name: str, kind: str, ref: str) -> tuple[bytes, str] | None:
        """(body, content type) for a manifest or blob of the demo image, else None."""
        if name != DEMO_REPOSITORY:
            return None
        if kind == "manifests":
            if ref in (DEMO_TAG, self.built.digest):
                return self.built.manifest, self.built.media_type
            return None
        blob = self.built.blobs.get(ref)
        return (blob, "application/octet-stream") if blob is not None else None

    def start(self) -> DemoRegistry:
        server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._serving = ServerThread(server, name="demo-registry")
        self.port = self._serving.port
        return self

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None

    def __enter__(self) -> DemoRegistry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler_for(registry: DemoRegistry):
    class Handler(BaseHTTPRequestHandler):
        server_version = "regsync-demo-registry"

        def log_message(self, *args):  # quiet; and never a header
            pass

        def _answer(self, status: int, body: bytes = b"", content_type="application/json", headers=()):
            self.send_response(status)
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers:
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str, headers=()):
            self._answer(status, _compact({"errors": [{"code": code, "message": message, "detail": None}]}),
                         headers=headers)

        def _serve(self):
            if not registry.authorized(self.headers.get("Authorization")):
                challenge = ("WWW-Authenticate", f'Basic realm="{REALM}"')
                return self._error(401, "UNAUTHORIZED", "authentication required", headers=[challenge])
            path = self.path.split("?", 1)[0]
            if self.command not in ("GET", "HEAD"):
                return self._error(405, "UNSUPPORTED", "the demo registry is read-only")
            if path in ("/v2", "/v2/"):
                return self._answer(200, b"{}")
            match = _PATH_RE.match(path)
            found = match and registry.lookup(match["name"], match["kind"], match["ref"])
            if not found:
                kind = match["kind"] if match else ""
                code = "BLOB_UNKNOWN" if kind == "blobs" else "MANIFEST_UNKNOWN"
                return self._error(404, code, f"{kind[:-1] or 'path'} unknown")
            body, content_type = found
            self._answer(200, body, content_type, headers=[("Docker-Content-Digest", digest_of(body))])

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

    return Handler
