"""Radio and TV: the insertion to a simulated newsroom (loopback, labelled a simulator), airing confirmed by the
one-time link to the service, estimated reach stored; a forged link refused; a Cancel carried to the newsroom."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from risk_zoning.store import region_units
from tests.factories_app import service
from tests.factories_db import fresh_database
from tests.factories_dispatch import DISTRICTS, issue, successor, wait_until
from tests.peers.mosquitto_fixture import free_port
from warnings_svc.demo.peers.broadcaster import NewsroomSimulator
from warnings_svc.lifecycle import store as ws
from warnings_svc.settings import (
    DispatchSettings,
    RadioTvTargetSettings,
    Settings,
    SettingsError,
    WarningSettings,
)

TOKEN = "simulator-token"


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


async def test_a_confirmed_airing_is_estimated_reach_and_a_cancel_reaches_the_newsroom(
    conn, db_url, tmp_path: Path
) -> None:
    port = free_port()
    async with NewsroomSimulator(token=TOKEN, airing_delay_s=0.2) as newsroom:
        dispatch = DispatchSettings(
            radio_tv=(RadioTvTargetSettings(name="wuhai-tv", url=newsroom.url, token=TOKEN, audience_share=0.3),),
            poll_s=0.2, lease_s=5, retry_base_s=0.1, retry_cap_s=0.5,
        )  # fmt: skip
        warnings = WarningSettings(public_url=f"http://127.0.0.1:{port}")
        settings = Settings(database_url=db_url, data_dir=tmp_path, dispatch=dispatch, warnings=warnings)
        ctx = ws.Issuing.from_settings(settings)
        async with service(db_url, tmp_path, port=port, dispatch=dispatch, warnings=warnings) as client:
            v = await issue(conn, level="orange", areas=(DISTRICTS[0], DISTRICTS[1]), ctx=ctx)
            await wait_until(lambda: _airing(conn, v.warning_id), 10, "the airing confirmed through the link")
            (insertion,) = newsroom.state.insertions
            assert insertion.identifier == v.identifier and insertion.msg_type == "Alert"
            assert (
                insertion.script
                and insertion.crawl
                and [a.code for a in insertion.areas] == list(DISTRICTS[:2])
            )
            assert insertion.audio_url.endswith(".wav") and insertion.cap_url.endswith(".cap")
            ((link, status),) = newsroom.state.confirmed
            assert status == 200 and link == insertion.confirm_url
            units = await region_units(conn, "wuhai")
            rows = await conn.fetch(
                """SELECT area, measured, targeted, delivered, people, final FROM svc.reach_evidence
                   WHERE warning_id = $1 AND channel = 'radio_tv' ORDER BY area""",
                v.warning_id,
            )
            assert [(r["area"], r["measured"], r["final"]) for r in rows] == [
                (DISTRICTS[0], False, True), (DISTRICTS[1], False, True)
            ]  # fmt: skip
            for r in rows:  # the areas' population times the audience share: an estimate
                assert r["targeted"] == units[r["area"]].population
                assert r["delivered"] == r["people"] == round(units[r["area"]].population * 0.3)
            # confirming again changes nothing; a forged or unknown link is refused and writes nothing
            path = link[link.index("/api/v1/airings/") :]
            again = await client.get(path)
            assert again.status == 200 and (await again.json())["confirmed"] == f"{v.warning_id}-1"
            forged = await client.get(path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB"))
            assert forged.status == 404 and (await forged.json())["field"] == "token"
            assert (await client.get("/api/v1/airings/not-a-token!")).status == 404
            assert await conn.fetchval(
                "SELECT count(*) FROM svc.reach_evidence WHERE warning_id = $1", v.warning_id
            ) == len(rows)
            # a Cancel: the newsroom takes the crawl off
            await successor(conn, v.warning_id, None, ctx=ctx)
            await wait_until(lambda: _cancelled(newsroom), 10, "the Cancel at the newsroom")
            cancel = newsroom.state.insertions[-1]
            assert cancel.msg_type == "Cancel" and cancel.confirm_url != link


async def _airing(conn, warning_id: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM svc.reach_evidence WHERE warning_id = $1 AND channel = 'radio_tv'",
            warning_id,
        )
    )


async def _cancelled(newsroom: NewsroomSimulator) -> bool:
    return any(i.msg_type == "Cancel" for i in newsroom.state.insertions)


async def test_the_newsroom_refusing_is_dead_with_the_reason_and_radio_tv_needs_a_public_url(
    conn, db_url, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match="public_url"):
        from warnings_svc.settings import load_settings

        path = tmp_path / "s.toml"
        path.write_text(
            '[[dispatch.radio_tv]]\nname = "tv"\nurl = "http://127.0.0.1:1/v1/insertions"\naudience_share = 0.3\n',
            encoding="utf-8",
        )
        load_settings(path, {})
    port = free_port()
    async with NewsroomSimulator(token="another-token") as newsroom:  # our token is refused: 401
        dispatch = DispatchSettings(
            radio_tv=(
                RadioTvTargetSettings(name="wuhai-tv", url=newsroom.url, token=TOKEN, audience_share=0.3),
            ),
            poll_s=0.2,
        )
        warnings = WarningSettings(public_url=f"http://127.0.0.1:{port}")
        ctx = ws.Issuing.from_settings(
            Settings(database_url=db_url, data_dir=tmp_path, dispatch=dispatch, warnings=warnings)
        )
        async with service(db_url, tmp_path, port=port, dispatch=dispatch, warnings=warnings):
            v = await issue(conn, level="red", areas=(DISTRICTS[2],), ctx=ctx)
            await wait_until(lambda: _state(conn, v.warning_id, "dead"), 10, "refused for good")
        reason = await conn.fetchval(
            "SELECT reason FROM svc.area_delivery WHERE warning_id = $1", v.warning_id
        )
        assert "HTTP 401" in reason and newsroom.url in reason
        assert json.loads(json.dumps(newsroom.state.refused)) == ["no or wrong bearer token"]


async def _state(conn, warning_id: int, state: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        await conn.fetchval(
            "SELECT state = $2 FROM svc.area_delivery WHERE warning_id = $1", warning_id, state
        )
    )
