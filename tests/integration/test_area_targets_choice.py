"""The forecaster chooses the public channels of a warning before approval: the choice is checked, stored with
the version, carried by its Update, honoured by the approval's outbox, and shown and edited in the console."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.factories_app import heat_draft, service
from tests.factories_db import fresh_database
from tests.factories_dispatch import APPROVER, CTX, DISTRICTS, FORECASTER, issue, successor
from warnings_svc.dissemination.area_outbox import AreaTarget
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action
from warnings_svc.settings import AreaSmsTargetSettings, DispatchSettings, MqttTargetSettings
from warnings_svc.web.accounts import create_user

ALL = frozenset({"blue", "yellow", "orange", "red"})
TARGETS = (
    AreaTarget("mqtt", "terminals", ALL),
    AreaTarget("area_sms", "china-mobile", frozenset({"orange", "red"})),
)
CTX_TARGETS = dataclasses.replace(CTX, area_targets=TARGETS)


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


async def _written(conn: asyncpg.Connection, warning_id: int) -> list[tuple[int, str, str]]:
    rows = await conn.fetch(
        "SELECT version, channel, target FROM svc.area_delivery WHERE warning_id = $1 ORDER BY id", warning_id
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def test_the_level_chooses_unless_the_forecaster_did_and_the_choice_follows_the_update(conn) -> None:
    by_level = await issue(conn, level="yellow", areas=(DISTRICTS[0],), ctx=CTX_TARGETS)
    assert await _written(conn, by_level.warning_id) == [(1, "mqtt", "terminals")]  # area SMS: orange and red
    chosen = await _issued_with(conn, ("area_sms/china-mobile",), level="yellow")
    assert await _written(conn, chosen.warning_id) == [(1, "area_sms", "china-mobile")]
    assert chosen.content.area_targets == ("area_sms/china-mobile",)
    assert chosen.to_json()["area_targets"] == ["area_sms/china-mobile"]
    # the Update keeps the choice, even at a level whose defaults differ
    v2 = await successor(conn, chosen.warning_id, {"level": "red"}, ctx=CTX_TARGETS)
    assert v2.content.area_targets == ("area_sms/china-mobile",)
    # none of them: nothing goes out on the area channels; a Cancel goes everywhere something may be out
    silent = await _issued_with(conn, (), level="red")
    assert await _written(conn, silent.warning_id) == []
    await successor(conn, chosen.warning_id, None, ctx=CTX_TARGETS)
    assert await _written(conn, chosen.warning_id) == [
        (1, "area_sms", "china-mobile"), (2, "area_sms", "china-mobile"), (3, "mqtt", "terminals"),
        (3, "area_sms", "china-mobile"),
    ]  # fmt: skip


async def _issued_with(conn: asyncpg.Connection, targets: tuple[str, ...], *, level: str) -> ws.Version:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    onset = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    v = await ws.create(
        conn, CTX_TARGETS, FORECASTER, hazard="heat", level=level, onset=onset, expires=onset + timedelta(hours=24),
        content=ws.Content(areas=(DISTRICTS[1],), area_targets=targets), now=now,
    )  # fmt: skip
    await ws.act(conn, CTX_TARGETS, FORECASTER, v.warning_id, Action.submit, now=now)
    return await ws.act(conn, CTX_TARGETS, APPROVER, v.warning_id, Action.approve, now=datetime.now(UTC))


async def test_an_unknown_target_is_refused_naming_the_field_and_writes_nothing(
    conn, db_url, tmp_path: Path
) -> None:
    dispatch = DispatchSettings(
        embedded=False,
        mqtt=(MqttTargetSettings(name="terminals", url="mqtt://127.0.0.1:1"),),
        area_sms=(
            AreaSmsTargetSettings(
                name="china-mobile", routes=("http://127.0.0.1:1",), handsets_per_person=0.7
            ),
        ),
    )
    name = f"fc{uuid.uuid4().hex[:6]}"
    _, token = await create_user(conn, name, "forecaster", password="a long enough password")
    headers = {"Authorization": f"Bearer {token}"}
    async with service(db_url, tmp_path, dispatch=dispatch) as client:
        before = await conn.fetchval("SELECT count(*) FROM svc.warning_version")
        refused = await client.post(
            "/api/v1/warnings", json=heat_draft(area_targets=["cell_broadcast/nowhere"]), headers=headers
        )
        assert refused.status == 422 and (await refused.json())["field"] == "area_targets"
        assert "cell_broadcast/nowhere" in (await refused.json())["detail"]
        assert await conn.fetchval("SELECT count(*) FROM svc.warning_version") == before
        created = await client.post("/api/v1/warnings", json=heat_draft(), headers=headers)
        assert created.status == 201
        warning_id = (await created.json())["id"]
        assert (await created.json())["area_targets"] is None  # the level's defaults
        edited = await client.patch(
            f"/api/v1/warnings/{warning_id}", json={"area_targets": ["mqtt/terminals"]}, headers=headers
        )
        assert edited.status == 200 and (await edited.json())["area_targets"] == ["mqtt/terminals"]
        bad = await client.patch(
            f"/api/v1/warnings/{warning_id}", json={"area_targets": "mqtt/terminals"}, headers=headers
        )
        assert bad.status == 422
        # the console: a box per target, the chosen one ticked; the panel says which is not chosen
        login = await client.post("/console/login", data={"name": name, "password": "a long enough password"},
                                  allow_redirects=False)  # fmt: skip
        assert login.status == 303
        html = await (await client.get(f"/console/warnings/{warning_id}?lang=en")).text()
        assert 'name="area_targets" value="mqtt/terminals" checked' in html
        assert 'name="area_targets" value="area_sms/china-mobile">' in html
        panel = html[html.index('id="public-channels"') :]
        panel = panel[: panel.index("</table>")]
        assert "not chosen for this warning" in panel and "goes out on approval" in panel
        # back to the defaults of an orange warning: both, and the operator's handsets expected
        await client.patch(
            f"/api/v1/warnings/{warning_id}", json={"area_targets": ["mqtt/terminals", "area_sms/china-mobile"]},
            headers=headers,
        )  # fmt: skip
        html = await (await client.get(f"/console/warnings/{warning_id}?lang=en")).text()
        assert "handsets" in html[html.index('id="public-channels"') :]
