"""Accounts against a real PostgreSQL: users, tokens, password logins, sessions and the login rate limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from argon2 import PasswordHasher

from risk_zoning.io.database import upgrade
from warnings_svc.database import MIGRATIONS
from warnings_svc.lifecycle.transitions import Actor, Role
from warnings_svc.web.accounts import (
    TOKEN_PREFIX,
    AccountError,
    LoginFailed,
    LoginLimits,
    RateLimited,
    authenticate_token,
    create_user,
    end_session,
    find_session,
    issue_token,
    list_users,
    login,
    revoke_token,
    set_disabled,
    set_password,
)

PASSWORD = "correct horse battery"


@pytest.fixture
async def db(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A fresh database with every migration applied."""
    await upgrade(conn, MIGRATIONS)
    yield conn


# ---------------------------------------------------------------------------------------------- users


async def test_a_new_user_comes_with_a_read_write_token_that_authenticates_as_them(
    db: asyncpg.Connection,
) -> None:
    user, token = await create_user(db, "li.wei", "forecaster", display_name="李伟")
    assert (user.name, user.role, user.display_name) == ("li.wei", Role.forecaster, "李伟")
    assert user.actor == Actor("li.wei", Role.forecaster)
    assert token.startswith(TOKEN_PREFIX) and len(token) > len(TOKEN_PREFIX) + 40
    assert await authenticate_token(db, token) == (user, frozenset({"read", "write"}))


@pytest.mark.parametrize("role", list(Role))
async def test_every_role_can_be_given(db: asyncpg.Connection, role: Role) -> None:
    user, _ = await create_user(db, f"user-{role.value}", role.value)
    assert user.role is role


async def test_a_taken_name_is_refused_in_one_line(db: asyncpg.Connection) -> None:
    await create_user(db, "wang", "approver")
    with pytest.raises(AccountError, match=r"^user 'wang' exists already$"):
        await create_user(db, "wang", "forecaster")


async def test_an_unknown_role_is_refused_naming_the_roles(db: asyncpg.Connection) -> None:
    with pytest.raises(AccountError, match="unknown role 'boss'; roles: forecaster, approver"):
        await create_user(db, "zhang", "boss")
    assert await db.fetchval("SELECT count(*) FROM svc.app_user") == 0


@pytest.mark.parametrize("name", ["", "a", "Li", "1abc", "li wei", "li@wei", "x" * 33, "<script>", "ümlaut"])
async def test_a_bad_name_is_refused(db: asyncpg.Connection, name: str) -> None:
    with pytest.raises(AccountError, match="is not allowed"):
        await create_user(db, name, "forecaster")


async def test_the_database_refuses_a_bad_name_or_role_even_past_the_python_checks(
    db: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO svc.app_user (name, role) VALUES ('Bad Name', 'forecaster')")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO svc.app_user (name, role) VALUES ('good', 'boss')")


async def test_a_short_password_is_refused(db: asyncpg.Connection) -> None:
    with pytest.raises(AccountError, match="10 to 1024 characters"):
        await create_user(db, "zhao", "forecaster", password="short")


async def test_the_user_list_shows_accounts_but_never_a_hash(db: asyncpg.Connection) -> None:
    await create_user(db, "b-user", "department", password=PASSWORD)
    await create_user(db, "a-user", "admin")
    users = await list_users(db)
    assert [(u["name"], u["role"], u["password"], u["tokens"]) for u in users] == [
        ("a-user", "admin", False, 1),
        ("b-user", "department", True, 1),
    ]
    assert not any("argon2" in str(v) for u in users for v in u.values())


# ---------------------------------------------------------------------------------------------- tokens


async def test_only_hashes_of_tokens_are_stored(db: asyncpg.Connection) -> None:
    _, first = await create_user(db, "sun", "operations")
    second = await issue_token(db, "sun", scopes=["read"], label="dashboard")
    dump = "\n".join(str(dict(r)) for r in await db.fetch("SELECT * FROM svc.api_token"))
    for token in (first, second):
        assert token not in dump
        assert token[len(TOKEN_PREFIX) :] not in dump


