"""The Action's GitHub steps (reconciler/github.py, `regsync github ...`) against a local
server answering GitHub's documented shapes, paging and errors (tests/fixtures/github.py)."""

from __future__ import annotations

import dataclasses
import io

import pytest

from reconciler.cli import main
from reconciler.diff import diff
from reconciler.digest import file_marker, reviewed_from_text
from reconciler.errors import GitHubError
from reconciler.github import COMMENT_LIMIT, GitHub, fit_comment
from reconciler.model import Config, Settings
from reconciler.render import render_markdown
from reconciler.state import State
from tests.builders import FP, HUB_YAML, want
from tests.fixtures.github import BOT, REPO, REPO_ID, TOKEN

SHA = "0123456789abcdef0123456789abcdef01234567"


def client(server, **kw) -> GitHub:
    return GitHub(token=kw.pop("token", TOKEN), repository=REPO, api_url=server.url, timeout=5, **kw)


def plan_body(summary: str, path: str = "registries.yaml") -> str:
    return f"{file_marker(path)}\n**{summary}** `{path}`\n"


def test_one_comment_per_file_updated_in_place_across_runs_and_past_100_comments(github_server):
    pr = github_server.add_issue(title="more registries", pull=True)
    for i in range(130):
        github_server.add_comment(pr, f"review comment {i}")
    with client(github_server) as gh:
        first = gh.upsert_comment(pr, plan_body("Plan: 1 to add"), marker=file_marker("registries.yaml"))
        for i in range(20):  # more comments arrive after the plan's
            github_server.add_comment(pr, f"late comment {i}")
        second = gh.upsert_comment(pr, plan_body("Plan: 2 to add"), marker=file_marker("registries.yaml"))
        third = gh.upsert_comment(pr, plan_body("Plan: 2 to add"), marker=file_marker("registries.yaml"))
        other = gh.upsert_comment(pr, plan_body("No changes.", "prod.yaml"), marker=file_marker("prod.yaml"))
    assert (first.action, second.action, third.action, other.action) == ("created", "updated", "unchanged", "created")
    assert first.number == second.number == third.number != other.number
    comments = github_server.comments_on(pr)
    assert len(comments) == 152
    assert github_server.comments[first.number]["body"] == plan_body("Plan: 2 to add")
    # the second page was fetched through the Link header's own URL
    assert ("GET", f"/repositories/{REPO_ID}/issues/{pr}/comments") in github_server.requests


def test_a_comment_with_the_marker_by_someone_else_is_not_taken_as_the_plan(github_server):
    pr = github_server.add_issue(pull=True)
    forged = github_server.add_comment(pr, plan_body("Plan: 0 to add"), user="mallory")
    with client(github_server) as gh:
        outcome = gh.upsert_comment(pr, plan_body("Plan: 1 to add"), marker=file_marker("registries.yaml"),
                                    author=BOT)
    assert outcome.action == "created" and outcome.number != forged
    assert github_server.comments[forged]["body"] == plan_body("Plan: 0 to add")


def huge_markdown() -> tuple[str, str]:
    registries = tuple(want(f"registry-{i:04d}", i) for i in range(2000))
    config = Config(path="registries.yaml", settings=Settings(), registries=registries)
    plan = diff(config, [], State(), FP, prune=False)
    from reconciler.digest import items, plan_digest

    plan = dataclasses.replace(
        plan, source="registries.yaml", digest=plan_digest(plan, FP), digest_items=tuple(items(plan, FP)),
        file_warnings=tuple(f"registries.yaml:{i}:3: warning: {'x' * 480}" for i in range(60)),
        # e.g. --target with many slugs that neither the file nor the team has
        warnings=tuple(f"--target nope-{i:04d}: no registry with this slug in the file or the team"
                       for i in range(1000)),
    )
    out = io.StringIO()
    render_markdown(plan, out)
    return out.getvalue(), plan.digest


