"""Receipts in the outbox: stored with their message's results when they beat them, or on their own after.

Either way a delivery must end in the same state, a part keeps its final receipt, and no receipt is lost.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from channels.base import Receipt, ReceiptState, SendOutcome, SendResult
from tests.factories_db import fresh_database
from tests.factories_dispatch import add_recipients, expand_all, issue
from warnings_svc.dissemination import outbox

ENDPOINT = "smsc"
CHOICES = (None, *ReceiptState)  # None: no receipt for that part yet
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database with the Wuhai risk database built (the suite's `conn` connects to it)."""
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


async def claimed(conn: asyncpg.Connection, n: int, lease: str = "test#1") -> list[outbox.Claimed]:
    await add_recipients(conn, n)
    await issue(conn)
    assert await expand_all(conn) == n
    batch = await outbox.claim(conn, "sms", lease, n, 60)
    assert len(batch) == n
    return batch


def receipt(remote_id: str, state: ReceiptState, key: str = "") -> Receipt:
    return Receipt(remote_id, state, state.upper(), "000", NOW, NOW, key)


def accepted(batch: list[outbox.Claimed]) -> list[SendResult]:
    """Every delivery accepted in two parts: remote ids "<delivery id>a" and "<delivery id>b"."""
    return [SendResult(c.key, SendOutcome.ACCEPTED, (f"{c.id}a", f"{c.id}b")) for c in batch]


async def delivery_states(conn: asyncpg.Connection) -> dict[int, str]:
    return dict(await conn.fetch("SELECT id, state FROM svc.delivery"))


async def part_states(conn: asyncpg.Connection) -> dict[str, tuple[int | None, str | None]]:
    """Every part's delivery and latest receipt (the map's rows, and the parts of deliveries delivered as their
    results were stored, kept on the delivery's row), each part once."""
    rows = await conn.fetch("SELECT remote_id, delivery_id, state FROM svc.sent_part")
    found = {r["remote_id"]: (r["delivery_id"], r["state"]) for r in rows}
    assert len(found) == len(rows)
    return found


@pytest.mark.parametrize("riding", [True, False], ids=["with the results", "after the results"])
async def test_every_pair_of_part_receipts_settles_the_same_with_the_results_or_after(
    conn, riding: bool
) -> None:
    """`settled_state` (Python, for receipts riding with results) and `_settle` (SQL, for receipts stored
    after) must agree on every combination of two parts' receipts."""
    pairs = list(itertools.product(CHOICES, repeat=2))
    batch = await claimed(conn, len(pairs))
    receipts = {
        f"{c.id}{part}": receipt(f"{c.id}{part}", state, c.key)
        for c, pair in zip(batch, pairs, strict=True)
        for part, state in zip("ab", pair, strict=True)
        if state is not None
    }
    sent = outbox.SentBatch("test#1", batch, accepted(batch), [0.0] * len(batch), receipts if riding else {})
    (counts,) = await outbox.record_results(conn, ENDPOINT, [sent], 12)
    assert counts == outbox.ResultCounts(sent=len(batch))
    if not riding:
        await outbox.store_receipts(conn, ENDPOINT, list(receipts.values()))
    found = await delivery_states(conn)
    expected = {
        c.id: outbox.settled_state(list(pair)) or "sent" for c, pair in zip(batch, pairs, strict=True)
    }
    assert found == expected
    assert set(found.values()) == {"sent", "delivered", "accepted", "failed"}  # the test covers each
    parts = await part_states(conn)
    assert len(parts) == 2 * len(batch) and all(delivery for delivery, _ in parts.values())
    assert {r: s for r, (_, s) in parts.items() if s is not None} == {
        r: str(x.state) for r, x in receipts.items()
    }
    # a delivery delivered as its results are stored keeps its parts on its row; the others are mapped
    in_row = await conn.fetch("SELECT id, remote_ids FROM svc.delivery WHERE remote_ids IS NOT NULL")
    both_delivered = [
        c.id for c, pair in zip(batch, pairs, strict=True) if pair == (ReceiptState.DELIVERED,) * 2
    ]
    assert [(r["id"], r["remote_ids"]) for r in in_row] == (
        [(i, [f"{i}a", f"{i}b"]) for i in both_delivered] if riding else []
    )
    # a settled delivery says when its last part arrived, by the receipts' done date; the others do not
    done = dict(await conn.fetch("SELECT id, done_at FROM svc.delivery"))
    assert {i for i, at in done.items() if at is not None} == {i for i, s in found.items() if s != "sent"}
    assert set(done.values()) == {None, NOW}


