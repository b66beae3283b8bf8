"""`regsync logs`: the API's pull logs, through the CLI against the sandbox and a real
registry; the filters and the escaping on plain data."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.cli import main
from reconciler.logs import clip, parse_duration, render_json, render_table, select
from reconciler.model import RegistryLog
from reconciler.secretvalue import Secret
from tests.fixtures.apiclient import write

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def entry(minutes_ago: float | None, ok: bool = True, **kw) -> RegistryLog:
    created = None if minutes_ago is None else (NOW - timedelta(minutes=minutes_ago)).isoformat()
    fields = dict(action="pull", slug="demo", image="app/api", tag="v1",
                  status_code=200 if ok else 401, customer_name="Acme Corp")
    fields.update(kw)
    return RegistryLog(created_at=created, is_success=ok, **fields)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("2w", 1209600),
     ("1h30m", 5400), (" 10M ", 600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "h", "1.5h", "-1h", "1y", "0m", "1h 30m", "1h30"])
def test_a_bad_duration_says_what_one_looks_like(text):
    with pytest.raises(ValueError, match=r"is not a duration; write a number and a unit, s m h d or w"):
        parse_duration(text)


def test_since_keeps_recent_dated_entries_and_failures_keeps_failed_ones_newest_first():
    logs = [entry(5), entry(90, ok=False), entry(30, ok=False), entry(None), entry(3000)]
    recent = select(logs, since=timedelta(hours=2), now=NOW)
    assert [e.created_at for e in recent] == [logs[0].created_at, logs[2].created_at, logs[1].created_at]
    failed = select(logs, failures=True, now=NOW)
    assert [e.created_at for e in failed] == [logs[2].created_at, logs[1].created_at]
    both = select(logs, since=timedelta(minutes=60), failures=True, now=NOW)
    assert both == [logs[2]]
    assert len(select(logs)) == 5  # no filter: everything, undated entries last


def test_strings_from_the_api_are_escaped_and_clipped_in_the_table_and_the_json():
    hostile = entry(1, customer_name="Evil\x1b[2J\x1b]0;pwned\x07" + "x" * 2000,
                    image="app\r\nFAKE LINE", tag="v1\x9b31m")
    out = io.StringIO()
    render_table([hostile], out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\x9b" not in text
    assert "Evil\\x1b[2J\\x1b]0;pwned\\x07" in text and "app\\x0d\\x0aFAKE LINE" in text
    assert len(text.splitlines()) == 2  # the header and one row: no injected line
    assert max(len(line) for line in text.splitlines()) < 400  # the 2000 x's were clipped
    out = io.StringIO()
    render_json([hostile], out)
    (row,) = json.loads(out.getvalue())
    assert row["customerName"].startswith("Evil\\x1b[2J") and row["customerName"].endswith("...")
    assert len(row["customerName"]) == 1000
    assert clip("abc", 10) == "abc" and clip("abcdefghijk", 8) == "abcde..."


@pytest.fixture
def team(sandbox, api, registry_basic, monkeypatch, tmp_path):
    """Two registries with one successful and one failed test each (real pulls)."""
    monkeypatch.chdir(tmp_path)
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    for slug in ("demo", "other-demo"):
        api.create_registry(write(slug=slug, endpoint=registry_basic.endpoint,
                                  username=registry_basic.username,
                                  password=Secret(registry_basic.password)))
        assert api.test_registry(slug=slug, image="test/hello:v1").ok
        assert api.test_registry(slug=slug, image="test/hello:missing").status == 404
    api.create_registry(write(slug="quiet", endpoint="quiet.example.com"))
    return sandbox


def test_logs_of_every_registry_as_a_table(team, capsys):
    assert main(["logs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["DATE", "REGISTRY", "CUSTOMER", "ACTION", "IMAGE", "TAG", "STATUS", "SUCCESS"]
    rows = [line.split() for line in out[1:]]
    assert sorted((r[1], r[5], r[6], r[7]) for r in rows) == [
        ("demo", "missing", "404", "no"), ("demo", "v1", "200", "yes"),
        ("other-demo", "missing", "404", "no"), ("other-demo", "v1", "200", "yes"),
    ]
    assert {r[4] for r in rows} == {"test/hello"} and {r[3] for r in rows} == {"test"}
    dates = [r[0] for r in rows]
    assert dates == sorted(dates, reverse=True)  # newest first, across registries


def test_logs_of_one_registry_failures_only_as_json(team, capsys):
    before = team.stats["requests"]
    assert main(["logs", "demo", "--failures", "--since", "1h", "--format", "json"]) == 0
    assert team.stats["requests"] - before == 2  # one list, one logs call
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["registry"], row["image"], row["tag"], row["statusCode"], row["isSuccess"]) == (
        "demo", "test/hello", "missing", 404, False)
    assert datetime.fromisoformat(row["createdAt"].replace("Z", "+00:00")) > datetime.now(UTC) - timedelta(hours=1)


def test_no_entries_is_said_on_stderr_and_exit_0(team, capsys):
    assert main(["logs", "quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "No log entries.\n"
    assert main(["logs", "demo", "--since", "1s", "--failures", "--format", "json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


def test_an_unknown_slug_is_an_error_naming_the_team_registries(team, capsys):
    assert main(["logs", "demo", "nope"]) == 1
    err = capsys.readouterr().err
    assert err == "error: no registry with slug 'nope' in the team (its registries: demo, other-demo, quiet)\n"


def test_a_bad_since_is_a_usage_error_before_any_call(team, capsys):
    before = team.stats["requests"]
    assert main(["logs", "--since", "yesterday"]) == 1
    assert "'yesterday' is not a duration" in capsys.readouterr().err
    assert team.stats["requests"] == before


@pytest.mark.parametrize("since", ["999999999d", "99999999999999999999999d"])
def test_a_since_longer_than_the_calendar_keeps_every_dated_entry(team, capsys, since):
    """A window reaching before year 1 (or past what a timedelta holds) is everything,
    not an OverflowError that exits 3."""
    assert main(["logs", "demo", "--since", since, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["tag"] for row in rows} == {"missing", "v1"}
