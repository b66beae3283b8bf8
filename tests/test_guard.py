"""The loopback guard itself: a test that reaches past 127.0.0.1 fails, even when its
code catches the refusal."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


def test_a_test_that_leaves_loopback_fails_even_if_it_swallows_the_error(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest('pytest_plugins = ["tests.fixtures.guard"]')
    pytester.makepyfile(
        """
        import socket

        def test_looks_up_a_name():
            try:
                socket.getaddrinfo("example.com", 443)
            except OSError:
                pass

        def test_connects_out():
            s = socket.socket()
            try:
                s.connect(("192.0.2.1", 443))
            except BaseException:
                pass
            finally:
                s.close()

        def test_stays_home():
            socket.getaddrinfo("localhost", 80)
            socket.getaddrinfo("127.0.0.1", 80)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # Each offending test errors at teardown (its own body may have passed).
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(["*the test tried to leave 127.0.0.1*example.com*"])
