"""Shared test set-up: the fixture plugins, among them the guard that keeps tests on loopback."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.apiclient",
    "tests.fixtures.badserver",
    "tests.fixtures.github",
    "tests.fixtures.gitrepos",
    "tests.fixtures.guard",
    "tests.fixtures.registry",
    "tests.fixtures.sandbox",
    "tests.fixtures.seaweed",
]
