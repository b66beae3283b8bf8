"""The Vendor API client's HTTP transport: httpx's own, with a deadline over a whole
request.

httpx's timeouts bound each socket operation, so a peer that sends one byte every
few seconds (in its headers or its body) keeps a request alive forever. Here every
connect, read and write of a request is given at most the time left before that
request's deadline (set by ``deadline()`` around the request, per thread), so the
whole exchange ends by then.

Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) are honoured as httpx
would: httpx skips them when given a transport, so they are looked up here.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_local = threading.local()


_PASSED = "the request's overall deadline passed"


@contextmanager
def deadline(at: float | None):
    """Every socket operation in this thread, inside the block, ends by ``at``
    (a ``time.monotonic()`` value)."""
    previous = getattr(_local, "at", None)
    _local.at = at
    try:
        yield
    finally:
        _local.at = previous


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    at = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error(_PASSED)
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _Stream(self._inner.start_tls(ssl_context, server_hostname,
                                             _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend):
        self._inner = inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _Stream(self._inner.connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout),
                                               local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _Stream(self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_passed(exc: BaseException) -> bool:
    """Whether an httpx timeout was raised because the request's deadline passed."""
    return _PASSED in str(exc)


def transport_for(origin: str) -> httpx.HTTPTransport:
    """httpx's transport for ``origin`` (through the environment's proxy for it, if
    any), with every socket operation bounded by the thread's request deadline."""
    proxies = urllib.request.getproxies()
    scheme = httpx.URL(origin).scheme
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and urllib.request.proxy_bypass(httpx.URL(origin).host):
        proxy = None
    # A plain-http origin (the sandbox) never makes a TLS connection: no CA bundle to load (~30 ms).
    tls = scheme == "https" or bool(proxy and proxy.startswith("https"))
    transport = httpx.HTTPTransport(proxy=proxy, verify=tls)
    pool = getattr(transport, "_pool", None)  # httpx keeps httpcore's pool here
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _Backend(backend)
    return transport
