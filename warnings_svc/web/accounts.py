"""Accounts: users with one role, bearer tokens, password logins with console sessions, login rate limiting.

Repository functions on an asyncpg connection (so a caller's transaction can span several of them). Only
hashes of secrets reach the database: argon2id (argon2-cffi) for passwords; SHA-256 for bearer tokens and
session ids, which are 256 random bits each, so a fast hash cannot be brute-forced and a lookup stays one
index probe.

Decisions where the issue is silent:

- Names are lower case, 2 to 32 characters of ``a-z 0-9 _ . -`` starting with a letter; login folds the
  name it is given to lower case.
- A session lasts at most `SESSION_LIFETIME` (12 h, a long shift) and ends after `SESSION_IDLE` (2 h)
  without a request. Disabling a user ends their sessions; their tokens are refused while disabled.
- Failed logins are rows of ``svc.login_failure``, so the limit holds across processes: `LoginLimits` (5 per
  name and 20 per client address in 15 minutes by default). While a name or an address is over its limit
  every attempt is refused with `RateLimited`, even with the right password, and refused attempts are not
  counted again (so the lock lifts `window` after the last counted failure). A successful login clears the
  name's failures. Attempts for one name are serialised with an advisory lock, so parallel guesses cannot
  overshoot the per-name limit.
- Unknown names, token-only accounts and disabled users are verified against a dummy hash, so answering
  takes as long as for a real account, and all of them fail with the same `LoginFailed` message.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from warnings_svc.lifecycle.transitions import Actor, Role

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
SCOPES: frozenset[str] = frozenset({"read", "write"})
TOKEN_PREFIX = "wst_"  # recognisable in logs and by secret scanners
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024  # hashing cost is per byte too: refuse megabyte "passwords"
MAX_DISPLAY_NAME_CHARS = 80
MAX_LABEL_CHARS = 80
SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE = timedelta(hours=2)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at / last_used_at are written at most this often
LOGIN_LOCK_CLASS = 0x57A2  # advisory lock class of per-name login serialisation (two-key form)

_HASHER = PasswordHasher()  # argon2id with the library's current (RFC 9106 low-memory) parameters


# ---------------------------------------------------------------------------------------------- errors


class AccountError(Exception):
    """An account operation that cannot be done as asked (bad name, unknown role, duplicate ...); one line."""


class LoginFailed(AccountError):
    """Wrong name or password (or a disabled or token-only account: the message does not say which)."""

    def __init__(self) -> None:
        super().__init__("wrong user name or password")


class RateLimited(AccountError):
    """Too many failed logins for this name or address; `retry_after`: seconds until an attempt counts."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        self.problem_headers = {"Retry-After": str(retry_after)}
        super().__init__(f"too many failed logins; try again in {retry_after} s")


# ---------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class User:
    """An account as the rest of the service sees it (never its secrets)."""

    id: int
    name: str
    role: Role
    display_name: str

    @property
    def actor(self) -> Actor:
        return Actor(self.name, self.role)


@dataclass(frozen=True)
class Session:
    """A console login: whose it is, the CSRF token its forms must carry, and when it ends at the latest."""

    user: User
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class LoginLimits:
    """How many failed logins are allowed per name and per client address within `window`."""

    per_name: int = 5
    per_address: int = 20
    window: timedelta = timedelta(minutes=15)


LOGIN_LIMITS = LoginLimits()


def _user(row: asyncpg.Record) -> User:
    return User(row["id"], row["name"], Role(row["role"]), row["display_name"])


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# ---------------------------------------------------------------------------------------------- users


def check_name(name: str) -> str:
    """`name` if it is a valid user name, else `AccountError`."""
    if not NAME_PATTERN.match(name):
        raise AccountError(
            f"user name {name[:40]!r} is not allowed: 2 to 32 characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter"
        )
    return name


