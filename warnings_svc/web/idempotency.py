"""`Idempotency-Key` on the write API: a client that lost its connection retries with the same key and gets
the first answer, and the write is not done twice (issue 16; the IETF httpapi Idempotency-Key draft, as
Stripe practises it).

Which requests: POST, PATCH and DELETE under /api/ whose operation takes a JSON body (or none), from a
logged-in user. A key is 1-255 printable ASCII characters (else 400 naming `Idempotency-Key`) and belongs to
its user: another user's same key is another key. Without the header nothing changes. Anonymous requests go
on to their handler (which answers 401). Forecast uploads (`/api/v1/runs`) are streamed to disk and cannot be
hashed before the handler reads them: they ignore the header, and /openapi.json does not offer it there.

What happens:

- First use of a key: the request (method, path, SHA-256 of the body) is recorded "in progress", the
  handler runs, and its answer (status, Content-Type, Location, body) is kept when the status is below 500,
  refusals included (a 403 or 422 answers the same again). A 5xx, or an error no table knows, is not kept:
  the key is released and the client may retry.
- The same key with the same request again: the kept answer, with `Idempotent-Replayed: true`; the handler
  is not called.
- The same key with another method, path or body: 422 ``idempotency_key_reused``.
- The same key while the first request still runs: 409 ``idempotency_key_in_progress``.
- Keys expire after `KEY_LIFETIME`; expired rows are purged as keys are recorded (at most `PURGE_BATCH` at a
  time), and an expired key may be used afresh.

What this cannot promise. The handlers open their own transactions, so the key's record and the handler's
write are not one transaction. If the service dies (or the request is cancelled) between the handler's
commit and the keeping of its answer, the key stays "in progress" with no answer. Such a row older than
`ABANDONED_AFTER` is taken as abandoned and a retry runs the handler again: the write is then done twice if
the first one had committed. (Most writes here are state transitions, which a second run refuses as a
conflict; a second `POST /api/v1/warnings` would create a second draft.) A crash before the handler's
commit leaves nothing done, and the retry after `ABANDONED_AFTER` does it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

import asyncpg
from aiohttp import web

from warnings_svc.web.appkeys import POOL
from warnings_svc.web.auth import USER, settle_pending_token
from warnings_svc.web.errors import one_line, problem_for
from warnings_svc.web.middleware import error_answer
from warnings_svc.web.operations import Operation, operation_of, read_body
from warnings_svc.web.problems import ApiProblem
from warnings_svc.web.write_lane import in_write_lane

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})
# How long a key is remembered (the draft suggests 24 h, as Stripe keeps them).
KEY_LIFETIME = timedelta(hours=24)
# A first request still "in progress" after this long is taken for dead (its process crashed or it was
# cancelled): every write here is done well within it, so a retry may run it again.
ABANDONED_AFTER = timedelta(seconds=60)
# Expired rows deleted at most per key recorded, so no single request pays for a large backlog.
PURGE_BATCH = 100
# The answer's headers kept with it; the rest (request id, cookies) belong to each request.
KEPT_HEADERS = ("Content-Type", "Location")
# A handler whose JSON answer carries a secret shown once names its fields here (`response[UNKEPT_FIELDS] =
# ("secret",)`): the kept answer has them null, so the store never holds the secret.
UNKEPT_FIELDS = web.ResponseKey("idempotency_unkept_fields", tuple)
_KEY_FORM = re.compile(r"^[\x20-\x7e]{1,255}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def takes_idempotency_key(method: str, path: str, declared: Operation | None) -> bool:
    """Whether the operation `declared` for `method` on `path` honours an `Idempotency-Key` (a write under
    /api/ with a JSON body or none; streamed uploads do not)."""
    return (
        method.upper() in WRITE_METHODS
        and path.startswith("/api/")
        and declared is not None
        and declared.body_type == "application/json"
        and not declared.body_media
    )


OPENAPI_PARAMETER = {
    "name": IDEMPOTENCY_KEY,
    "in": "header",
    "required": False,
    "description": "1-255 printable ASCII characters, unique per intended write. A retry with the same key "
    "and the same request gets the first answer (with `Idempotent-Replayed: true`) and does not act twice; "
    "the same key with another request is a 422 (idempotency_key_reused), while the first still runs a "
    f"409 (idempotency_key_in_progress). Keys are remembered for {KEY_LIFETIME.total_seconds() / 3600:g} h.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}
OPENAPI_PROBLEMS = (400, 409, 422)
# Any kept answer (a success or a refusal) may come back as a replay; `REPLAYED` marks it.
OPENAPI_REPLAYED_HEADER = {
    "description": f"`true` when this is the kept first answer to a request with the same {IDEMPOTENCY_KEY} "
    "(the write was not done again); absent on a first answer.",
    "required": False,
    "schema": {"type": "string", "enum": ["true"]},
}


# ---------------------------------------------------------------------------------------------- middleware


@web.middleware
async def idempotent_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a retried write (same user, same `Idempotency-Key`) with its first answer; see the module."""
    offered = request.headers.getall(IDEMPOTENCY_KEY, [])
    if not offered or not takes_idempotency_key(
        request.method, request.path, operation_of(request.match_info.handler)
    ):
        return await handler(request)
    key = _checked_key(offered)
    await settle_pending_token(request)
    user = request.get(USER)
    if user is None:
        return await handler(request)  # its 401; nobody to keep the key for
    fingerprint = Fingerprint(request.method, request.path, hashlib.sha256(await read_body(request)).digest())
    # on the write lane, with the write itself (web.write_lane)
    found = await in_write_lane(request, lambda conn: claim_key(conn, user.id, key, fingerprint))
    if isinstance(found, KeptAnswer):
        return found.response()
    if found is Claim.REUSED:
        raise ApiProblem(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for another request (method, path or body); use a new key",
            IDEMPOTENCY_KEY,
        )
    if found is Claim.IN_PROGRESS:
        raise ApiProblem(
            409,
            "idempotency_key_in_progress",
            "the first request with this Idempotency-Key is still being answered; retry in a moment",
            IDEMPOTENCY_KEY,
        )
    try:
        response = await handler(request)
    except web.HTTPException:
        await _release(request, user.id, key)
        raise
    except Exception as e:
        problem = problem_for(e)
        if problem is None or problem.status >= 500:
            await _release(request, user.id, key)  # not an answer to keep: the client may retry
            raise
        response = error_answer(request, e)  # the refusal, as answer_problems would render it
    answer = KeptAnswer.of(response)
    if answer is None:
        await _release(request, user.id, key)
        return response
    try:
        await in_write_lane(request, lambda conn: keep_answer(conn, user.id, key, answer))
    except DATABASE_LOST as e:
        # the write is done and this is its answer; the key stays "in progress" until ABANDONED_AFTER
        log.warning("could not keep the answer of Idempotency-Key %r: %s", key, one_line(e))
    return response


