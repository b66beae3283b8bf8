"""What regsync's GitHub Action does through the GitHub REST API, as code with tests.

- ``upsert_comment``: one plan comment per registries file on a pull request, found by
  its hidden marker (paging through every comment), updated in place, and kept under
  GitHub's 65,536-character limit with the summary and the markers kept.
- ``reviewed_plan``: for a pushed commit, the plan comment of the pull request it came
  from (its body holds the digest that ``apply --expect-plan`` checks).
- ``health_issue``: the nightly check's one issue: opened on failure, updated on the
  next failure, closed when all is healthy again.

Endpoints (REST API version 2022-11-28): ``GET/POST /repos/{repo}/issues/{n}/comments``,
``PATCH /repos/{repo}/issues/comments/{id}``, ``GET /repos/{repo}/commits/{sha}/pulls``,
``GET/POST /repos/{repo}/issues``, ``PATCH /repos/{repo}/issues/{n}``. Lists are paged
with ``per_page=100`` and the ``Link: <...>; rel="next"`` header, bounded in pages; a
``next`` link to another origin is not followed. Every answer is bounded in time and
size; every failure is one ``GitHubError`` line that never holds the token or a body
sent. httpx is imported lazily.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from reconciler import __version__
from reconciler.errors import GitHubError
from reconciler.redact import Masker

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
COMMENT_LIMIT = 65_536  # GitHub's limit on an issue or comment body, in characters
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PAGES = 100  # 10,000 comments or issues at 100 a page
DEFAULT_TIMEOUT = 20.0
HEALTH_MARKER = "regsync-health"
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_MESSAGE = 300


def _clip(text: object) -> str:
    from reconciler.render import printable

    text = printable(str(text))
    return text if len(text) <= _MESSAGE else text[:_MESSAGE] + "..."


@dataclass(frozen=True)
class Outcome:
    action: str  # "created" | "updated" | "unchanged" | "opened" | "closed" | "none"
    number: int | None = None  # the comment id or issue number
    url: str = ""


class GitHub:
    """A small GitHub REST client for one repository (``owner/name``)."""

    def __init__(self, *, token: str, repository: str, api_url: str = DEFAULT_API_URL,
                 timeout: float = DEFAULT_TIMEOUT, transport=None, max_pages: int = MAX_PAGES):
        import httpx

        if not token:
            raise GitHubError("no GitHub token: set GITHUB_TOKEN (in a workflow: ${{ github.token }})")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository or ""):
            raise GitHubError(f"GITHUB_REPOSITORY {_clip(repository)!r} is not OWNER/NAME")
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise GitHubError(f"GITHUB_API_URL {_clip(api_url)!r} is not an http(s) URL")
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout  # for each phase of a request, and for the whole of one
        self.repository = repository
        self.max_pages = max_pages
        self._origin = (parts.scheme, parts.netloc)
        from reconciler.transport import ACCEPT_ENCODING, proxy_secrets, transport_for

        # a server or proxy may repeat the Authorization (or Proxy-Authorization) header
        self._masker = Masker((token, *proxy_secrets(self.api_url)))
        if transport is None:  # httpx's, with every socket operation bounded by a deadline
            transport = transport_for(self.api_url)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"regsync/{__version__}",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            follow_redirects=False,
        )
        self.calls = 0

    def __enter__(self) -> GitHub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport --------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.api_url}/repos/{self.repository}/{path.lstrip('/')}"

    def _request(self, method: str, url: str, *, body: dict | None = None,
                 params: Mapping[str, Any] | None = None) -> tuple[Any, Mapping[str, str]]:
        import httpx

        from reconciler.transport import deadline as ends_by
        from reconciler.transport import deadline_passed, inflated

        what = f"GitHub {method} {urlsplit(url).path}"
        self.calls += 1
        deadline = time.monotonic() + self.timeout
        try:
            with ends_by(deadline), \
                    self._http.stream(method, url, json=body, params=params) as response:
                raw = bytearray()
                for chunk in inflated(response, MAX_BODY_BYTES):
                    raw += chunk
                    if len(raw) > MAX_BODY_BYTES:
                        raise GitHubError(f"{what}: the answer is larger than {MAX_BODY_BYTES} bytes")
                    if time.monotonic() > deadline:  # a server that drips its answer
                        raise GitHubError(f"{what}: the answer took longer than {self.timeout:g} s")
                status, headers = response.status_code, response.headers
        except httpx.TimeoutException as exc:
            if deadline_passed(exc) or time.monotonic() >= deadline:  # a drip, in headers too
                raise GitHubError(f"{what}: the answer took longer than {self.timeout:g} s") from None
            raise GitHubError(f"{what}: no answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise GitHubError(f"{what}: cannot reach {self.api_url} ({type(exc).__name__})") from exc
        text: bytes | str = bytes(raw)
        if not 200 <= status < 300:  # what it says is shown: mask the token before anything
            text = self._masker.mask(bytes(raw).decode("utf-8", "replace"))
        try:
            data = json.loads(text) if raw else None
        except (ValueError, RecursionError):  # not JSON, or nested past Python's limit
            data = None
        if 200 <= status < 300:
            if raw and data is None:
                raise GitHubError(f"{what}: the answer is not JSON (status {status})", status=status)
            return data, headers
        raise GitHubError(f"{what}: {self._reason(status, headers, data)}", status=status)

    @staticmethod
    def _reason(status: int, headers: Mapping[str, str], data: Any) -> str:
        message = _clip(data.get("message", "")) if isinstance(data, dict) else ""
        if isinstance(data, dict) and isinstance(data.get("errors"), list):
            said_by_each = [e.get("message") or e.get("code") for e in data["errors"] if isinstance(e, dict)]
            details = [_clip(d) for d in said_by_each if d]
            if details:
                message = f"{message} ({'; '.join(details[:3])})"
        said = f": {message}" if message else ""
        if status == 401:
            return f"the token was refused (401{said}); check GITHUB_TOKEN"
        if status == 429 or (status == 403 and headers.get("x-ratelimit-remaining") == "0"):
            reset = headers.get("x-ratelimit-reset") or headers.get("retry-after") or "later"
            return f"rate limited ({status}); try again after {_clip(reset)}"
        if status == 403:
            return (f"forbidden (403{said}); give the job's token the permission it needs "
                    "(pull-requests: write for the plan comment, issues: write for the health issue)")
        if status == 404:
            return f"not found (404{said}); check GITHUB_REPOSITORY and the token's access"
        return f"failed ({status}{said})"

    def _paged(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict]:
        url: str | None = self._url(path)
        query: Mapping[str, Any] | None = {"per_page": 100, **(params or {})}
        for _ in range(self.max_pages):
            assert url is not None
            data, headers = self._request("GET", url, params=query)
            if not isinstance(data, list):
                raise GitHubError(f"GitHub GET {urlsplit(url).path}: expected a list in the answer")
            yield from (item for item in data if isinstance(item, dict))
            url = self._next(headers.get("link", ""))
            if url is None:
                return
            query = None  # the next link carries the query
        raise GitHubError(f"GitHub GET {path}: more than {self.max_pages} pages; giving up")

    def _next(self, link: str) -> str | None:
        match = _LINK_NEXT.search(link)
        if match is None:
            return None
        parts = urlsplit(match.group(1))
        if (parts.scheme, parts.netloc) != self._origin:
            raise GitHubError(f"GitHub: a next-page link points to another origin ({_clip(parts.netloc)})")
        return match.group(1)

    # --- the plan comment ---------------------------------------------------------

    def find_comment(self, number: int, marker: str, *, author: str | None = None) -> dict | None:
        for comment in self._paged(f"issues/{int(number)}/comments"):
            if _has(comment, marker, author):
                return comment
        return None

    def upsert_comment(self, number: int, body: str, *, marker: str,
                       author: str | None = None) -> Outcome:
        """Create the pull request's comment holding ``marker``, or update it in place."""
        body = fit_comment(body)
        found = self.find_comment(number, marker, author=author)
        if found is None:
            data, _ = self._request("POST", self._url(f"issues/{int(number)}/comments"), body={"body": body})
            return Outcome("created", _int(data, "id"), _str(data, "html_url"))
        if found.get("body") == body:
            return Outcome("unchanged", _int(found, "id"), _str(found, "html_url"))
        data, _ = self._request("PATCH", self._url(f"issues/comments/{_int(found, 'id')}"),
                                body={"body": body})
        return Outcome("updated", _int(data, "id"), _str(data, "html_url"))

    def reviewed_plan(self, sha: str, marker: str, *, author: str | None = None) -> tuple[int, str] | None:
        """The plan comment (pull request number, body) of the pull request that ``sha``
        came from: the merged one whose merge commit it is first, then any merged one."""
        if not re.fullmatch(r"[0-9a-f]{7,64}", sha or ""):
            raise GitHubError(f"{_clip(sha)!r} is not a commit SHA")
        pulls = list(self._paged(f"commits/{sha}/pulls"))
        merged = [p for p in pulls if p.get("merged_at")]
        merged.sort(key=lambda p: p.get("merge_commit_sha") != sha)
        for pull in merged:
            number = _int(pull, "number")
            comment = self.find_comment(number, marker, author=author)
            if comment is not None:
                return number, _str(comment, "body")
        return None

    # --- the nightly health issue ---------------------------------------------------

    def health_issue(self, *, healthy: bool, key: str, title: str, report: str,
                     run_url: str = "", author: str | None = None) -> Outcome:
        """Open one issue on failure (or update the open one); close it when healthy."""
        marker = f"<!-- {HEALTH_MARKER}: {_marker_value(key)} -->"
        found = None
        for issue in self._paged("issues", {"state": "open"}):
            if "pull_request" not in issue and _has(issue, marker, author):
                found = issue
                break
        where = f"\n\nRun: {run_url}" if run_url else ""
        if healthy:
            if found is None:
                return Outcome("none")
            number = _int(found, "number")
            self._request("POST", self._url(f"issues/{number}/comments"),
                          body={"body": f"All registries are healthy again; closing.{where}"})
            data, _ = self._request("PATCH", self._url(f"issues/{number}"),
                                    body={"state": "closed", "state_reason": "completed"})
            return Outcome("closed", number, _str(data, "html_url"))
        body = fit_comment(f"{marker}\n{report.rstrip()}\n", COMMENT_LIMIT - len(where) - 1)
        body = f"{body.rstrip()}{where}\n"  # the cut report, and the link to the run kept
        if found is None:
            data, _ = self._request("POST", self._url("issues"), body={"title": title, "body": body})
            return Outcome("opened", _int(data, "number"), _str(data, "html_url"))
        number = _int(found, "number")
        data, _ = self._request("PATCH", self._url(f"issues/{number}"), body={"body": body})
        self._request("POST", self._url(f"issues/{number}/comments"),
                      body={"body": f"Still failing; the issue shows the latest report.{where}"})
        return Outcome("updated", number, _str(data, "html_url"))