async def test_a_read_only_token_has_only_the_read_scope(db: asyncpg.Connection) -> None:
    user, _ = await create_user(db, "qian", "department")
    token = await issue_token(db, "qian", scopes=("read",))
    assert await authenticate_token(db, token) == (user, frozenset({"read"}))


@pytest.mark.parametrize("scopes", [(), ("admin",), ("read", "delete")])
async def test_a_token_with_unknown_or_no_scopes_is_refused(
    db: asyncpg.Connection, scopes: tuple[str, ...]
) -> None:
    await create_user(db, "zhou", "forecaster")
    with pytest.raises(AccountError, match="scopes"):
        await issue_token(db, "zhou", scopes=scopes)


async def test_a_token_for_an_unknown_user_is_refused(db: asyncpg.Connection) -> None:
    with pytest.raises(AccountError, match="no user named 'nobody'"):
        await issue_token(db, "nobody")


async def test_a_revoked_token_no_longer_authenticates_and_others_still_do(db: asyncpg.Connection) -> None:
    user, first = await create_user(db, "wu", "forecaster")
    second = await issue_token(db, "wu")
    assert await revoke_token(db, first) is True
    assert await revoke_token(db, first) is False  # already revoked
    assert await authenticate_token(db, first) is None
    assert await authenticate_token(db, second) == (user, frozenset({"read", "write"}))


@pytest.mark.parametrize("token", ["", "wst_", "wst_not-a-real-token", "Bearer x", "a" * 5000])
async def test_an_unknown_token_does_not_authenticate(db: asyncpg.Connection, token: str) -> None:
    await create_user(db, "zheng", "forecaster")
    assert await authenticate_token(db, token) is None
    assert await revoke_token(db, token) is False


async def test_using_a_token_records_when(db: asyncpg.Connection) -> None:
    _, token = await create_user(db, "feng", "forecaster")
    assert await db.fetchval("SELECT last_used_at FROM svc.api_token") is None
    await authenticate_token(db, token)
    assert await db.fetchval("SELECT last_used_at FROM svc.api_token") is not None


async def test_a_disabled_users_tokens_and_sessions_are_refused_until_enabled_again(
    db: asyncpg.Connection,
) -> None:
    user, token = await create_user(db, "chen", "approver", password=PASSWORD)
    session_id, _ = await login(db, "chen", PASSWORD)
    await set_disabled(db, "chen")
    assert await authenticate_token(db, token) is None
    assert await find_session(db, session_id) is None
    with pytest.raises(LoginFailed):
        await login(db, "chen", PASSWORD)
    await set_disabled(db, "chen", False)
    assert await authenticate_token(db, token) == (user, frozenset({"read", "write"}))


# ---------------------------------------------------------------------------------------------- logins


async def test_the_right_password_starts_a_session_the_id_finds(db: asyncpg.Connection) -> None:
    user, _ = await create_user(db, "li.na", "forecaster", password=PASSWORD)
    session_id, session = await login(db, "Li.Na ", PASSWORD, remote_address="10.0.0.7")
    assert session.user == user
    assert len(session.csrf) >= 40
    found = await find_session(db, session_id)
    assert found is not None and found.user == user and found.csrf == session.csrf
    stored = await db.fetchrow("SELECT * FROM svc.web_session")
    assert session_id not in str(dict(stored))
    await end_session(db, session_id)
    assert await find_session(db, session_id) is None


@pytest.mark.parametrize(
    ("name", "password"),
    [("li.na", "wrong password"), ("nobody", PASSWORD), ("token-only", PASSWORD), ("li.na", "x" * 5000)],
    ids=["wrong password", "unknown user", "token-only account", "absurdly long"],
)
async def test_a_failed_login_says_the_same_whatever_was_wrong_and_is_counted(
    db: asyncpg.Connection, name: str, password: str
) -> None:
    await create_user(db, "li.na", "forecaster", password=PASSWORD)
    await create_user(db, "token-only", "operations")
    with pytest.raises(LoginFailed, match=r"^wrong user name or password$"):
        await login(db, name, password, remote_address="10.0.0.8")
    assert await db.fetchval("SELECT count(*) FROM svc.login_failure WHERE name = $1", name) == 1
    assert await db.fetchval("SELECT count(*) FROM svc.web_session") == 0