def _checked_key(offered: list[str]) -> str:
    if len(offered) > 1:
        raise ApiProblem(
            400, "invalid", f"send one {IDEMPOTENCY_KEY} header, not {len(offered)}", IDEMPOTENCY_KEY
        )
    key = offered[0]
    if not _KEY_FORM.match(key):
        raise ApiProblem(
            400,
            "invalid",
            f"the {IDEMPOTENCY_KEY} must be 1 to 255 printable ASCII characters",
            IDEMPOTENCY_KEY,
        )
    return key


async def _release(request: web.Request, user_id: int, key: str) -> None:
    try:
        await in_write_lane(request, lambda conn: release_key(conn, user_id, key))
    except DATABASE_LOST as e:
        # most likely the database is away: released as soon as it is back (`release_keys_later`), so that
        # the client's retry is not told "in progress" for ABANDONED_AFTER
        log.warning("could not release Idempotency-Key %r now, will retry: %s", key, one_line(e))
        request.app[UNRELEASED_KEYS].add((user_id, key))


# What a lost or restarting database raises through asyncpg (a broken connection is an InterfaceError or, in
# the middle of an operation, an InternalClientError).
DATABASE_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
RELEASE_RETRY_SECONDS = 1.0
UNRELEASED_KEYS: web.AppKey[set[tuple[int, str]]] = web.AppKey("unreleased_idempotency_keys")


async def release_keys_later(app: web.Application) -> AsyncIterator[None]:
    """Keys whose release failed (their request failed with the database) are released once it answers
    again, retried every `RELEASE_RETRY_SECONDS` (a `cleanup_ctx`)."""
    unreleased: set[tuple[int, str]] = set()
    app[UNRELEASED_KEYS] = unreleased

    async def retry_forever() -> None:
        while True:
            await asyncio.sleep(RELEASE_RETRY_SECONDS)
            for user_id, key in sorted(unreleased):
                try:
                    async with app[POOL].acquire() as conn:
                        await release_key(conn, user_id, key)
                except DATABASE_LOST:
                    break  # still away: the next round tries again
                unreleased.discard((user_id, key))
                log.info("released Idempotency-Key %r after the database returned", key)

    task = asyncio.create_task(retry_forever(), name="release-idempotency-keys")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------------------------------------- the records