def test_an_over_long_plan_is_cut_to_fit_with_the_summary_and_markers_kept(github_server):
    body, digest = huge_markdown()
    assert len(body) > COMMENT_LIMIT  # GitHub would refuse it (422)
    pr = github_server.add_issue(pull=True)
    with client(github_server) as gh:
        outcome = gh.upsert_comment(pr, body, marker=file_marker("registries.yaml"))
    stored = github_server.comments[outcome.number]["body"]
    assert len(stored) <= COMMENT_LIMIT
    lines = stored.splitlines()
    assert lines[0] == file_marker("registries.yaml")
    assert lines[1] == "**Plan: 2000 to add, 0 to change, 0 to destroy.** `registries.yaml`"
    assert any(line.startswith("... cut here: the whole text has ") for line in lines)
    assert reviewed_from_text(stored, source="comment").digest == digest
    assert fit_comment(stored) == stored


def test_the_reviewed_plan_of_a_merged_commit_feeds_apply_expect_plan(
    github_server, sandbox, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    for name, value in {**sandbox.env(), **github_server.env(), "DH_TOKEN": "CANARY-gh-1",
                        "REGSYNC_STATE_KEY": "s" * 32}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "registries.yaml").write_text(HUB_YAML)
    pr = github_server.add_issue(pull=True)
    for i in range(105):
        github_server.add_comment(pr, f"chatter {i}")
    assert main(["plan", "--format", "markdown"]) == 0
    (tmp_path / "plan.md").write_text(capsys.readouterr().out)
    assert main(["github", "comment", "--pr", str(pr), "--body-file", "plan.md"]) == 0
    assert capsys.readouterr().err.startswith("created the plan comment https://github.test/")
    github_server.merge(pr, SHA)

    assert main(["github", "reviewed-plan", "--commit", SHA, "--out", "reviewed.md", "--author", BOT]) == 0
    assert f"pull request #{pr}" in capsys.readouterr().err
    assert (tmp_path / "reviewed.md").read_text() == (tmp_path / "plan.md").read_text()
    assert main(["apply", "--auto-approve", "--expect-plan", "reviewed.md"]) == 0
    assert "Apply complete: 1 added" in capsys.readouterr().out

    # a commit from no pull request with a plan: no reviewed plan, exit 1, one line
    assert main(["github", "reviewed-plan", "--commit", "f" * 40]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: no reviewed plan for registries.yaml: commit {'f' * 12} came from no "
                   "merged pull request with a regsync plan comment for that file\n")