def _has(item: dict, marker: str, author: str | None) -> bool:
    body = item.get("body")
    if not isinstance(body, str) or marker not in body:
        return False
    if author is None:
        return True
    user = item.get("user")
    return isinstance(user, dict) and user.get("login") == author


def _int(data: Any, key: str) -> int:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise GitHubError(f"GitHub: the answer has no {key}")
    return value


def _str(data: Any, key: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _marker_value(text: str) -> str:
    from reconciler.digest import comment_safe

    return comment_safe(text)


def plan_marker(config_path: str) -> str:
    """The hidden line a plan comment for ``config_path`` starts with."""
    from reconciler.digest import file_marker

    return file_marker(config_path)


_MARKER_LINE = re.compile(r"<!-- regsync-[a-z-]+: .* -->")


def fit_comment(body: str, limit: int = COMMENT_LIMIT) -> str:
    """``body`` cut to ``limit`` characters: the head (up to the summary), the hidden
    marker lines and a note saying what was cut are kept, the details are shortened."""
    if len(body) <= limit:
        return body
    lines = body.splitlines()
    markers = [line for line in lines if _MARKER_LINE.fullmatch(line)]
    if sum(len(m) for m in markers) > limit // 4:  # the per-change list is optional
        markers = [m for m in markers if not m.startswith("<!-- regsync-plan-changes:")]
    rest = [line for line in lines if not _MARKER_LINE.fullmatch(line)]
    fence = next((line[: len(line) - len(line.lstrip("`"))] for line in rest if line.startswith("```")), "")
    note = (f"... cut here: the whole text has {len(body)} characters, more than a comment "
            "holds; the job summary and `regsync plan` show all of it ...")
    at_most = [note] + ([fence, "", "</details>"] if fence else ["", "</details>"])
    budget = limit - sum(len(x) + 1 for x in markers + at_most) - 1
    kept: list[str] = []
    used = 0
    for line in rest:
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    # close what the kept part left open: the code block (a plan's diff, a failed plan's
    # or a report's text), then the details around a plan's diff
    closing = [note]
    if fence and sum(1 for line in kept if line.startswith(fence)
                     and not line[len(fence):].startswith("`")) % 2:
        closing.append(fence)
    if sum(line.startswith("<details>") for line in kept) > sum(line == "</details>" for line in kept):
        closing += ["", "</details>"]
    first = [m for m in markers if m.startswith("<!-- regsync-plan-file:")]
    last = [m for m in markers if m not in first]
    text = "\n".join(first + kept + closing + last) + "\n"
    return text[:limit]