async def test_after_too_many_failures_even_the_right_password_is_refused_with_a_retry_after(
    db: asyncpg.Connection,
) -> None:
    await create_user(db, "ma", "forecaster", password=PASSWORD)
    limits = LoginLimits(per_name=3, per_address=100, window=timedelta(minutes=15))
    for _ in range(3):
        with pytest.raises(LoginFailed):
            await login(db, "ma", "not the password", limits=limits)
    with pytest.raises(RateLimited) as refused:
        await login(db, "ma", PASSWORD, limits=limits)
    assert 15 * 60 - 60 < refused.value.retry_after <= 15 * 60
    assert "try again in" in str(refused.value)
    # refused attempts are not counted, so the lock ends when the counted failures age out
    assert await db.fetchval("SELECT count(*) FROM svc.login_failure") == 3
    await db.execute("UPDATE svc.login_failure SET at = at - interval '14 minutes 50 seconds'")
    with pytest.raises(RateLimited) as almost:
        await login(db, "ma", PASSWORD, limits=limits)
    assert almost.value.retry_after <= 10
    await db.execute("UPDATE svc.login_failure SET at = at - interval '1 minute'")
    await login(db, "ma", PASSWORD, limits=limits)
    assert await db.fetchval("SELECT count(*) FROM svc.login_failure WHERE name = 'ma'") == 0


async def test_the_default_limit_is_five_failures_per_name(db: asyncpg.Connection) -> None:
    await create_user(db, "he", "forecaster", password=PASSWORD)
    for _ in range(5):
        with pytest.raises(LoginFailed):
            await login(db, "he", "not the password")
    with pytest.raises(RateLimited):
        await login(db, "he", PASSWORD)


async def test_one_address_trying_many_names_is_limited_too(db: asyncpg.Connection) -> None:
    await create_user(db, "luo", "forecaster", password=PASSWORD)
    limits = LoginLimits(per_name=5, per_address=4)
    for i in range(4):
        with pytest.raises(LoginFailed):
            await login(db, f"guess{i}", "password123", remote_address="203.0.113.9", limits=limits)
    with pytest.raises(RateLimited):
        await login(db, "luo", PASSWORD, remote_address="203.0.113.9", limits=limits)
    # others are not locked out
    await login(db, "luo", PASSWORD, remote_address="198.51.100.1", limits=limits)


async def test_a_hash_made_with_older_parameters_is_replaced_at_login(db: asyncpg.Connection) -> None:
    await create_user(db, "gao", "forecaster")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    await db.execute("UPDATE svc.app_user SET password_hash = $1 WHERE name = 'gao'", weak)
    await login(db, "gao", PASSWORD)
    stored = await db.fetchval("SELECT password_hash FROM svc.app_user WHERE name = 'gao'")
    assert stored != weak and not PasswordHasher().check_needs_rehash(stored)
    await login(db, "gao", PASSWORD)


async def test_setting_a_password_lets_a_token_only_user_log_in_and_ends_old_sessions(
    db: asyncpg.Connection,
) -> None:
    await create_user(db, "lin", "approver")
    await set_password(db, "lin", PASSWORD)
    session_id, _ = await login(db, "lin", PASSWORD)
    await set_password(db, "lin", "another good password")
    assert await find_session(db, session_id) is None
    with pytest.raises(LoginFailed):
        await login(db, "lin", PASSWORD)


async def test_an_expired_or_idle_session_is_not_found(db: asyncpg.Connection) -> None:
    await create_user(db, "xu", "forecaster", password=PASSWORD)
    idle, _ = await login(db, "xu", PASSWORD)
    old, _ = await login(db, "xu", PASSWORD)
    await db.execute(
        "UPDATE svc.web_session SET last_seen_at = now() - interval '3 hours' WHERE id_sha256 = encode(sha256($1::bytea), 'hex')",
        idle.encode(),
    )
    await db.execute(
        """UPDATE svc.web_session SET created_at = now() - interval '13 hours', expires_at = now() - interval '1 hour'
           WHERE id_sha256 = encode(sha256($1::bytea), 'hex')""",
        old.encode(),
    )
    assert await find_session(db, idle) is None
    assert await find_session(db, old) is None