def test_the_health_issue_opens_once_updates_then_closes(github_server, tmp_path, monkeypatch, capsys):
    for name, value in github_server.env().items():
        monkeypatch.setenv(name, value)
    github_server.add_issue(title="a PR that quotes the marker", pull=True,
                            body="<!-- regsync-health: registries.yaml -->")
    report = tmp_path / "report.txt"
    report.write_text("test hub acme/api:v1: FAILED (upstream status 401)\n")
    args = ["github", "health-issue", "--report-file", str(report), "--run-url", "https://github.test/run/1"]
    assert main([*args, "--status", "failed"]) == 0
    (opened,) = [i for i in github_server.issues.values() if "pull_request" not in i]
    assert opened["title"] == "regsync: registry health check failed"
    assert "FAILED (upstream status 401)" in opened["body"] and "https://github.test/run/1" in opened["body"]
    assert f"opened the health issue #{opened['number']}" in capsys.readouterr().err

    report.write_text("test hub acme/api:v1: FAILED (upstream status 404)\n")
    assert main([*args, "--status", "failed"]) == 0
    assert [i["number"] for i in github_server.issues.values() if "pull_request" not in i] == [opened["number"]]
    assert "upstream status 404" in github_server.issues[opened["number"]]["body"]
    assert len(github_server.comments_on(opened["number"])) == 1
    assert f"updated the health issue #{opened['number']}" in capsys.readouterr().err

    assert main(["github", "health-issue", "--status", "healthy"]) == 0
    assert github_server.issues[opened["number"]]["state"] == "closed"
    assert github_server.issues[opened["number"]]["state_reason"] == "completed"
    assert main(["github", "health-issue", "--status", "healthy"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == "healthy; no open health issue"
    # failing again opens a new one: the closed issue stays closed
    assert main([*args, "--status", "failed"]) == 0
    assert sum(i["state"] == "open" and "pull_request" not in i for i in github_server.issues.values()) == 1


@pytest.mark.parametrize(
    ("status", "headers", "body", "message"),
    [
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1767225600"},
         {"message": "API rate limit exceeded"}, "rate limited (403); try again after 1767225600"),
        (403, {}, {"message": "Resource not accessible by integration"},
         "forbidden (403: Resource not accessible by integration); give the job's token"),
        (500, {}, {"message": "Server Error"}, "failed (500: Server Error)"),
        (422, {}, {"message": "Validation Failed", "errors": [{"code": "custom", "message": "body is too long"}]},
         "failed (422: Validation Failed (body is too long))"),
    ],
)
def test_github_errors_are_one_line_without_the_token(github_server, status, headers, body, message):
    pr = github_server.add_issue(pull=True)
    github_server.fail("GET", r"/comments$", status, headers=headers, body=body)
    with client(github_server) as gh, pytest.raises(GitHubError) as caught:
        gh.upsert_comment(pr, plan_body("x"), marker=file_marker("registries.yaml"))
    text = str(caught.value)
    assert text.startswith(f"GitHub GET /repos/{REPO}/issues/{pr}/comments: {message}")
    assert TOKEN not in text and "\n" not in text


@pytest.mark.parametrize("where", ["message", "errors"])
def test_a_token_the_server_repeats_is_masked(github_server, where):
    """A proxy or server that repeats the Authorization header in its message."""
    pr = github_server.add_issue(pull=True)
    echo = f"Bearer {TOKEN} is not allowed"
    body = ({"message": echo} if where == "message"
            else {"message": "Validation Failed", "errors": [{"message": echo}]})
    github_server.fail("GET", r"/comments$", 422, body=body)
    with client(github_server) as gh, pytest.raises(GitHubError) as caught:
        gh.upsert_comment(pr, plan_body("x"), marker=file_marker("registries.yaml"))
    assert "Bearer ******** is not allowed" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_a_wrong_token_a_missing_pull_request_and_an_unreachable_server(github_server):
    pr = github_server.add_issue(pull=True)
    refused = r"the token was refused \(401: Bad credentials\)"
    with client(github_server, token="ghs_wrong") as gh, pytest.raises(GitHubError, match=refused):
        gh.find_comment(pr, "m")
    with client(github_server) as gh, pytest.raises(GitHubError, match=r"not found \(404: Not Found\)"):
        gh.find_comment(999, "m")
    url = github_server.url
    github_server.stop()
    with (GitHub(token=TOKEN, repository=REPO, api_url=url, timeout=2) as gh,
          pytest.raises(GitHubError, match="cannot reach")):
        gh.find_comment(pr, "m")


def test_a_next_link_to_another_origin_is_not_followed(github_server):
    pr = github_server.add_issue(pull=True)
    github_server.fail("GET", r"/comments$", 200, body=[],
                       headers={"Link": '<http://127.0.0.2:1/steal?page=2>; rel="next"'})
    with client(github_server) as gh, pytest.raises(GitHubError, match="next-page link points to another origin"):
        gh.find_comment(pr, "m")


def test_paging_is_bounded(github_server):
    pr = github_server.add_issue(pull=True)
    for i in range(250):
        github_server.add_comment(pr, f"c{i}")
    with client(github_server, max_pages=2) as gh, pytest.raises(GitHubError, match="more than 2 pages"):
        gh.find_comment(pr, "never")


def test_the_cli_needs_a_token_and_a_repository(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    (tmp_path / "p.md").write_text(plan_body("x"))
    assert main(["github", "comment", "--pr", "1", "--body-file", str(tmp_path / "p.md")]) == 1
    assert capsys.readouterr().err.startswith("error: no GitHub token: set GITHUB_TOKEN")
    monkeypatch.setenv("GITHUB_TOKEN", "t")
    monkeypatch.setenv("GITHUB_REPOSITORY", "not a repo")
    assert main(["github", "comment", "--pr", "1", "--body-file", str(tmp_path / "p.md")]) == 1
    assert "GITHUB_REPOSITORY 'not a repo' is not OWNER/NAME" in capsys.readouterr().err
    (tmp_path / "x.md").write_text("hello\n")
    assert main(["github", "comment", "--pr", "1", "--body-file", str(tmp_path / "x.md")]) == 1
    assert "not a markdown plan made by regsync plan" in capsys.readouterr().err


class _Misbehaving:
    """A loopback server that answers every request with ``reply(conn)``: for what a
    real GitHub never does, but a proxy or a broken network may (drip, flood, garbage)."""

    def __init__(self, reply):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = threading.Event()
        self.reply = reply
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                try:
                    self.reply(conn, self.stopping)
                except OSError:
                    pass

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)
        self.sock.close()


def _drip(conn, stopping):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[")
    for _ in range(300):  # a byte every 0.1 s: each read is quick, the whole answer is not
        if stopping.wait(0.1):
            return
        conn.sendall(b" ")


def _drip_headers(conn, stopping):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 300
    for i in range(len(head)):  # the status line and headers a byte every 0.1 s
        if stopping.wait(0.1):
            return
        conn.sendall(head[i : i + 1])


def _flood(conn, stopping):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
    chunk = b" " * 65536
    for _ in range(200):  # 13 MB of whitespace, more than an answer may hold
        if stopping.is_set():
            return
        conn.sendall(chunk)


def _garbage(conn, stopping):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!")


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (_drip, "the answer took longer than 1 s"),
        (_drip_headers, "the answer took longer than 1 s"),
        (_flood, f"the answer is larger than {8 * 1024 * 1024} bytes"),
        (_garbage, "the answer is not JSON (status 200)"),
    ],
    ids=["drip", "drip-headers", "flood", "garbage"],
)
def test_an_answer_is_bounded_in_time_and_size_and_must_be_json(reply, message):
    server = _Misbehaving(reply)
    try:
        with GitHub(token=TOKEN, repository=REPO, api_url=server.url, timeout=1) as gh, \
                pytest.raises(GitHubError) as caught:
            gh.find_comment(1, "m")
    finally:
        server.stop()
    assert str(caught.value) == f"GitHub GET /repos/{REPO}/issues/1/comments: {message}"


