"""What the outbox costs per delivery, without any SMSC: CPU of this process and of PostgreSQL, phase by phase.

The phases a fan-out goes through, run one after the other on N registered recipients and a heat warning
issued for the whole city, each timed alone (wall seconds, CPU seconds of this process and of PostgreSQL,
and microseconds of each per delivery):

- ``take``: the fan-out expanded by a sender for itself, as a dispatcher's senders do, chunks of 1,000 (the
  first of 500) written already leased (`expansion.expand_next` with a `Taker`); with ``--through-queue``
  instead, the path of retries and of a dispatcher without endpoints:
- ``expand``: the fan-out expanded into the queue (`expansion.expand_next`, chunks of 10,000, the first of 500);
- ``claim``: every delivery claimed from the queue in batches of 1,000 (`outbox.claim`);
- ``results``: every batch stored as accepted with two message ids, two batches per transaction as the
  dispatcher's results writer does when it is behind (`outbox.record_results`), each with a DELIVRD receipt
  for every part riding with it (receipts that beat their results, the usual case at full speed), which
  settles every delivery;
- ``receipts`` (with ``--receipts-after``, and then the results carry none): a DELIVRD receipt for every
  part, 2,000 per transaction (`outbox.store_receipts`), which settles every delivery.

This is the database's share of `bench/fanout.py`'s real path, measured where no SMPP traffic competes for
the cores: the instrument for making a delivery cheaper to store. The baseline in the same run is a plain
``INSERT ... SELECT`` of N narrow rows (id and state) and three ``UPDATE`` of all of them, the moves a delivery
makes (claimed, sent, settled) in their cheapest form, so PostgreSQL's figure reads as "so many times the
bare minimum a delivery's state changes cost".

    python bench/outbox.py [--recipients 30000] [--receipts-after] [--through-queue] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/ holds the factories
    sys.path.insert(0, str(ROOT))

from machine_facts import CpuClock, cpu_and_memory, postgres_pid  # noqa: E402  (beside this script)

from channels.base import Receipt, ReceiptState, SendOutcome, SendResult  # noqa: E402
from risk_zoning.io.database import DatabaseError, EmbeddedPostgres  # noqa: E402
from risk_zoning.store import region_units  # noqa: E402
from tests.factories_db import fresh_database  # noqa: E402
from tests.factories_dispatch import add_recipients, expand_all, issue  # noqa: E402
from warnings_svc.dissemination import outbox  # noqa: E402
from warnings_svc.dissemination.dispatcher import tune_collector  # noqa: E402
from warnings_svc.dissemination.expansion import Taker, expand_next  # noqa: E402

ENDPOINT = "smsc"
CLAIM_BATCH = 1000
RESULT_BATCHES_PER_TRANSACTION = 2
RECEIPT_BATCH = 2000
SEGMENTS = 2


class Phases:
    """Wall and CPU seconds per phase."""

    def __init__(self, clock: CpuClock, deliveries: int) -> None:
        self.clock = clock
        self.deliveries = deliveries
        self.figures: dict[str, dict[str, float]] = {}

    def start(self) -> tuple[dict[str, float], float]:
        return self.clock.read(), time.perf_counter()

    def stop(self, name: str, started: tuple[dict[str, float], float]) -> None:
        cpu = CpuClock.delta(started[0], self.clock.read())
        figures: dict[str, float] = {"wall_s": round(time.perf_counter() - started[1], 3)}
        for who, seconds in cpu.items():
            figures[f"{who}_s"] = seconds
            figures[f"{who}_us_per_delivery"] = round(seconds / self.deliveries * 1e6, 1)
        self.figures[name] = figures
        print(f"{name:9s} {figures}", file=sys.stderr)


async def baseline(conn: asyncpg.Connection, n: int, phases: Phases) -> None:
    await conn.execute("CREATE TEMP TABLE narrow (id bigint PRIMARY KEY, state text NOT NULL)")
    started = phases.start()
    await conn.execute("INSERT INTO narrow SELECT i, 'pending' FROM generate_series(1, $1) AS i", n)
    for state in ("sending", "sent", "delivered"):  # the three moves a delivery makes
        await conn.execute("UPDATE narrow SET state = $1", state)
    phases.stop("baseline", started)


async def run(
    server_url: str, pgdata: Path, n: int, receipts_with_results: bool, through_queue: bool = False
) -> dict[str, Any]:
    tune_collector()
    phases = Phases(CpuClock(postgres_pid(pgdata), None), n)
    async with fresh_database(server_url, built=True) as url:
        conn = await asyncpg.connect(url)
        try:
            await add_recipients(conn, n)
            await conn.execute("ANALYZE svc.recipient")
            await baseline(conn, n, phases)
            await issue(conn)

            claims: list[tuple[str, list[outbox.Claimed]]] = []
            if through_queue:
                started = phases.start()
                await expand_all(conn)
                phases.stop("expand", started)
                started = phases.start()
                while batch := await outbox.claim(conn, "sms", f"bench#{len(claims)}", CLAIM_BATCH, 600):
                    claims.append((f"bench#{len(claims)}", batch))
                phases.stop("claim", started)
            else:
                units = await region_units(conn, "wuhai")
                started = phases.start()
                while True:
                    taker = Taker("sms", f"bench#{len(claims)}", 600, CLAIM_BATCH)
                    expanded = await expand_next(conn, units, chunk=CLAIM_BATCH, first_chunk=500, taker=taker)
                    if expanded is None:
                        break
                    if expanded.claimed:
                        claims.append((taker.lease, list(expanded.claimed)))
                phases.stop("take", started)

            now = datetime.now(UTC)
            remote = iter(range(n * SEGMENTS))
            sent = []
            for lease, batch in claims:
                results = [
                    SendResult(
                        c.key, SendOutcome.ACCEPTED, tuple(f"{next(remote):08x}" for _ in range(SEGMENTS))
                    )
                    for c in batch
                ]
                riding = (
                    {
                        i: Receipt(i, ReceiptState.DELIVERED, "DELIVRD", "000", now, now, r.key)
                        for r in results
                        for i in r.remote_ids
                    }
                    if receipts_with_results
                    else {}
                )
                sent.append(outbox.SentBatch(lease, batch, results, [0.0] * len(batch), riding))
            started = phases.start()
            for i in range(0, len(sent), RESULT_BATCHES_PER_TRANSACTION):
                await outbox.record_results(conn, ENDPOINT, sent[i : i + RESULT_BATCHES_PER_TRANSACTION], 12)
            phases.stop("results", started)

            if not receipts_with_results:
                receipts = [
                    Receipt(f"{i:08x}", ReceiptState.DELIVERED, "DELIVRD", "000", now, now)
                    for i in range(n * SEGMENTS)
                ]
                started = phases.start()
                for i in range(0, len(receipts), RECEIPT_BATCH):
                    await outbox.store_receipts(conn, ENDPOINT, receipts[i : i + RECEIPT_BATCH])
                phases.stop("receipts", started)

            final = dict(await conn.fetch("SELECT state, count(*) FROM svc.delivery GROUP BY state"))
            if final != {"delivered": n}:
                raise SystemExit(f"outbox: expected {n} delivered, found {final}")
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
    work = [p for p in phases.figures if p != "baseline"]
    total = {
        key: round(sum(phases.figures[p].get(key, 0.0) for p in work), 3)
        for key in ("wall_s", "bench_python_s", "postgres_s")
    }
    base = phases.figures["baseline"]["postgres_s"] or None
    return {
        "machine": cpu_and_memory() | {"postgresql": version},
        "deliveries": n,
        "segments_each": SEGMENTS,
        "receipts": "with results" if receipts_with_results else "after results",
        "first_attempts": "through the queue" if through_queue else "taken at expansion",
        "phases": phases.figures,
        "total": total
        | {
            "bench_python_us_per_delivery": round(total["bench_python_s"] / n * 1e6, 1),
            "postgres_us_per_delivery": round(total["postgres_s"] / n * 1e6, 1),
            "postgres_times_baseline": round(total["postgres_s"] / base, 1) if base else None,
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipients", type=int, default=30_000, help="registered people the warning reaches")
    p.add_argument(
        "--receipts-after",
        action="store_true",
        help="receipts stored after their batches' results (as when they come late), not with them",
    )
    p.add_argument(
        "--through-queue",
        action="store_true",
        help="expand into the queue and claim from it (retries' path) instead of expanding leased",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    if not 1_000 <= args.recipients <= 1_000_000:
        print("outbox: --recipients must be between 1,000 and 1,000,000", file=sys.stderr)
        sys.exit(2)
    folder = Path(tempfile.mkdtemp(prefix="outbox-bench-pg-"))
    embedded = EmbeddedPostgres(folder)
    try:
        server_url = embedded.start()
        result = asyncio.run(
            run(server_url, embedded.pgdata, args.recipients, not args.receipts_after, args.through_queue)
        )
    except DatabaseError as e:
        print(f"outbox: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        t = result["total"]
        print(
            f"outbox, {args.recipients} deliveries of {SEGMENTS} segments: {t['wall_s']} s; per delivery "
            f"{t['bench_python_us_per_delivery']} µs of this process, {t['postgres_us_per_delivery']} µs of "
            f"PostgreSQL ({t['postgres_times_baseline']} x the baseline's narrow rows)"
        )


if __name__ == "__main__":
    main()
