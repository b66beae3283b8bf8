"""A state in git: ``regsync.state.json`` on branch BRANCH of the ``origin`` remote of the
repository that holds the registries file, through the ``git`` command and whatever
credentials git already has.

Each write is a commit made without any work tree or index (``hash-object``,
``mktree``, ``commit-tree``, as regsync itself: a CI checkout has no identity), pushed
with ``--force-with-lease=REF:EXPECTED``, so it lands only if the branch is still what
was read. The lock is the ref ``refs/regsync-locks/BRANCH``, pushed with an empty
lease (refused when it exists) and deleted with a lease on its commit. What is fetched
goes to ``refs/regsync/...`` only: the user's branches, index and files are never touched.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

from reconciler.errors import StateError
from reconciler.state.location import STATE_FILENAME, Location
from reconciler.state.lock import MAX_LOCK_BYTES, LockInfo, check_unlock, clean, unlock_hint

GIT_TIMEOUT = 120.0
_URL_CREDENTIALS = re.compile(r"://[^/\s@']*@")
LOCK_FILENAME = "lock.json"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "regsync", "GIT_AUTHOR_EMAIL": "regsync@localhost",
    "GIT_COMMITTER_NAME": "regsync", "GIT_COMMITTER_EMAIL": "regsync@localhost",
}


class GitBackend:
    def __init__(self, location: Location, repo_dir: str | os.PathLike):
        self.location = location
        self.branch = location.path
        self.ref = f"refs/heads/{self.branch}"
        self.lock_ref = f"refs/regsync-locks/{self.branch}"
        self._seen = f"refs/regsync/state/{self.branch}"
        self._seen_lock = f"refs/regsync/lock/{self.branch}"
        self._lock_sha: str | None = None
        if shutil.which("git") is None:
            raise StateError(f"{location}: git is not installed: install git, or choose another state location")
        self.dir = os.fspath(repo_dir)
        if not os.path.isdir(self.dir):
            raise StateError(f"{location}: {self.dir} is not a directory")
        probe = self._run("rev-parse", "--git-dir", check=False)
        if probe.returncode != 0:
            raise StateError(
                f"{location}: {self.dir} is not in a git repository: a git: state lives in the "
                "repository of the registries file; run regsync in a clone of the repository, "
                "or choose another state location"
            )
        remote = self._run("remote", "get-url", "origin", check=False)
        if remote.returncode != 0:
            raise StateError(
                f"{location}: the repository at {self.dir} has no 'origin' remote to keep the state on: "
                "add one (git remote add origin URL), or choose another state location"
            )

    def unlock_hint(self, holder: LockInfo) -> str:
        return unlock_hint(holder, f" --state {shlex.quote(str(self.location))}")

    def _run(self, *args: str, input: bytes | None = None, check: bool = True, doing: str = ""):
        env = {**os.environ, **_IDENTITY, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
               "GIT_OPTIONAL_LOCKS": "0"}
        try:
            proc = subprocess.run(
                ["git", "-C", self.dir, *args], input=input, capture_output=True,
                stdin=None if input is not None else subprocess.DEVNULL,
                timeout=GIT_TIMEOUT, env=env,
            )
        except subprocess.TimeoutExpired:
            raise StateError(
                f"{self.location}: git {args[0]} took longer than {GIT_TIMEOUT:g}s: check that origin is reachable"
            ) from None
        except OSError as exc:
            raise StateError(f"{self.location}: cannot run git: {exc.strerror or exc}") from None
        if check and proc.returncode != 0:
            raise self._error(doing or f"git {args[0]} failed", proc)
        return proc

    def _error(self, doing: str, proc) -> StateError:
        # a remote URL may carry credentials (https://user:token@host/...): never show them
        text = _URL_CREDENTIALS.sub("://***@", proc.stderr.decode("utf-8", "replace"))
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        # origin's own words first (a hook's or a rule's reason); git's closing
        # "failed to push some refs" says nothing
        said = [ln for ln in lines if ln.startswith(("fatal:", "error:", "remote:"))
                and "failed to push some refs" not in ln]
        remote = [ln for ln in said if ln.startswith("remote:")]
        reason = clean(remote[0] if remote else (said or lines or [f"exit {proc.returncode}"])[-1], 160)
        low = text.lower()
        refused = "[remote rejected]" in (proc.stdout or b"").decode("utf-8", "replace") or any(
            phrase in low for phrase in ("declined", "protected branch", "rule violation"))
        unreachable = ("could not read from remote", "unable to access", "does not appear to be a git repository")
        if any(phrase in low for phrase in unreachable):
            hint = "check that origin is reachable and that git's credentials may read and push it"
        elif refused:
            hint = (f"origin refused the push (a protected branch, a rule or a hook): let git's "
                    f"credentials push {self.ref} and {self.lock_ref}")
        elif "permission" in low or "denied" in low or "403" in low:
            hint = "git's credentials may not push to origin"
        else:
            hint = "check origin and git's credentials"
        return StateError(f"{self.location}: {doing}: {reason}; {hint}")

    def _fetch(self, ref: str, into: str) -> str | None:
        """The commit ``ref`` has on origin (fetched into ``into``), or None when absent."""
        proc = self._run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
                         "origin", f"+{ref}:{into}", check=False)
        if proc.returncode != 0:
            if b"couldn't find remote ref" in proc.stderr:
                self._run("update-ref", "-d", into, check=False)
                return None
            raise self._error(f"cannot fetch {ref} from origin", proc)
        return self._run("rev-parse", "--verify", f"{into}^{{commit}}").stdout.decode().strip()

    def _blob(self, commit: str, name: str, limit: int) -> bytes | None:
        size = self._run("cat-file", "-s", f"{commit}:{name}", check=False)
        if size.returncode != 0:
            return None
        if int(size.stdout.strip() or 0) > limit:
            raise StateError(
                f"{self.location}: {name} on {self.branch} is larger than {limit} bytes: not a regsync state"
            )
        return self._run("cat-file", "blob", f"{commit}:{name}").stdout

    def _commit(self, name: str, data: bytes, parent: str | None, message: str) -> str:
        blob = self._run("hash-object", "-w", "--stdin", input=data).stdout.decode().strip()
        tree = self._run("mktree", input=f"100644 blob {blob}\t{name}\n".encode()).stdout.decode().strip()
        args = ["commit-tree", "--no-gpg-sign", tree, "-m", message]  # as regsync: no user key
        if parent:
            args += ["-p", parent]
        return self._run(*args).stdout.decode().strip()

    def _push(self, ref: str, expected: str | None, new: str | None) -> bool:
        """Set (or delete, ``new`` None) ``ref`` on origin if it is still ``expected``
        (absent, for None); False when the lease was lost."""
        spec = f"{new}:{ref}" if new else f":{ref}"
        proc = self._run("push", "--quiet", "--porcelain", "--no-verify",
                         f"--force-with-lease={ref}:{expected or ''}", "origin", spec, check=False)
        if proc.returncode == 0:
            return True
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        if "[rejected]" in out or "stale info" in out or "fetch first" in out or "non-fast-forward" in out:
            return False
        # Two pushes racing for one ref: the loser's update is refused by the remote itself.
        if "(failed to update ref)" in out or "cannot lock ref" in err:
            return False
        raise self._error(f"cannot push {ref} to origin", proc)

    # -- the state ------------------------------------------------------------

    def read(self):
        sha = self._fetch(self.ref, self._seen)
        if sha is None:
            return None, None
        data = self._blob(sha, STATE_FILENAME, 64 * 1024 * 1024)
        if data is None:
            raise StateError(
                f"{self.location}: branch {self.branch} has no {STATE_FILENAME}: it is not a regsync "
                "state branch; choose another branch name"
            )
        try:
            return data.decode("utf-8"), sha
        except UnicodeDecodeError:
            raise StateError(f"{self.location}: {STATE_FILENAME} is not UTF-8 text: not a regsync state") from None

    def write(self, text: str, version):
        commit = self._commit(STATE_FILENAME, text.encode("utf-8"), version, "regsync: state")
        if not self._push(self.ref, version, commit):
            raise StateError(
                f"{self.location}: the state changed underneath (another run pushed to "
                f"{self.branch} since this one read it); nothing was overwritten: run again"
            )
        self._run("update-ref", self._seen, commit, check=False)
        return commit

    # -- the lock -------------------------------------------------------------

    def try_lock(self, info: LockInfo) -> LockInfo | None:
        commit = self._commit(LOCK_FILENAME, info.to_json().encode(), None, f"regsync lock {info.id}")
        for _attempt in range(3):  # a lock released between the push and the read is free
            if self._push(self.lock_ref, None, commit):
                self._lock_sha = commit
                return None
            holder, _ = self._lock()
            if holder is not None:
                return holder
        return LockInfo.from_json(b"")  # taken and released again each time: wait and retry

    def _lock(self):
        sha = self._fetch(self.lock_ref, self._seen_lock)
        if sha is None:
            return None, None
        return LockInfo.from_json(self._blob(sha, LOCK_FILENAME, MAX_LOCK_BYTES) or b""), sha

    def release(self) -> None:
        sha, self._lock_sha = self._lock_sha, None
        if sha is not None and not self._push(self.lock_ref, sha, None):
            raise StateError(
                f"{self.location}: the lock was removed (by `regsync state unlock`?) or replaced "
                "while this run held it; left the ref as it is"
            )

    def current_lock(self) -> LockInfo | None:
        return self._lock()[0]

    def force_unlock(self, lock_id: str) -> None:
        holder, sha = self._lock()
        check_unlock(self.location, holder, lock_id)
        if not self._push(self.lock_ref, sha, None):
            raise StateError(
                f"{self.location}: the lock changed while unlocking; run `regsync state show` and try again"
            )