def test_a_cut_failed_plan_or_health_report_closes_its_code_block_and_keeps_the_run_link(github_server):
    # a plan that fails with many errors: its comment is a ```text block, not the plan's diff
    errors = "\n".join(f"registries.yaml:{i}:3: error: {'x' * 100}" for i in range(1000))
    failed = (f"{file_marker('registries.yaml')}\n**regsync plan failed** for `registries.yaml`: "
              f"there is no plan to apply.\n\n```text\n{errors}\n```\n")
    lines = fit_comment(failed).splitlines()
    assert len("\n".join(lines)) <= COMMENT_LIMIT
    assert lines[-2].startswith("... cut here: the whole text has ") and lines[-1] == "```"
    assert "</details>" not in lines  # none was opened
    # the nightly issue: the report is cut, the link to the run stays
    report = "regsync's check failed:\n\n```text\n" + errors + "\n```"
    with client(github_server) as gh:
        outcome = gh.health_issue(healthy=False, key="registries.yaml", title="t", report=report,
                                  run_url="https://github.test/run/7")
    body = github_server.issues[outcome.number]["body"]
    assert len(body) <= COMMENT_LIMIT
    assert body.rstrip().endswith("Run: https://github.test/run/7")
    assert "<!-- regsync-health: registries.yaml -->" in body.splitlines()  # found again next night
    cut = body.splitlines().index(next(x for x in body.splitlines() if x.startswith("... cut here")))
    assert body.splitlines()[cut + 1] == "```"  # the code block closed before the link
