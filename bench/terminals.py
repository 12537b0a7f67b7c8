"""One warning to 10,000 terminals over MQTT: the time until every playback acknowledgement is stored, beside a
bare MQTT publisher and subscriber on the same broker, in the same run.

The broker: Debian's Mosquitto on 127.0.0.1 (as in the tests). The terminals: simulated loudspeakers (real MQTT
clients, `warnings_svc.demo.peers.terminals`) spread over the towns of Wuhai, in `--fleets` processes of
their own, each subscribed to its town's topic; each acknowledges every warning once, at once.

- The ceiling (bare MQTT): one client publishes a message as long as the service's, retained, QoS 1, on
  every town's topic; another, subscribed to `{prefix}/ack/+`, counts the acknowledgements. Time from the
  first publish to the last acknowledgement received.
- The service: a warning for the whole city issued through the store with a `[[dispatch.mqtt]]` target; the
  area dispatcher (running here) puts it out; its adapter takes the acknowledgements and stores them
  (`svc.terminal_ack`, the evidence per town). Time from the start of the approval (drafted and submitted
  before) to the moment the database holds every acknowledgement (polled every 50 ms).

The ratio printed is the ceiling's time over the service's (1.0: as fast as bare MQTT; the target is 0.8).

    python bench/terminals.py [--terminals 10000] [--fleets 2] [--runs 3] [--json]

Loopback only; every wait is bounded. Progress goes to stderr; with ``--json`` stdout holds one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import asyncpg  # noqa: E402

PREFIX = "wuhai"
TARGET = "terminals"
WAIT_S = 120.0


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ the fleet


def fleet_main(url: str, towns: list[str], first: int, count: int) -> None:
    """A fleet process: `count` simulated terminals numbered from `first`, spread over the towns; prints
    "ready" once every one is connected and subscribed, then runs until its stdin closes."""
    from warnings_svc.demo.peers.terminals import SimulatedTerminal, SimulatedTerminals

    terminals = [SimulatedTerminal(f"t{n:05d}", towns[n % len(towns)]) for n in range(first, first + count)]

    async def main() -> None:
        async with SimulatedTerminals(url, PREFIX, terminals) as fleet:
            await fleet.wait_connected(timeout_s=WAIT_S)
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


def start_fleets(url: str, towns: list[str], total: int, fleets: int) -> list[subprocess.Popen[str]]:
    per = -(-total // fleets)
    processes = []
    for i in range(fleets):
        first, count = i * per, min(per, total - i * per)
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--fleet", url, ",".join(towns), str(first), str(count)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
        )
    deadline = time.monotonic() + WAIT_S
    for p in processes:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "ready" or time.monotonic() > deadline:
            raise SystemExit(f"bench/terminals.py: a fleet did not connect (said {line!r})")
    return processes


# ---------------------------------------------------------------------------------------------- the ceiling


async def bare_mqtt(host: str, port: int, towns: list[str], total: int, identifier: str, size: int) -> float:
    """Seconds from the first publish to the `total`-th acknowledgement of `identifier`; the message as long as
    the service's (`size` bytes)."""
    body = json.dumps({"identifier": identifier, "msgType": "Alert", "headline": ""}).encode()
    body = json.dumps(
        {"identifier": identifier, "msgType": "Alert", "headline": "x" * max(0, size - len(body))}
    ).encode()
    seen = 0
    done = asyncio.Event()
    async with aiomqtt.Client(host, port) as counter, aiomqtt.Client(host, port) as publisher:
        await counter.subscribe(f"{PREFIX}/ack/+", qos=1)

        async def count() -> None:
            nonlocal seen
            async for message in counter.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if json.loads(payload).get("identifier") == identifier:
                    seen += 1
                    if seen == total:
                        done.set()
                        return

        counting = asyncio.create_task(count())
        started = time.monotonic()
        for town in towns:
            await publisher.publish(f"{PREFIX}/alerts/{town}", body, qos=1, retain=True)
        await asyncio.wait_for(done.wait(), WAIT_S)
        took = time.monotonic() - started
        counting.cancel()
        for town in towns:  # the service's run starts from empty topics
            await publisher.publish(f"{PREFIX}/alerts/{town}", b"", qos=1, retain=True)
    return took


# ---------------------------------------------------------------------------------------------- the service


