"""The operations view in a real headless Chromium: a live warning's delivery per channel and its coverage plot,
kept up to date by the page's polling as receipts arrive, and the escalation banner's "apply" button.

The service runs in a thread of this process (the production app factory on a real pool and a fresh, built
database), so that until the coverage API's apply endpoint (helper "watch": ``POST /api/v1/warnings/{id}/
escalations/{escalation_id}/apply``) is part of the app, a stand-in with its contract (200 with the row, 409
when not proposed) is added to this instance only. Once ``warnings_svc.coverage.escalation`` exists, the real
endpoint answers and the stand-in is not added.

With WARNINGS_SCREENSHOTS=DIR set, the page is photographed into DIR/console-operations.png, e.g.
``WARNINGS_SCREENSHOTS=docs/img .venv/bin/pytest tests/browser/test_operations_browser.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
import pytest
from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_console_browser import screenshot
from tests.factories_app import service
from tests.factories_db import fresh_database
from tests.integration.test_console_operations import add_escalation, add_series, live_warning_with_deliveries
from warnings_svc.web.accounts import create_user
from warnings_svc.web.appkeys import POOL
from warnings_svc.web.auth import USER
from warnings_svc.web.events import EVENT_HUB

PASSWORD = "correct horse battery"
WAIT_SECONDS = 20  # a page, a poll of the panel (every 5 s), an action
START_SECONDS = 60
APPLY_PATH = "/api/v1/warnings/{id}/escalations/{escalation_id}/apply"
HAS_ESCALATION_API = importlib.util.find_spec("warnings_svc.coverage.escalation") is not None


async def stand_in_apply(request: web.Request) -> web.Response:
    """The coverage API's apply, as its contract says, for this test only (see the module's docstring)."""
    user = request[USER]
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(
            """UPDATE svc.coverage_escalation SET state = 'applied', decided_by = $3, decided_at = now()
               WHERE id = $2 AND warning_id = $1 AND state = 'proposed'
               RETURNING id, checkpoint_min, step, action, state, coverage, decided_by""",
            int(request.match_info["id"]),
            int(request.match_info["escalation_id"]),
            user.name,
        )
    if row is None:
        return web.json_response({"title": "Conflict", "status": 409, "code": "not_proposed"}, status=409)
    return web.json_response(dict(row))


@dataclass
class ThreadedService:
    """The service on a free loopback port, served from a thread's own event loop (Selenium blocks ours)."""

    base_url: str = ""
    database_url: str = ""


@pytest.fixture(scope="module")
def ops_server(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedService]:
    folder = tmp_path_factory.mktemp("ops-server")
    server = ThreadedService()
    ready, failed = threading.Event(), []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def run() -> None:
        try:
            async with fresh_database(pg_server_url, built=True) as url:
                routes = [] if HAS_ESCALATION_API else [web.post(APPLY_PATH, stand_in_apply)]
                async with service(url, folder, routes=routes) as client:
                    assert await client.app[EVENT_HUB].wait_listening(10)
                    server.database_url = url
                    server.base_url = str(client.make_url("")).rstrip("/")
                    ready.set()
                    await stop.wait()
        except BaseException as e:  # the test fails with it instead of waiting
            failed.append(e)
            ready.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(START_SECONDS), "the service did not start"
    if failed:
        raise failed[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


def in_database(server: ThreadedService, work: object) -> object:
    """Run `work(conn)` (a coroutine function) on a connection of this thread's own."""

    async def go() -> object:
        conn = await asyncpg.connect(server.database_url)
        try:
            return await work(conn)  # type: ignore[operator]
        finally:
            await conn.close()

    return asyncio.run(go())


def log_in(driver: WebDriver, server: ThreadedService, name: str, next_path: str) -> None:
    driver.get(f"{server.base_url}/console/login?next={quote(next_path, safe='/')}")
    driver.delete_all_cookies()
    driver.get(f"{server.base_url}/console/login?next={quote(next_path, safe='/')}")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, WAIT_SECONDS).until(lambda d: urlsplit(d.current_url).path == next_path)


def cell(driver: WebDriver, warning_id: int, column: str) -> str:
    # read in one script: a poll may replace the panel between a find and a read
    return driver.execute_script(
        "const c = document.querySelector(arguments[0]); return c ? c.textContent.trim() : null;",
        f'#ops-{warning_id} tr[data-channel="sms/sms"] td[data-col="{column}"]',
    )


def test_the_operations_page_follows_a_live_warning_and_applies_an_escalation_step(
    chrome: WebDriver, ops_server: ThreadedService
) -> None:
    async def seed(conn: asyncpg.Connection) -> tuple[int, int, str]:
        v = await live_warning_with_deliveries(conn)
        await add_series(conn, v, [(0, 0.0), (2, 0.15), (5, 0.31), (10, 0.42)])
        escalation_id = await add_escalation(conn, v)
        user, _ = await create_user(conn, "duty-ops", "operations", password=PASSWORD, display_name="值班员")
        return v.warning_id, escalation_id, user.name

    warning_id, escalation_id, name = in_database(ops_server, seed)  # type: ignore[misc]
    log_in(chrome, ops_server, name, "/console/operations")
    panel = chrome.find_element(By.ID, f"ops-{warning_id}")
    assert cell(chrome, warning_id, "delivered") == "2" and cell(chrome, warning_id, "dead") == "1"
    # the plot: the series and the figure now, and the target line
    points = panel.find_element(By.CSS_SELECTOR, ".coverage-plot polyline.public-line").get_attribute(
        "points"
    )
    assert len(points.split()) == 5
    target = panel.find_element(By.CSS_SELECTOR, ".coverage-plot line.target-line")
    assert target.get_attribute("y1") == target.get_attribute("y2") == "17.2"  # 95 % of the height

    # receipts come in: the panel follows without a reload
    async def deliver(conn: asyncpg.Connection) -> None:
        await conn.execute(
            """UPDATE svc.delivery SET state = 'delivered', final_at = now()
               WHERE warning_id = $1 AND state = 'sent'""",
            warning_id,
        )

    chrome.execute_script("window.notReloaded = true;")
    in_database(ops_server, deliver)
    WebDriverWait(chrome, WAIT_SECONDS, poll_frequency=0.3).until(
        lambda d: cell(d, warning_id, "delivered") == "3", message="the panel did not follow the receipts"
    )
    assert chrome.execute_script("return window.notReloaded === true;")
    assert cell(chrome, warning_id, "sent") == "0"

    if os.environ.get("WARNINGS_SCREENSHOTS"):
        chrome.set_window_size(1280, 1000)
        screenshot(chrome, Path(os.environ["WARNINGS_SCREENSHOTS"]) / "console-operations.png")
        chrome.set_window_size(1400, 1000)

    # one click applies the proposed step: the banner goes, the step shows as applied
    chrome.find_element(By.CSS_SELECTOR, f'button[data-apply="{escalation_id}"]').click()
    WebDriverWait(chrome, WAIT_SECONDS, poll_frequency=0.3).until(
        lambda d: d.execute_script(
            "return document.querySelector(arguments[0]) === null"
            " && document.querySelector(arguments[1])?.dataset.state === 'applied';",
            f'[data-escalation="{escalation_id}"]',
            f'[data-escalation-row="{escalation_id}"]',
        ),
        message="the escalation step was not applied",
    )

    async def decided(conn: asyncpg.Connection) -> tuple[str, str]:
        row = await conn.fetchrow(
            "SELECT state, decided_by FROM svc.coverage_escalation WHERE id = $1", escalation_id
        )
        return row["state"], row["decided_by"]

    assert in_database(ops_server, decided) == ("applied", name)