@dataclass(frozen=True)
class Fingerprint:
    """What makes a request the same request: its method, path and the SHA-256 of its body."""

    method: str
    path: str
    body_sha256: bytes


@dataclass(frozen=True)
class KeptAnswer:
    """A first answer as kept for the retries."""

    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def of(cls, response: web.StreamResponse) -> KeptAnswer | None:
        """The answer to keep of `response`; None for a 5xx or a streamed answer (no body to keep)."""
        if response.status >= 500 or not isinstance(response, web.Response):
            return None
        body = response.body
        if body is None:
            body = b""
        if not isinstance(body, bytes):
            return None
        headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
        unkept = response.get(UNKEPT_FIELDS)
        if unkept:  # a secret shown once is never stored, nor shown again by a replay
            document = json.loads(body)
            body = json.dumps(
                document | dict.fromkeys(unkept), ensure_ascii=False, separators=(",", ":")
            ).encode("utf-8")
        return cls(response.status, headers, body)

    def response(self) -> web.Response:
        """The kept answer again, saying it is a replay."""
        return web.Response(status=self.status, body=self.body, headers={**self.headers, REPLAYED: "true"})


class Claim(Enum):
    """What became of an attempt to record a key, when no answer is kept for it."""

    NEW = "new"  # recorded (or taken over from an abandoned first request): run the handler
    REUSED = "reused"  # the key was used for another request
    IN_PROGRESS = "in_progress"  # the first request with it is still running


async def claim_key(
    conn: asyncpg.Connection, user_id: int, key: str, request: Fingerprint
) -> Claim | KeptAnswer:
    """Record `key` of `user_id` for `request` as in progress, or say why not (its kept answer, another
    request's key, a first request still running). Purges up to `PURGE_BATCH` expired keys first."""
    async with conn.transaction():
        await conn.execute(
            """DELETE FROM svc.idempotency_key WHERE ctid = ANY (ARRAY(
                   SELECT ctid FROM svc.idempotency_key WHERE created_at < now() - $1::interval
                   ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))""",
            KEY_LIFETIME,
            PURGE_BATCH,
        )
        # this key's own expired row, should the batch not have reached it
        await conn.execute(
            "DELETE FROM svc.idempotency_key WHERE user_id = $1 AND key = $2 AND created_at < now() - $3::interval",
            user_id,
            key,
            KEY_LIFETIME,
        )
        # a concurrent first use of the same key waits here for the other's commit, then finds its row
        inserted = await conn.fetchval(
            """INSERT INTO svc.idempotency_key (user_id, key, method, path, body_sha256)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, key) DO NOTHING RETURNING true""",
            user_id,
            key,
            request.method,
            request.path,
            request.body_sha256,
        )
        if inserted:
            return Claim.NEW
        row = await conn.fetchrow(
            """SELECT method, path, body_sha256, status, headers, body,
                      created_at < now() - $3::interval AS abandoned
               FROM svc.idempotency_key WHERE user_id = $1 AND key = $2 FOR UPDATE""",
            user_id,
            key,
            ABANDONED_AFTER,
        )
        if row is None:  # released by its first request (a 5xx) since our insert: the client may retry
            return Claim.IN_PROGRESS
        if (row["method"], row["path"], bytes(row["body_sha256"])) != (
            request.method,
            request.path,
            request.body_sha256,
        ):
            return Claim.REUSED
        if row["status"] is not None:
            return KeptAnswer(row["status"], json.loads(row["headers"]), bytes(row["body"]))
        if not row["abandoned"]:
            return Claim.IN_PROGRESS
        await conn.execute(
            "UPDATE svc.idempotency_key SET created_at = now() WHERE user_id = $1 AND key = $2", user_id, key
        )
        log.warning("Idempotency-Key %r: its first request was abandoned; running the retry", key)
        return Claim.NEW


async def keep_answer(conn: asyncpg.Connection, user_id: int, key: str, answer: KeptAnswer) -> None:
    """Keep the first `answer` given with `key` for the retries."""
    await conn.execute(
        """UPDATE svc.idempotency_key SET status = $3, headers = $4::jsonb, body = $5, answered_at = now()
           WHERE user_id = $1 AND key = $2 AND status IS NULL""",
        user_id,
        key,
        answer.status,
        json.dumps(answer.headers),
        answer.body,
    )


async def release_key(conn: asyncpg.Connection, user_id: int, key: str) -> None:
    """Forget a key whose first request had no answer worth keeping (a 5xx): a retry runs afresh."""
    await conn.execute(
        "DELETE FROM svc.idempotency_key WHERE user_id = $1 AND key = $2 AND status IS NULL", user_id, key
    )