def check_role(role: str) -> Role:
    """The `Role` named `role`, else `AccountError` listing the roles."""
    try:
        return Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(Role)}") from None


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, sorted, when they are a non-empty subset of read and write; else `AccountError`."""
    wanted = set(scopes)
    if not wanted or not wanted <= SCOPES:
        raise AccountError(f"token scopes must be some of {', '.join(sorted(SCOPES))}, got {sorted(wanted)}")
    return sorted(wanted)


def _check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(
            f"a password must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters, "
            f"got {len(password)}"
        )
    return password


async def _hash_password(password: str) -> str:
    # argon2 takes ~0.1 s of CPU and 64 MiB on purpose: never on the event loop.
    return await asyncio.to_thread(_HASHER.hash, password)


async def create_user(
    conn: asyncpg.Connection,
    name: str,
    role: str | Role,
    *,
    password: str | None = None,
    display_name: str = "",
) -> tuple[User, str]:
    """Create a user and a first bearer token (scopes read and write); returns both.

    Without `password` the account is token-only. `AccountError` for a bad name, role, password or display
    name, and for a name already taken.
    """
    check_name(name)
    role = check_role(role)
    if len(display_name) > MAX_DISPLAY_NAME_CHARS:
        raise AccountError(f"display name longer than {MAX_DISPLAY_NAME_CHARS} characters")
    password_hash = await _hash_password(_check_password(password)) if password is not None else None
    async with conn.transaction():
        try:
            row = await conn.fetchrow(
                """INSERT INTO svc.app_user (name, role, display_name, password_hash) VALUES ($1, $2, $3, $4)
                   RETURNING id, name, role, display_name""",
                name,
                role.value,
                display_name,
                password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise AccountError(f"user {name!r} exists already") from None
        user = _user(row)
        token = await _insert_token(conn, user.id, ["read", "write"], "")
    log.info("user created", extra={"user": name, "role": role.value})
    return user, token


async def get_user(conn: asyncpg.Connection, name: str) -> User:
    """The user called `name` (disabled or not); `AccountError` when there is none."""
    row = await conn.fetchrow("SELECT id, name, role, display_name FROM svc.app_user WHERE name = $1", name)
    if row is None:
        raise AccountError(f"no user named {name[:40]!r}")
    return _user(row)


async def list_users(conn: asyncpg.Connection) -> list[dict[str, object]]:
    """Every user by name, with whether it can log in and how many live tokens it has (never a hash)."""
    rows = await conn.fetch(
        """SELECT u.name, u.role, u.display_name, u.disabled, u.password_hash IS NOT NULL AS password,
                  u.created_at, count(t.id) FILTER (WHERE t.revoked_at IS NULL) AS tokens,
                  max(t.last_used_at) AS token_last_used_at
           FROM svc.app_user u LEFT JOIN svc.api_token t ON t.user_id = u.id
           GROUP BY u.id ORDER BY u.name"""
    )
    return [dict(r) for r in rows]


async def set_password(conn: asyncpg.Connection, name: str, password: str | None) -> None:
    """Set (or with None remove) a user's password. Their console sessions end; tokens stay valid."""
    password_hash = await _hash_password(_check_password(password)) if password is not None else None
    async with conn.transaction():
        user = await get_user(conn, name)
        await conn.execute("UPDATE svc.app_user SET password_hash = $2 WHERE id = $1", user.id, password_hash)
        await conn.execute("DELETE FROM svc.web_session WHERE user_id = $1", user.id)


async def set_disabled(conn: asyncpg.Connection, name: str, disabled: bool = True) -> None:
    """Disable (or enable again) a user. Disabling ends their sessions; tokens are refused while disabled."""
    async with conn.transaction():
        user = await get_user(conn, name)
        await conn.execute("UPDATE svc.app_user SET disabled = $2 WHERE id = $1", user.id, disabled)
        if disabled:
            await conn.execute("DELETE FROM svc.web_session WHERE user_id = $1", user.id)


# ---------------------------------------------------------------------------------------------- tokens


async def _insert_token(conn: asyncpg.Connection, user_id: int, scopes: list[str], label: str) -> str:
    token = _new_token()
    await conn.execute(
        "INSERT INTO svc.api_token (user_id, token_sha256, scopes, label) VALUES ($1, $2, $3, $4)",
        user_id,
        _sha256(token),
        scopes,
        label,
    )
    return token


async def issue_token(
    conn: asyncpg.Connection, name: str, *, scopes: Iterable[str] = ("read", "write"), label: str = ""
) -> str:
    """A new bearer token for user `name`; the only time the token is seen (only its hash is stored)."""
    checked = check_scopes(scopes)
    if len(label) > MAX_LABEL_CHARS:
        raise AccountError(f"token label longer than {MAX_LABEL_CHARS} characters")
    user = await get_user(conn, name)
    return await _insert_token(conn, user.id, checked, label)


async def revoke_token(conn: asyncpg.Connection, token: str) -> bool:
    """Revoke a token for good; False when no live token matches."""
    status = await conn.execute(
        "UPDATE svc.api_token SET revoked_at = now() WHERE token_sha256 = $1 AND revoked_at IS NULL",
        _sha256(token),
    )
    return status == "UPDATE 1"


