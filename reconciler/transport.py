"""One HTTP exchange of the Vendor API client, bounded: httpx's own transport, with a
deadline over the whole request and a cap on the body.

httpx's timeouts bound each socket operation, so a peer that sends one byte every
few seconds (in its headers or its body) keeps a request alive forever. Here every
connect, read and write of a request is given at most the time left before that
request's deadline (set by ``deadline()`` around the request, per thread), so the
whole exchange ends by then.

Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) are honoured as httpx
would: httpx skips them when given a transport, so they are looked up here.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from reconciler.retry import CONNECT, LOST, TIMEOUT

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


def _proxy_for(origin: str) -> str | None:
    """The proxy URL the environment names for ``origin``, if any."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(httpx.URL(origin).scheme) or proxies.get("all")
    if proxy and urllib.request.proxy_bypass(httpx.URL(origin).host):
        return None
    return proxy


def proxy_secrets(origin: str) -> list[str]:
    """The password of the proxy used for ``origin``, as the URL holds it, decoded, and
    in the Basic ``Proxy-Authorization`` header httpx sends it in: a proxy that repeats
    the request it refused must not get them into an error."""
    proxy = _proxy_for(origin)
    if not proxy:
        return []
    try:
        url = httpx.URL(proxy)
    except (ValueError, httpx.InvalidURL):
        return []
    if not url.password:
        return []
    raw = url.userinfo.decode("ascii", "replace")
    basic = base64.b64encode(f"{url.username}:{url.password}".encode()).decode("ascii")
    return [url.password, raw.partition(":")[2], basic]


def transport_for(origin: str) -> httpx.HTTPTransport:
    """httpx's transport for ``origin`` (through the environment's proxy for it, if
    any), with every socket operation bounded by the thread's request deadline."""
    scheme = httpx.URL(origin).scheme
    proxy = _proxy_for(origin)
    # A plain-http origin (the sandbox) never makes a TLS connection: no CA bundle to load (~30 ms).
    tls = scheme == "https" or bool(proxy and proxy.startswith("https"))
    try:
        transport = httpx.HTTPTransport(proxy=proxy, verify=tls)
    except (ValueError, ImportError) as exc:  # the text would show the proxy URL, password included
        where = httpx.URL(proxy).copy_with(username=None, password=None) if proxy else ""
        raise ValueError(f"{where} ({type(exc).__name__}); set NO_PROXY or a proxy httpx "
                         "supports (http, https, or socks5 with httpx[socks])") from None
    pool = getattr(transport, "_pool", None)  # httpx keeps httpcore's pool here
    backend = getattr(pool, "_network_backend", None)
    if pool is not None and isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _Backend(backend)
    return transport


#: ``Failed.kind`` of a TLS handshake that failed (plain HTTP on the port, a certificate
#: refused): the same every time, so not worth retrying.
TLS_FAILED = "TLSError"


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # httpx -> httpcore -> ssl
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


#: The encodings the client asks for and inflates itself, within the body's cap; an
#: answer in any other is taken as it came (and then is not the JSON it must be).
ACCEPT_ENCODING = "gzip, deflate"


class _Inflater:
    """Inflates a gzip or deflate body chunk by chunk, never past ``room`` bytes at a
    time (zlib's ``max_length``): httpx's own decoders inflate a whole read at once, so
    64 KiB of a bomb took 64 MiB however small the cap."""

    def __init__(self, encoding: str):
        self._wbits = 31 if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS  # deflate: zlib-wrapped
        self._inflate = zlib.decompressobj(self._wbits)
        self._first = True

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._inflate.decompress(data, room + 1)
        except zlib.error:
            if not (self._first and self._wbits == zlib.MAX_WBITS):
                raise httpx.DecodingError("the answer's compressed body is corrupt") from None
            self._wbits = -zlib.MAX_WBITS  # a raw deflate stream, as some servers send
            self._inflate = zlib.decompressobj(self._wbits)
            out = self._inflate.decompress(data, room + 1)
        self._first = False
        return out


def _inflater(headers: Any) -> _Inflater | None:
    encoding = headers.get("content-encoding", "").strip().lower()
    return _Inflater(encoding) if encoding in ("gzip", "x-gzip", "deflate") else None


def inflated(response: httpx.Response, limit: int) -> Iterator[bytes]:
    """``response``'s body, decompressed, in chunks that never take it more than one
    byte past ``limit`` (so the caller sees that it is over): a gzip or deflate body
    is inflated here within that room; a body in another encoding comes as it is."""
    inflater = _inflater(response.headers)
    if response.is_stream_consumed:  # a transport that answered in memory, decoded
        inflater, raws = None, response.iter_bytes()
    else:
        raws = response.iter_raw()
    size = 0
    for raw in raws:
        chunk = raw if inflater is None else inflater.feed(raw, max(limit - size, 0))
        size += len(chunk)
        yield chunk
        if size > limit:
            return


class Failed(Exception):
    """An attempt that got no answer: ``ended`` is retry.CONNECT (nothing was sent),
    LOST (the request may have reached the server) or TIMEOUT (no answer in time)."""

    def __init__(self, ended: str, kind: str, detail: str):
        super().__init__(kind)
        self.ended, self.kind, self.detail = ended, kind, detail


@dataclass
class Answer:
    """An HTTP answer, its body read in full (``complete``) or up to ``limit`` bytes."""

    status_code: int
    headers: Any
    content: bytes
    complete: bool = True
    limit: int = 0

    def json(self) -> Any:
        return json.loads(self.content)


def exchange(client: httpx.Client, method: str, url: str, *, content: bytes | None,
             params: dict | None, headers: dict, timeout: httpx.Timeout, at: float,
             limit: int) -> Answer:
    """One request, its body read (decompressed) up to ``limit`` bytes, all by ``at``
    (a ``time.monotonic()`` value); transport failures become ``Failed``, holding
    httpx's text (which the caller masks) but never chained to httpx's exception,
    which holds the request, body included."""
    begun = time.monotonic()
    try:
        with deadline(at), client.stream(method, url, content=content, params=params,
                                         headers=headers, timeout=timeout) as response:
            chunks, size, complete = [], 0, True
            for chunk in inflated(response, limit):
                size += len(chunk)
                if size > limit:
                    chunks.append(chunk[: max(limit - size + len(chunk), 0)])
                    complete = False
                    break
                chunks.append(chunk)
                if time.monotonic() > at:
                    raise httpx.ReadTimeout(_PASSED)
            return Answer(response.status_code, response.headers, b"".join(chunks),
                          complete=complete, limit=limit)
    except (httpx.ConnectError, httpx.PoolTimeout) as exc:
        kind = TLS_FAILED if _tls_failure(exc) else type(exc).__name__
        raise Failed(CONNECT, kind, str(exc)) from None
    except httpx.TimeoutException as exc:
        if deadline_passed(exc) or time.monotonic() >= at:
            raise Failed(TIMEOUT, f"no complete answer within {max(at - begun, 0):.3g} s",
                         "") from None
        ended = CONNECT if isinstance(exc, httpx.ConnectTimeout) else TIMEOUT
        raise Failed(ended, type(exc).__name__, str(exc)) from None
    except httpx.RequestError as exc:  # read/write errors, disconnects
        raise Failed(LOST, type(exc).__name__, str(exc)) from None
