"""A state in S3 (or any S3-compatible store) through boto3 and its standard
credential chain and environment (AWS_PROFILE, AWS_REGION, web identity,
AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).

No lock table: the lock is the object ``KEY.lock``, created with ``If-None-Match: *``
and deleted with ``If-Match`` on its ETag; the state is written with ``If-Match`` on
the ETag that was read (``If-None-Match: *`` when there was none), so a write never
replaces a state it did not read. boto3 is imported only here.
"""

from __future__ import annotations

import shlex

from reconciler.errors import StateError
from reconciler.state.location import Location
from reconciler.state.lock import MAX_LOCK_BYTES, LockInfo, check_unlock, clean, unlock_hint

MAX_STATE_BYTES = 64 * 1024 * 1024
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_DENIED = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken",
           "ExpiredToken", "403", "AllAccessDisabled"}


class S3Backend:
    def __init__(self, location: Location):
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StateError(
                f"{location}: an s3:// state needs boto3, which is not installed: "
                "pip install 'regsync[s3]'"
            ) from None
        self.location = location
        self.bucket, self.key = location.bucket, location.path
        self.lock_key = f"{self.key}.lock"
        self._lock_etag: str | None = None
        try:
            self.client = boto3.session.Session().client("s3", config=Config(
                connect_timeout=10, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
            ))
        except Exception as exc:  # noqa: BLE001 - a bad profile or region, named below
            raise self._error("cannot set up the S3 client", exc) from None

    def unlock_hint(self, holder: LockInfo) -> str:
        return unlock_hint(holder, f" --state {shlex.quote(str(self.location))}")

    def _error(self, doing: str, exc: Exception) -> StateError:
        code = _code(exc)
        name = type(exc).__name__
        where = str(self.location)
        if code in ("NoSuchBucket",):
            return StateError(f"{where}: bucket {self.bucket!r} does not exist: create it, or fix the state location")
        if code in _DENIED:
            return StateError(
                f"{where}: {doing}: access denied ({clean(code, 40)}): check the AWS credentials "
                "(AWS_PROFILE, AWS_ACCESS_KEY_ID, web identity) and the bucket's policy"
            )
        if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
            return StateError(
                f"{where}: {doing}: no AWS credentials found: set AWS_PROFILE, or "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use web identity"
            )
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                    "ConnectionClosedError", "ProxyConnectionError"):
            return StateError(
                f"{where}: {doing}: cannot reach the S3 endpoint ({clean(name, 40)}): check the "
                "network and AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL"
            )
        if name == "ProfileNotFound":
            return StateError(f"{where}: {doing}: the AWS profile in AWS_PROFILE does not exist")
        if name in ("NoRegionError",):
            return StateError(f"{where}: {doing}: no AWS region: set AWS_REGION")
        detail = clean(code or name, 60)
        return StateError(f"{where}: {doing}: S3 error {detail}: check the location and the S3 service")

    def _get(self, key: str, limit: int):
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - mapped to one line
            if _code(exc) in ("NoSuchKey", "404"):
                return None, None
            raise self._error(f"cannot read {key}", exc) from None
        try:
            body = answer["Body"].read(limit + 1)
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"cannot read {key}", exc) from None
        if len(body) > limit:
            raise StateError(f"{self.location}: {key} is larger than {limit} bytes: not a regsync state")
        return body, answer.get("ETag")

    # -- the state ------------------------------------------------------------

    def read(self):
        body, etag = self._get(self.key, MAX_STATE_BYTES)
        if body is None:
            return None, None
        try:
            return body.decode("utf-8"), etag
        except UnicodeDecodeError:
            raise StateError(f"{self.location}: the state is not UTF-8 text: not a regsync state") from None

    def write(self, text: str, version):
        condition = {"IfMatch": version} if version else {"IfNoneMatch": "*"}
        try:
            answer = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=text.encode("utf-8"),
                ContentType="application/json", **condition,
            )
        except Exception as exc:  # noqa: BLE001
            # AWS answers 404 to If-Match on a key that is gone; SeaweedFS answers 412
            if _code(exc) in _CONFLICT or (version and _code(exc) in ("NoSuchKey", "404")):
                raise StateError(
                    f"{self.location}: the state changed underneath (another run wrote it since "
                    "this one read it); nothing was overwritten: run again"
                ) from None
            raise self._error("cannot write the state", exc) from None
        return answer.get("ETag")

    # -- the lock -------------------------------------------------------------

    def try_lock(self, info: LockInfo) -> LockInfo | None:
        for _attempt in range(3):  # a lock released between the create and the read is free
            try:
                answer = self.client.put_object(
                    Bucket=self.bucket, Key=self.lock_key, Body=info.to_json().encode(),
                    ContentType="application/json", IfNoneMatch="*",
                )
            except Exception as exc:  # noqa: BLE001
                if _code(exc) not in _CONFLICT:
                    raise self._error("cannot take the lock", exc) from None
                holder, _ = self._lock()
                if holder is not None:
                    return holder
                continue
            self._lock_etag = answer.get("ETag")
            return None
        return LockInfo.from_json(b"")  # taken and released again each time: wait and retry

    def _lock(self):
        body, etag = self._get(self.lock_key, MAX_LOCK_BYTES)
        return (LockInfo.from_json(body), etag) if body is not None else (None, None)

    def release(self) -> None:
        etag, self._lock_etag = self._lock_etag, None
        if etag is None:
            return
        self._delete_lock(etag)

    def _delete_lock(self, etag: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.lock_key, IfMatch=etag)
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in _CONFLICT or _code(exc) in ("NoSuchKey", "404"):
                raise StateError(
                    f"{self.location}: the lock was removed (by `regsync state unlock`?) or replaced "
                    "while this run held it; left the lock object as it is"
                ) from None
            raise self._error("cannot remove the lock", exc) from None

    def current_lock(self) -> LockInfo | None:
        return self._lock()[0]

    def force_unlock(self, lock_id: str) -> None:
        holder, etag = self._lock()
        check_unlock(self.location, holder, lock_id)
        self._delete_lock(etag)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        if code:
            return code
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return str(status or "")
    return ""
