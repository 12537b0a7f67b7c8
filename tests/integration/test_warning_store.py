"""The warning lifecycle in the database: every action one transaction, with its audit entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from lxml import etree

from risk_zoning.store import region_units
from tests.factories_db import fresh_database
from warnings_svc.documents.cap import validate_cap
from warnings_svc.documents.gbt import validate_gbt
from warnings_svc.lifecycle import audit_log
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action, Actor, LifecycleError, Role
from warnings_svc.settings import Settings

WANG = Actor("wang", Role.forecaster)
LI = Actor("li", Role.approver)
ZHAO = Actor("zhao", Role.approver)
NOW = datetime(2026, 7, 9, 8, 0, tzinfo=UTC)
CTX = ws.Issuing.from_settings(Settings())


@pytest.fixture(scope="module")
async def db_url(pg_server_url):
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture
async def conn(db_url):
    c = await asyncpg.connect(db_url)
    try:
        yield c
    finally:
        await c.close()


async def _draft(conn, level="orange", areas=("150302", "150304"), exercise=False):
    return await ws.create(
        conn,
        CTX,
        WANG,
        hazard="heat",
        level=level,
        onset=NOW + timedelta(hours=3),
        expires=NOW + timedelta(hours=30),
        content=ws.Content(areas=areas),
        exercise=exercise,
        now=NOW,
    )


async def _issued(conn, **kw):
    v = await _draft(conn, **kw)
    await ws.act(conn, CTX, WANG, v.warning_id, Action.submit, now=NOW)
    return await ws.act(
        conn, CTX, LI, v.warning_id, Action.approve, now=NOW + timedelta(minutes=5), reason="ok"
    )


async def test_draft_submit_approve_issues_valid_documents(conn):
    v = await _issued(conn)
    assert v.state.status == "issued" and v.state.approved_by == "li" and v.state.approval_comment == "ok"
    assert v.identifier.startswith("15030041600000_") and v.sent is not None
    row = await conn.fetchrow(
        "SELECT cap_xml, gbt_xml, rendered FROM svc.warning_version WHERE warning_id = $1", v.warning_id
    )
    validate_cap(row["cap_xml"])
    validate_gbt(row["gbt_xml"])
    cap = etree.fromstring(row["cap_xml"])
    ns = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
    assert cap.findtext("c:identifier", namespaces=ns) == v.identifier
    assert cap.findtext("c:info/c:severity", namespaces=ns) == "Severe"
    assert [g.text for g in cap.findall("c:info[1]/c:area/c:geocode/c:value", namespaces=ns)] == [
        "150302000000",
        "150304000000",
    ]
    face = await conn.fetchrow(
        "SELECT status, level, current_version FROM svc.warning WHERE id = $1", v.warning_id
    )
    assert tuple(face) == ("issued", "orange", 1)


async def test_self_approval_of_orange_is_refused_and_leaves_nothing(conn):
    v = await _draft(conn)
    await ws.act(conn, CTX, WANG, v.warning_id, Action.submit, now=NOW)
    before = await conn.fetchval("SELECT count(*) FROM svc.audit_log")
    author_as_approver = Actor("wang", Role.approver)
    with pytest.raises(LifecycleError) as e:
        await ws.act(conn, CTX, author_as_approver, v.warning_id, Action.approve, now=NOW)
    assert e.value.code == "self_approval"
    assert await conn.fetchval("SELECT count(*) FROM svc.audit_log") == before
    status = await conn.fetchval("SELECT status FROM svc.warning_version WHERE warning_id = $1", v.warning_id)
    assert status == "pending_approval"


async def test_update_supersedes_and_references_the_first_issue(conn):
    v1 = await _issued(conn)
    draft = await ws.start_update(
        conn, CTX, WANG, v1.warning_id, {"level": "red"}, now=NOW + timedelta(hours=1)
    )
    assert draft.state.msg_type == "Update" and draft.state.references == (f"{v1.warning_id}/1",)
    # the issued version stays public while the Update is drafted
    assert await conn.fetchval("SELECT level FROM svc.warning WHERE id = $1", v1.warning_id) == "orange"
    await ws.act(conn, CTX, WANG, v1.warning_id, Action.submit, now=NOW + timedelta(hours=1))
    v2 = await ws.act(conn, CTX, ZHAO, v1.warning_id, Action.approve, now=NOW + timedelta(hours=1, minutes=2))
    all_versions = await ws.versions(conn, v1.warning_id)
    assert [str(x.state.status) for x in all_versions] == ["updated", "issued"]
    cap = await conn.fetchval(
        "SELECT cap_xml FROM svc.warning_version WHERE warning_id = $1 AND version = 2", v1.warning_id
    )
    assert v1.identifier.encode() in cap and b"<msgType>Update</msgType>" in cap
    assert await conn.fetchval("SELECT level FROM svc.warning WHERE id = $1", v1.warning_id) == "red"
    assert v2.sent > v1.sent


async def test_cancel_and_expire(conn):
    v1 = await _issued(conn, level="yellow")
    await ws.start_cancel(conn, CTX, WANG, v1.warning_id, note="高温已结束", now=NOW + timedelta(hours=2))
    await ws.act(conn, CTX, WANG, v1.warning_id, Action.submit, now=NOW + timedelta(hours=2))
    v2 = await ws.act(conn, CTX, LI, v1.warning_id, Action.approve, now=NOW + timedelta(hours=2))
    assert v2.state.msg_type == "Cancel"
    assert await conn.fetchval("SELECT status FROM svc.warning WHERE id = $1", v1.warning_id) == "cancelled"
    v3 = await _issued(conn, level="yellow")
    expired = await ws.expire_due(conn, CTX, now=NOW + timedelta(hours=31))
    assert v3.warning_id in expired
    assert await conn.fetchval("SELECT status FROM svc.warning WHERE id = $1", v3.warning_id) == "expired"


async def test_issued_version_is_immutable(conn):
    v = await _issued(conn, level="yellow")
    with pytest.raises(LifecycleError) as e:
        await ws.edit(conn, CTX, WANG, v.warning_id, {"level": "orange"}, now=NOW)
    assert e.value.code == "immutable"


async def test_bad_area_names_the_field(conn):
    with pytest.raises(ws.StoreError) as e:
        await _draft(conn, areas=("999999",))
    assert e.value.field == "areas" and "999999" in str(e.value)


async def test_short_admin_codes_are_padded_to_geocodes(conn):
    v = await _draft(conn, areas=("150302", "150304011"))
    assert v.content.areas == ("150302000000", "150304011000")


async def test_return_needs_reason_and_edit_after_return(conn):
    v = await _draft(conn)
    await ws.act(conn, CTX, WANG, v.warning_id, Action.submit, now=NOW)
    with pytest.raises(LifecycleError):
        await ws.act(conn, CTX, LI, v.warning_id, Action.return_for_edit, now=NOW)
    r = await ws.act(conn, CTX, LI, v.warning_id, Action.return_for_edit, now=NOW, reason="区域过大")
    assert r.state.status == "returned" and r.state.return_reason == "区域过大"
    e = await ws.edit(conn, CTX, WANG, v.warning_id, {"areas": ["150302"]}, now=NOW)
    assert e.state.status == "draft" and e.content.areas == ("150302000000",)


async def test_audit_chain_verifies_and_refuses_tampering(conn):
    await _issued(conn, level="yellow")
    result = await audit_log.verify_log(conn)
    assert result.ok and result.count >= 3
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await conn.execute("UPDATE svc.audit_log SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await conn.execute("DELETE FROM svc.audit_log")


async def test_exercise_flag_carries_into_cap_status(conn):
    v = await _issued(conn, level="yellow", exercise=True)
    cap = await conn.fetchval("SELECT cap_xml FROM svc.warning_version WHERE warning_id = $1", v.warning_id)
    assert b"<status>Exercise</status>" in cap


async def test_preview_counts_sms_segments(conn):
    v = await _draft(conn)
    units = await region_units(conn, "wuhai")
    p = ws.preview(CTX, v, units, now=NOW)
    assert p["zh-CN"]["headline"].startswith("乌海市气象台发布高温橙色预警")
    assert p["zh-CN"]["sms_full_segments"] >= 1 and p["zh-CN"]["budget_problems"] == []


async def test_signing_keys_from_settings_sign_every_issued_message(conn, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.factories_keys import key_and_certificate
    from warnings_svc.documents.cap import verify_cap
    from warnings_svc.settings import WarningSettings

    key_pem, cert_pem = key_and_certificate(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    (tmp_path / "k.pem").write_bytes(key_pem)
    (tmp_path / "c.pem").write_bytes(cert_pem)
    settings = Settings(
        warnings=WarningSettings(signing_key_file=tmp_path / "k.pem", signing_cert_file=tmp_path / "c.pem")
    )
    signed_ctx = ws.Issuing.from_settings(settings)
    v = await ws.create(
        conn,
        signed_ctx,
        WANG,
        hazard="frost",
        level="blue",
        onset=NOW,
        expires=NOW + timedelta(hours=20),
        content=ws.Content(areas=("150303",)),
        now=NOW,
    )
    await ws.act(conn, signed_ctx, WANG, v.warning_id, Action.submit, now=NOW)
    await ws.act(conn, signed_ctx, LI, v.warning_id, Action.approve, now=NOW)
    cap = await conn.fetchval("SELECT cap_xml FROM svc.warning_version WHERE warning_id = $1", v.warning_id)
    verify_cap(cap, cert_pem)
    validate_cap(cap)


def test_a_missing_key_file_is_a_settings_error_naming_it(tmp_path):
    from warnings_svc.settings import SettingsError, WarningSettings

    settings = Settings(
        warnings=WarningSettings(signing_key_file=tmp_path / "nope.pem", signing_cert_file=tmp_path / "c.pem")
    )
    with pytest.raises(SettingsError, match="signing_key_file"):
        ws.Issuing.from_settings(settings)


async def test_after_a_discarded_update_draft_the_issued_version_can_still_be_updated(conn):
    v1 = await _issued(conn)
    draft = await ws.start_update(conn, CTX, WANG, v1.warning_id, {"level": "red"}, now=NOW)
    await ws.act(conn, CTX, WANG, v1.warning_id, Action.discard, now=NOW)
    again = await ws.start_update(conn, CTX, WANG, v1.warning_id, {"level": "yellow"}, now=NOW)
    assert again.state.version == draft.state.version + 1 == 3
    assert again.state.references == (f"{v1.warning_id}/2", f"{v1.warning_id}/1")  # the replaced one last
    await ws.act(conn, CTX, WANG, v1.warning_id, Action.submit, now=NOW)
    v3 = await ws.act(conn, CTX, LI, v1.warning_id, Action.approve, now=NOW + timedelta(minutes=1))
    assert [str(v.state.status) for v in await ws.versions(conn, v1.warning_id)] == [
        "updated",
        "discarded",
        "issued",
    ]
    cap = await conn.fetchval(
        "SELECT cap_xml FROM svc.warning_version WHERE warning_id = $1 AND version = 3", v1.warning_id
    )
    assert v1.identifier.encode() in cap and v3.state.level == "yellow"


async def test_a_cancelled_warning_cannot_be_updated_or_cancelled_again(conn):
    v1 = await _issued(conn, level="yellow")
    await ws.start_cancel(conn, CTX, WANG, v1.warning_id, note="", now=NOW)
    await ws.act(conn, CTX, WANG, v1.warning_id, Action.submit, now=NOW)
    await ws.act(conn, CTX, LI, v1.warning_id, Action.approve, now=NOW + timedelta(minutes=1))
    for start in (
        ws.start_update(conn, CTX, WANG, v1.warning_id, {"level": "orange"}, now=NOW),
        ws.start_cancel(conn, CTX, WANG, v1.warning_id, note="", now=NOW),
    ):
        with pytest.raises(ws.StoreError) as e:
            await start
        assert e.value.code == "conflict"


async def test_an_update_of_a_warning_that_expired_meanwhile_is_refused(conn):
    v1 = await _issued(conn, level="yellow")
    await ws.start_update(conn, CTX, WANG, v1.warning_id, {"level": "orange"}, now=NOW)
    await ws.act(conn, CTX, WANG, v1.warning_id, Action.submit, now=NOW)
    await ws.expire_due(conn, CTX, now=NOW + timedelta(hours=31))
    with pytest.raises((ws.StoreError, LifecycleError)):
        await ws.act(conn, CTX, LI, v1.warning_id, Action.approve, now=NOW + timedelta(hours=31))