async def test_a_part_whose_receipt_came_first_on_its_own_keeps_it_when_its_sibling_rides(conn) -> None:
    (c,) = await claimed(conn, 1)
    await outbox.store_receipts(conn, ENDPOINT, [receipt(f"{c.id}a", ReceiptState.DELIVERED)])
    riding = {f"{c.id}a": receipt(f"{c.id}a", ReceiptState.EN_ROUTE, c.key)}  # an older interim one
    riding[f"{c.id}b"] = receipt(f"{c.id}b", ReceiptState.DELIVERED, c.key)
    sent = outbox.SentBatch("test#1", [c], accepted([c]), [0.0], riding)
    await outbox.record_results(conn, ENDPOINT, [sent], 12)
    assert await delivery_states(conn) == {c.id: "delivered"}
    assert await part_states(conn) == {f"{c.id}a": (c.id, "delivered"), f"{c.id}b": (c.id, "delivered")}


async def test_an_interim_receipt_rides_and_the_final_one_settles_later(conn) -> None:
    (c,) = await claimed(conn, 1)
    riding = {f"{c.id}{p}": receipt(f"{c.id}{p}", ReceiptState.EN_ROUTE, c.key) for p in "ab"}
    await outbox.record_results(
        conn, ENDPOINT, [outbox.SentBatch("test#1", [c], accepted([c]), [0.0], riding)], 12
    )
    assert await delivery_states(conn) == {c.id: "sent"}
    finals = [receipt(f"{c.id}{p}", ReceiptState.DELIVERED) for p in "ab"]
    assert await outbox.store_receipts(conn, ENDPOINT, finals) == 1
    assert await delivery_states(conn) == {c.id: "delivered"}


async def test_receipts_riding_with_a_failed_or_lost_delivery_are_stored_all_the_same(conn) -> None:
    """A message whose first part was accepted and second throttled goes back to the queue, and one whose
    lease ran out belongs to another claim: neither is mapped, but the receipts that rode are kept (the SMSC
    was told they were handled) for the map rows a later attempt or claim writes."""
    throttled, lost = await claimed(conn, 2)
    await conn.execute("UPDATE svc.delivery SET lease_owner = 'someone else#9' WHERE id = $1", lost.id)
    results = [
        SendResult(throttled.key, SendOutcome.TEMPORARY_FAILURE, (f"{throttled.id}a",), "ESME_RTHROTTLED"),
        SendResult(lost.key, SendOutcome.ACCEPTED, (f"{lost.id}a", f"{lost.id}b")),
    ]
    riding = {
        f"{throttled.id}a": receipt(f"{throttled.id}a", ReceiptState.DELIVERED, throttled.key),
        f"{lost.id}a": receipt(f"{lost.id}a", ReceiptState.DELIVERED, lost.key),
    }
    sent = outbox.SentBatch("test#1", [throttled, lost], results, [0.5, 0.0], riding)
    (counts,) = await outbox.record_results(conn, ENDPOINT, [sent], 12)
    assert counts == outbox.ResultCounts(retried=1)  # the lost one is not this claim's to count
    assert await delivery_states(conn) == {throttled.id: "pending", lost.id: "sending"}
    assert await part_states(conn) == {
        f"{throttled.id}a": (None, "delivered"),
        f"{lost.id}a": (None, "delivered"),
    }


