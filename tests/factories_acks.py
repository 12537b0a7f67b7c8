"""Departments with duty chains, relayers and quick acknowledgement settings for the acknowledgement tests."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from tests.factories_dispatch import CTX
from warnings_svc.lifecycle import store as ws
from warnings_svc.settings import AcknowledgementSettings

HAIBOWAN = "150302000000"
_phones = itertools.count(int(uuid.uuid4().int % 10_000) * 100_000)


def new_phone() -> str:
    """A phone number no other test of the session uses (E.164, a Chinese mobile)."""
    return f"+86139{next(_phones) % 100_000_000:08d}"


def quick_ctx(minutes: float = 10.0, **changes: Any) -> ws.Issuing:
    """Issuing with acknowledgements for orange and red, `minutes` per step, and a public URL for links."""
    acks = AcknowledgementSettings.model_validate(
        {"deadline_min": {"orange": minutes, "red": minutes}, "check_interval_s": 0.1} | changes
    )
    issuer = CTX.issuer.model_copy(update={"public_url": "https://warnings.example.cn"})
    return dataclasses.replace(CTX, acknowledgements=acks, issuer=issuer)


async def add_department(
    conn: asyncpg.Connection,
    *,
    area: str = HAIBOWAN,
    ranks: Mapping[str, bool] | None = None,
    hazards: tuple[str, ...] = ("heat", "rainstorm", "frost", "sandstorm"),
) -> dict[str, Any]:
    """A department (unique code) with a duty chain; `ranks` says which ranks are filled and whether that
    person has an email (default: all three, the duty contact with an email). Its id, code and people."""
    code = f"t-{uuid.uuid4().hex[:10]}"
    department_id = await conn.fetchval(
        """INSERT INTO svc.department (code, name, sector, area, hazards) VALUES ($1, $2, 'education', $3, $4)
           RETURNING id""",
        code,
        f"测试部门{code[-4:]}",
        area,
        list(hazards),
    )
    people: dict[str, dict[str, Any]] = {}
    for rank, email in (ranks or {"duty": True, "deputy": False, "leader": False}).items():
        phone = new_phone()
        address = f"{rank}.{code}@example.cn" if email else ""
        person_id = await conn.fetchval(
            """INSERT INTO svc.duty_person (department_id, rank, name, phone, email) VALUES ($1, $2, $3, $4, $5)
               RETURNING id""",
            department_id,
            rank,
            f"{rank}-{code[-4:]}",
            phone,
            address,
        )
        people[rank] = {"id": person_id, "phone": phone, "email": address}
    return {"id": department_id, "code": code, "people": people}


async def add_relayer(
    conn: asyncpg.Connection, *, area: str = HAIBOWAN, serves: int | None = 100
) -> dict[str, Any]:
    """A consenting relayer of `area` serving `serves` people."""
    phone = new_phone()
    recipient_id = await conn.fetchval(
        """INSERT INTO svc.recipient (name, phone, areas, roles, consent, consent_basis, consent_at, serves)
           VALUES ('信息员', $1, $2, '{relayer}', true, 'duty', now(), $3) RETURNING id""",
        phone,
        [area],
        serves,
    )
    return {"id": recipient_id, "phone": phone}


async def request_of(conn: asyncpg.Connection, warning_id: int, department_id: int) -> asyncpg.Record:
    """The acknowledgement request of a warning for a department."""
    row = await conn.fetchrow(
        "SELECT * FROM svc.ack_request WHERE warning_id = $1 AND department_id = $2",
        warning_id,
        department_id,
    )
    assert row is not None, "no acknowledgement request"
    return row


async def calls_of(conn: asyncpg.Connection, request_id: int) -> list[asyncpg.Record]:
    """The partner deliveries queued for a request, oldest first."""
    return await conn.fetch(
        "SELECT * FROM svc.partner_delivery WHERE ack_request_id = $1 ORDER BY id", request_id
    )


async def audit_actions(conn: asyncpg.Connection, warning_id: int) -> list[str]:
    """The audit log's actions about a warning, oldest first."""
    rows = await conn.fetch(
        "SELECT action FROM svc.audit_log WHERE subject = $1 ORDER BY seq", f"warning:{warning_id}"
    )
    return [r["action"] for r in rows]


async def audit_of_request(conn: asyncpg.Connection, request_id: int) -> list[str]:
    """The audit log's actions about one acknowledgement request, oldest first."""
    rows = await conn.fetch(
        "SELECT action FROM svc.audit_log WHERE (after->>'request_id')::bigint = $1 ORDER BY seq", request_id
    )
    return [r["action"] for r in rows]
