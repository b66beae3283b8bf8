"""Shared test set-up: fixture plugins, and a guard that keeps tests on loopback."""

from __future__ import annotations

import ipaddress
import socket

import pytest

pytest_plugins = [
    "tests.fixtures.registry",
    "tests.fixtures.sandbox",
]

_real_connect = socket.socket.connect
_real_create_connection = socket.create_connection


def _is_loopback(address) -> bool:
    if not isinstance(address, tuple):  # unix sockets
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost would need DNS: refuse


@pytest.fixture(autouse=True)
def _only_loopback(monkeypatch):
    """A test that would talk to anything but 127.0.0.1 / ::1 fails loudly."""

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise AssertionError(f"test tried to reach a non-loopback address: {address!r}")
        return _real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