async def authenticate_token(conn: asyncpg.Connection, token: str) -> tuple[User, frozenset[str]] | None:
    """The user a bearer token belongs to and its scopes; None if unknown, revoked or the user is disabled."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = await conn.fetchrow(
        """SELECT t.id AS token_id, t.scopes, t.last_used_at,
                  t.last_used_at IS NULL OR t.last_used_at < now() - $2::interval AS stale,
                  u.id, u.name, u.role, u.display_name
           FROM svc.api_token t JOIN svc.app_user u ON u.id = t.user_id
           WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND NOT u.disabled""",
        _sha256(token),
        TOUCH_EVERY,
    )
    if row is None:
        return None
    if row["stale"]:  # most requests of a busy client: no second round trip (the UPDATE re-checks the age)
        await conn.execute(
            """UPDATE svc.api_token SET last_used_at = now()
               WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - $2::interval)""",
            row["token_id"],
            TOUCH_EVERY,
        )
    return _user(row), frozenset(row["scopes"])


# ---------------------------------------------------------------------------------------------- logins


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, verified for unknown names so they take as long as real ones."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def _retry_after(
    conn: asyncpg.Connection, column: str, value: str, limit: int, window: timedelta
) -> int | None:
    """Seconds until `value` (a name or an address) is under its limit again; None when it is now."""
    # The limit-th most recent failure in the window: once it ages out of the window, one more try counts.
    seconds = await conn.fetchval(
        f"""SELECT ceil(extract(epoch FROM at + $2::interval - now()))::int FROM svc.login_failure
            WHERE {column} = $1 AND at > now() - $2::interval ORDER BY at DESC OFFSET $3 - 1 LIMIT 1""",
        value,
        window,
        limit,
    )
    return None if seconds is None else max(1, seconds)


async def login(
    conn: asyncpg.Connection,
    name: str,
    password: str,
    *,
    remote_address: str = "",
    limits: LoginLimits = LOGIN_LIMITS,
) -> tuple[str, Session]:
    """Check a password and start a console session: returns the session id (for the cookie) and the session.

    `RateLimited` while the name or the address has too many recent failures (whatever the password);
    `LoginFailed` for a wrong name or password, which is counted. A hash made with older argon2 parameters is
    replaced on success.
    """
    name = name.strip().lower()[:64]
    failed = False
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOGIN_LOCK_CLASS, name)
        waits = [await _retry_after(conn, "name", name, limits.per_name, limits.window)]
        if remote_address:
            waits.append(
                await _retry_after(conn, "remote_address", remote_address, limits.per_address, limits.window)
            )
        if any(w is not None for w in waits):
            retry_after = max(w for w in waits if w is not None)
            log.warning("login refused: rate limited", extra={"user": name, "remote": remote_address})
            raise RateLimited(retry_after)
        row = await conn.fetchrow(
            "SELECT id, name, role, display_name, password_hash, disabled FROM svc.app_user WHERE name = $1",
            name,
        )
        stored = row["password_hash"] if row is not None and not row["disabled"] else None
        ok = len(password) <= MAX_PASSWORD_CHARS and await asyncio.to_thread(_verify, stored, password)
        if not ok:
            await conn.execute(
                "INSERT INTO svc.login_failure (name, remote_address) VALUES ($1, $2)", name, remote_address
            )
            await conn.execute("DELETE FROM svc.login_failure WHERE at < now() - $1::interval", limits.window)
            failed = True  # raised after the commit, so the failure is counted
        else:
            assert row is not None and stored is not None
            user = _user(row)
            if _HASHER.check_needs_rehash(stored):
                await conn.execute(
                    "UPDATE svc.app_user SET password_hash = $2 WHERE id = $1",
                    user.id,
                    await _hash_password(password),
                )
            await conn.execute("DELETE FROM svc.login_failure WHERE name = $1", name)
            session_id, session = await start_session(conn, user)
    if failed:
        log.warning("login failed", extra={"user": name, "remote": remote_address})
        raise LoginFailed
    log.info("login", extra={"user": name, "remote": remote_address})
    return session_id, session


# ---------------------------------------------------------------------------------------------- sessions


async def start_session(conn: asyncpg.Connection, user: User) -> tuple[str, Session]:
    """A new session for `user` (whose password was checked): its id, only ever in the cookie, and itself."""
    await conn.execute(
        "DELETE FROM svc.web_session WHERE expires_at < now() OR last_seen_at < now() - $1::interval",
        SESSION_IDLE,
    )
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires_at = await conn.fetchval(
        """INSERT INTO svc.web_session (id_sha256, user_id, csrf_token, expires_at)
           VALUES ($1, $2, $3, now() + $4::interval) RETURNING expires_at""",
        _sha256(session_id),
        user.id,
        csrf,
        SESSION_LIFETIME,
    )
    return session_id, Session(user, csrf, expires_at)


async def find_session(conn: asyncpg.Connection, session_id: str) -> Session | None:
    """The live session with this id (and marks it used); None when unknown, expired, idle or disabled."""
    row = await conn.fetchrow(
        """SELECT s.csrf_token, s.expires_at, s.last_seen_at < now() - $2::interval AS stale,
                  u.id, u.name, u.role, u.display_name
           FROM svc.web_session s JOIN svc.app_user u ON u.id = s.user_id
           WHERE s.id_sha256 = $1 AND s.expires_at > now() AND s.last_seen_at > now() - $3::interval
             AND NOT u.disabled""",
        _sha256(session_id),
        TOUCH_EVERY,
        SESSION_IDLE,
    )
    if row is None:
        return None
    if row["stale"]:
        await conn.execute(
            "UPDATE svc.web_session SET last_seen_at = now() WHERE id_sha256 = $1", _sha256(session_id)
        )
    return Session(_user(row), row["csrf_token"], row["expires_at"])


async def end_session(conn: asyncpg.Connection, session_id: str) -> None:
    """Log out: forget the session (a no-op when it is already gone)."""
    await conn.execute("DELETE FROM svc.web_session WHERE id_sha256 = $1", _sha256(session_id))
