"""`/api/v1/subscriptions` over real HTTP: a department subscribes a webhook and gets its secret once, sees
only its own subscriptions, pauses, resumes, rotates and deletes; every refused request writes nothing; the
SSRF guard refuses private addresses unless allowed."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.factories_app import service, user_tokens
from tests.factories_db import fresh_database
from warnings_svc.settings import PartnerSettings

ALLOW_LOOPBACK = PartnerSettings(allow_private=(ipaddress.ip_network("127.0.0.1/32"),))
HOOK = "http://127.0.0.1:9/hook"  # never called here: only checked


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _rows(db_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch("SELECT * FROM svc.subscription ORDER BY id")
    finally:
        await conn.close()


async def test_a_department_subscribes_a_webhook_and_gets_its_secret_once(db_url, tmp_path: Path) -> None:
    tokens = await user_tokens(
        db_url,
        [("water", "department"), ("health", "department"), ("ops", "operations"), ("fc", "forecaster")],
    )
    async with service(db_url, tmp_path, partners=ALLOW_LOOPBACK) as client:
        body = {"channel": "webhook", "url": HOOK, "hazards": ["rainstorm"], "levels": ["orange", "red"],
                "areas": ["150302"]}  # fmt: skip
        made = await client.post("/api/v1/subscriptions", json=body, headers=_bearer(tokens["water"]))
        assert made.status == 201, await made.text()
        created = await made.json()
        assert created["secret"].startswith("whsec_") and created["areas"] == ["150302000000"]
        assert made.headers["Location"] == f"/api/v1/subscriptions/{created['id']}"
        sid = created["id"]
        # the secret is never shown again
        one = await (
            await client.get(f"/api/v1/subscriptions/{sid}", headers=_bearer(tokens["water"]))
        ).json()
        assert "secret" not in one and one["state"] == "active"
        # a department sees only its own; operations sees all; a forecaster may not read them
        other = await client.get(f"/api/v1/subscriptions/{sid}", headers=_bearer(tokens["health"]))
        assert other.status == 404
        listed = await (await client.get("/api/v1/subscriptions", headers=_bearer(tokens["health"]))).json()
        assert listed == {"subscriptions": []}
        everyone = await (await client.get("/api/v1/subscriptions", headers=_bearer(tokens["ops"]))).json()
        assert [s["id"] for s in everyone["subscriptions"]] == [sid]
        assert (await client.get("/api/v1/subscriptions", headers=_bearer(tokens["fc"]))).status == 403
        refused = await client.post("/api/v1/subscriptions", json=body, headers=_bearer(tokens["fc"]))
        assert refused.status == 403
        # pause, resume (twice: a conflict), rotate (a new secret), delete
        paused = await client.post(f"/api/v1/subscriptions/{sid}/pause", headers=_bearer(tokens["water"]))
        assert (await paused.json())["state"] == "paused"
        again = await client.post(f"/api/v1/subscriptions/{sid}/pause", headers=_bearer(tokens["water"]))
        assert again.status == 409
        resumed = await client.post(f"/api/v1/subscriptions/{sid}/resume", headers=_bearer(tokens["water"]))
        assert (await resumed.json())["state"] == "active"
        rotated = await (
            await client.post(f"/api/v1/subscriptions/{sid}/rotate", headers=_bearer(tokens["water"]))
        ).json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
        assert rotated["rotating_until"] is not None
        (row,) = await _rows(db_url)
        assert row["previous_secret"] == created["secret"] and row["secret"] == rotated["secret"]
        gone = await client.delete(f"/api/v1/subscriptions/{sid}", headers=_bearer(tokens["water"]))
        assert gone.status == 204
        after = await client.get(f"/api/v1/subscriptions/{sid}", headers=_bearer(tokens["water"]))
        assert after.status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "webhook", "url": "ftp://127.0.0.1/x"}, "url"),
        ({"channel": "webhook", "url": "http://user:pw@127.0.0.1/x"}, "url"),
        ({"channel": "webhook", "url": "http://10.0.0.1/x"}, "url"),  # private, not allowed
        ({"channel": "webhook", "url": "http://[::1]/x"}, "url"),
        ({"channel": "webhook", "url": "http://no-such-host.invalid/x"}, "url"),
        ({"channel": "webhook", "email": "a@b.example"}, None),
        ({"channel": "webhook", "url": HOOK, "hazards": ["tornado"]}, "hazards"),
        ({"channel": "webhook", "url": HOOK, "levels": ["purple"]}, "levels"),
        ({"channel": "webhook", "url": HOOK, "areas": ["999999"]}, "areas"),
        ({"channel": "webhook", "url": HOOK, "msg_types": ["Ack"]}, "msg_types"),
        ({"channel": "webhook", "url": HOOK, "department": "water"}, None),  # only admins link one
        ({"channel": "email", "email": "duty@water.example.org"}, "channel"),  # no SMTP configured
        ({"channel": "mqtt", "topic": "water/#"}, None),
        ({"channel": "pigeon", "url": HOOK}, "channel"),
        ({"channel": "webhook", "url": HOOK, "name": "bad\x00name"}, None),
    ],
)
async def test_a_refused_subscription_writes_nothing(db_url, tmp_path: Path, body, field) -> None:
    tokens = await user_tokens(db_url, [("water", "department")])
    async with service(db_url, tmp_path, partners=ALLOW_LOOPBACK) as client:
        answer = await client.post("/api/v1/subscriptions", json=body, headers=_bearer(tokens["water"]))
        assert 400 <= answer.status < 500, await answer.text()
        problem = await answer.json()
        if field is not None:
            assert str(problem.get("field")).split(".")[0] == field, problem
        assert "Traceback" not in await answer.text()
    assert await _rows(db_url) == []


async def test_loopback_is_refused_unless_allowed(db_url, tmp_path: Path) -> None:
    tokens = await user_tokens(db_url, [("water", "department")])
    async with service(db_url, tmp_path) as client:
        for url in (HOOK, "http://localhost:9/hook"):  # a name that resolves to loopback too
            answer = await client.post(
                "/api/v1/subscriptions",
                json={"channel": "webhook", "url": url},
                headers=_bearer(tokens["water"]),
            )
            assert answer.status == 422 and (await answer.json())["field"] == "url"
    assert await _rows(db_url) == []


async def test_who_asks_is_known_before_a_webhook_host_is_resolved(db_url, tmp_path: Path) -> None:
    tokens = await user_tokens(db_url, [("fc", "forecaster")])
    body = {"channel": "webhook", "url": "http://no-such-host.invalid/hook"}
    async with service(db_url, tmp_path, partners=ALLOW_LOOPBACK) as client:
        bogus = await client.post("/api/v1/subscriptions", json=body, headers=_bearer("wst_bogus"))
        assert bogus.status == 401  # not "does not resolve": the server looks nothing up for strangers
        forecaster = await client.post("/api/v1/subscriptions", json=body, headers=_bearer(tokens["fc"]))
        assert forecaster.status == 403
        numeric = {"channel": "webhook", "url": "http://2130706433/hook"}  # 127.0.0.1, as a number
        tokens |= await user_tokens(db_url, [("water", "department")])
        refused = await client.post("/api/v1/subscriptions", json=numeric, headers=_bearer(tokens["water"]))
        assert refused.status == 422 and "four decimal numbers" in (await refused.json())["detail"]
    assert await _rows(db_url) == []


async def test_secrets_are_shown_once_and_tokens_in_urls_only_to_their_owner(db_url, tmp_path: Path) -> None:
    tokens = await user_tokens(db_url, [("water", "department"), ("ops", "operations")])
    water, ops = _bearer(tokens["water"]), _bearer(tokens["ops"])
    async with service(db_url, tmp_path, partners=ALLOW_LOOPBACK) as client:
        body = {"channel": "webhook", "url": "http://127.0.0.1:9/hook?token=abc"}
        first = await client.post(
            "/api/v1/subscriptions", json=body, headers=water | {"Idempotency-Key": "k1"}
        )
        created = await first.json()
        assert created["secret"].startswith("whsec_")
        # a retry with the same key gets the first answer, without the secret: it is never stored
        again = await client.post(
            "/api/v1/subscriptions", json=body, headers=water | {"Idempotency-Key": "k1"}
        )
        replayed = await again.json()
        assert again.headers.get("Idempotent-Replayed") == "true" and replayed["secret"] is None
        assert replayed["id"] == created["id"]
        conn = await asyncpg.connect(db_url)
        try:
            kept = await conn.fetch("SELECT body FROM svc.idempotency_key")
        finally:
            await conn.close()
        assert kept and all(b"whsec_" not in bytes(r["body"] or b"") for r in kept)
        sid = created["id"]
        seen = await (await client.get(f"/api/v1/subscriptions/{sid}", headers=ops)).json()
        assert seen["address"] == "http://127.0.0.1:9/hook?token=***"
        own = await (await client.get(f"/api/v1/subscriptions/{sid}", headers=water)).json()
        assert own["address"] == "http://127.0.0.1:9/hook?token=abc"
        # an email subscription that becomes a webhook gets a secret, shown in that answer
        mail = await client.post(
            "/api/v1/subscriptions", json={"channel": "sms", "phone": "13900001111"}, headers=water
        )
        assert mail.status == 422  # no SMS endpoint configured: refused, as for email without SMTP
        topic = {"channel": "webhook", "url": "http://127.0.0.1:9/other"}
        replaced = await client.put(f"/api/v1/subscriptions/{sid}", json=topic, headers=water)
        assert replaced.status == 200 and "secret" not in await replaced.json()  # it had one already