async def test_outcomes_and_receipts_rewrite_deliveries_in_place(conn) -> None:
    """Storing outcomes and settling by receipts change no indexed column of a delivery (nor one in an index's
    predicate), so PostgreSQL may keep the new versions on their pages without new index entries (HOT updates),
    as long as a page has room. With `state` or `lease_owner` in an index none of these writes could be."""
    # An automatic ANALYZE of the new rows, should the suite's long-running server get to this database
    # mid-test, holds a snapshot that keeps old versions from being pruned, and then fewer fit: the likeliest
    # reason a full suite run once counted 148 where the test alone counts 292 every time
    await conn.execute("ALTER TABLE svc.delivery SET (autovacuum_enabled = false)")
    batch = await claimed(conn, 200)
    receipts = {f"{c.id}a": receipt(f"{c.id}a", ReceiptState.DELIVERED, c.key) for c in batch}
    sent = outbox.SentBatch("test#1", batch, accepted(batch), [0.0] * len(batch), receipts)
    await outbox.record_results(conn, ENDPOINT, [sent], 12)  # stored sent: the "b" parts are still to come
    await outbox.store_receipts(conn, ENDPOINT, [receipt(f"{c.id}b", ReceiptState.DELIVERED) for c in batch])
    assert set((await delivery_states(conn)).values()) == {"delivered"}
    await conn.execute("SELECT pg_stat_force_next_flush()")
    updates, in_place = await conn.fetchrow(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'svc.delivery'::regclass"
    )
    assert updates == 3 * 200  # claimed, outcome stored, settled
    assert in_place >= 200  # of the last two writes of each row (292 of 400 when written, fillfactor 70)


async def test_batches_stored_together_keep_their_own_leases_and_odd_message_ids_their_map_rows(conn) -> None:
    """One round stores several batches, each under its own lease: a row is changed only under its own, and
    counted for its own batch. A delivery delivered at once keeps its parts on its row; its ids travel joined
    by control characters, so one whose ids could not (one empty, one with a separator) is mapped instead."""
    first, second, odd, other = await claimed(conn, 4)
    await conn.execute(
        "UPDATE svc.delivery SET lease_owner = 'test#2' WHERE id = ANY($1::bigint[])", [second.id, other.id]
    )
    odd_ids = ("", f"{odd.id}\x1eb")

    def sent(lease: str, batch: list[outbox.Claimed], results: list[SendResult]) -> outbox.SentBatch:
        riding = {i: receipt(i, ReceiptState.DELIVERED, r.key) for r in results for i in r.remote_ids}
        return outbox.SentBatch(lease, batch, results, [0.0] * len(batch), riding)

    odd_result = SendResult(odd.key, SendOutcome.ACCEPTED, odd_ids)
    counts = await outbox.record_results(
        conn,
        ENDPOINT,
        [
            sent("test#1", [first, odd, other], [*accepted([first]), odd_result, *accepted([other])]),
            sent("test#2", [second], accepted([second])),
        ],
        12,
    )
    # `other` was leased under test#2, not under the batch that sent it: not this round's to change
    assert counts == [outbox.ResultCounts(sent=2), outbox.ResultCounts(sent=1)]
    assert await delivery_states(conn) == {
        first.id: "delivered",
        second.id: "delivered",
        odd.id: "delivered",
        other.id: "sending",
    }
    rows = await conn.fetch("SELECT id, remote_ids, segments, endpoint FROM svc.delivery ORDER BY id")
    assert {r["id"]: (r["remote_ids"], r["segments"], r["endpoint"]) for r in rows} == {
        first.id: ([f"{first.id}a", f"{first.id}b"], 2, ENDPOINT),
        second.id: ([f"{second.id}a", f"{second.id}b"], 2, ENDPOINT),
        odd.id: (None, 2, ENDPOINT),
        other.id: (None, 0, None),
    }
    parts = await part_states(conn)
    assert {r: parts[r] for r in odd_ids} == {r: (odd.id, "delivered") for r in odd_ids}
    # the receipts of `other` came with a batch that could not store it: kept on their own for its claim
    assert {parts[f"{other.id}{p}"] for p in "ab"} == {(None, "delivered")}