async def service_run(url: str, broker_url: str, total: int, level: str, run: int) -> tuple[float, int]:
    """Seconds from the approval's commit to `total` acknowledgements stored, and the bytes of the message
    each terminal got."""
    from channels.mqtt.terminals import MqttTerminalsChannel, alert_message
    from tests.factories_dispatch import APPROVER, CTX, FORECASTER
    from warnings_svc.dissemination.area_dispatch import AreaDispatcher, AreaDispatchOptions
    from warnings_svc.dissemination.area_outbox import AreaTarget, alert_of
    from warnings_svc.lifecycle import store as ws
    from warnings_svc.lifecycle.transitions import Action

    ctx = dataclasses.replace(CTX, area_targets=(AreaTarget("mqtt", TARGET, frozenset({level})),))
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
    # a client id of its own per run: a persistent session would otherwise hold the bare run's acknowledgements
    channel = MqttTerminalsChannel(TARGET, broker_url, PREFIX, client_id=f"bench-service-{run}")
    dispatcher = AreaDispatcher(pool, url, {("mqtt", TARGET): channel}, AreaDispatchOptions(poll_s=1.0))
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        channel.start()
        await asyncio.sleep(1.0)  # connected and listening, as a running service is
        async with pool.acquire() as conn:
            now = datetime.now(UTC)
            onset = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            draft = await ws.create(conn, ctx, FORECASTER, hazard="heat", level=level, onset=onset,
                                    expires=onset + timedelta(hours=24), content=ws.Content(areas=("150300",)),
                                    now=now)  # fmt: skip
            await ws.act(conn, ctx, FORECASTER, draft.warning_id, Action.submit, now=now)
            started = time.monotonic()  # the approval issues it and promises it to the broker
            v = await ws.act(conn, ctx, APPROVER, draft.warning_id, Action.approve, now=datetime.now(UTC))
            deadline = started + WAIT_S
            while time.monotonic() < deadline:
                n = await conn.fetchval(
                    "SELECT count(*) FROM svc.terminal_ack WHERE warning_id = $1", v.warning_id
                )
                if n >= total:
                    took = time.monotonic() - started
                    content = await conn.fetchval(
                        "SELECT content FROM svc.area_delivery WHERE warning_id = $1", v.warning_id
                    )
                    alert = alert_of(
                        json.loads(content), key="", msg_type="Alert", previous_remote_id="", update_number=0
                    )
                    return took, len(json.dumps(alert_message(alert), ensure_ascii=False).encode())
                await asyncio.sleep(0.05)
        raise SystemExit(f"bench/terminals.py: only {n} of {total} acknowledgements stored in {WAIT_S:.0f} s")
    finally:
        stop.set()
        await task
        await pool.close()


async def prepare(url: str, total: int) -> list[str]:
    """The towns, and `total` terminals registered over them (as the fleets number them)."""
    from risk_zoning.io.database import upgrade
    from risk_zoning.store import ensure_built, region_units
    from warnings_svc.database import MIGRATIONS
    from warnings_svc.dissemination.terminals import TerminalRow, register_terminals

    conn = await asyncpg.connect(url)
    try:
        await upgrade(conn, MIGRATIONS)
        await ensure_built(conn, "wuhai", progress=False)
        units = await region_units(conn, "wuhai")
        parents = {u.parent for u in units.values()}
        towns = sorted(code for code in units if code not in parents)
        rows = [
            TerminalRow(
                terminal_id=f"t{n:05d}", kind="loudspeaker", area=towns[n % len(towns)], population_served=50
            )
            for n in range(total)
        ]
        await register_terminals(conn, rows)
        return towns
    finally:
        await conn.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--fleet":
        _, _, url, towns, first, count = sys.argv
        fleet_main(url, towns.split(","), int(first), int(count))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--fleets", type=int, default=2, help="processes of simulated terminals")
    parser.add_argument("--runs", type=int, default=3, help="warnings each way (alternating)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.terminals <= 50_000 or not 1 <= args.fleets <= 16 or not 1 <= args.runs <= 10:
        raise SystemExit("bench/terminals.py: --terminals 1-50000, --fleets 1-16, --runs 1-10")

    from risk_zoning.io.database import EmbeddedPostgres
    from tests.peers.mosquitto_fixture import MosquittoBroker, free_port

    with tempfile.TemporaryDirectory(prefix="bench-terminals-") as folder:
        broker = MosquittoBroker(Path(folder), free_port())
        broker.start()
        server = EmbeddedPostgres(Path(folder) / "pg")
        try:
            server_url = server.start()

            url = server_url  # the bench's own server: its maintenance database holds the service's schema
            towns = asyncio.run(prepare(url, args.terminals))
            say(
                f"{args.terminals} terminals over {len(towns)} towns in {args.fleets} processes; connecting ..."
            )
            started = time.monotonic()
            fleets = start_fleets(broker.url, towns, args.terminals, args.fleets)
            say(f"connected in {time.monotonic() - started:.1f} s")
            bare, served = [], []
            levels = ("red", "orange", "yellow")  # the levels of heat
            try:
                for run in range(args.runs):
                    took, size = asyncio.run(
                        service_run(url, broker.url, args.terminals, levels[run % 3], run)
                    )
                    served.append(took)
                    say(
                        f"run {run + 1}: service   {took:.2f} s (approval to every acknowledgement stored; {size} B)"
                    )
                    bare.append(
                        asyncio.run(
                            bare_mqtt("127.0.0.1", broker.port, towns, args.terminals, f"bare-{run}", size)
                        )
                    )
                    say(f"run {run + 1}: bare MQTT {bare[-1]:.2f} s (the same bytes)")
            finally:
                for p in fleets:
                    if p.stdin:
                        p.stdin.close()
                    p.wait(30)
        finally:
            server.stop()
            broker.stop()
    result = {
        "terminals": args.terminals,
        "towns": len(towns),
        "bare_mqtt_s": [round(b, 3) for b in bare],
        "service_s": [round(s, 3) for s in served],
        "ratio": round(statistics.median(bare) / statistics.median(served), 2),
        "acks_per_s_service": round(args.terminals / statistics.median(served)),
        "target": 0.8,
        "machine": {"cpus": os.cpu_count(), "when": datetime.now(UTC).isoformat(timespec="seconds")},
    }
    say(
        f"median: bare MQTT {statistics.median(bare):.2f} s, service {statistics.median(served):.2f} s, "
        f"ratio {result['ratio']} (target >= 0.8)"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
