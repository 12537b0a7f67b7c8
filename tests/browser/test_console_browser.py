"""The forecaster console in a real headless Chromium against `warnings-svc serve`: a forecaster drafts a
proposal from an ingested run and submits it, a second person approves it in another browser, and the first
browser sees it issued live (server-sent events, no reload); an author's own orange or red warning cannot be
approved by them, in the page and at the API.

With WARNINGS_SCREENSHOTS=DIR set, the console is photographed (Chinese and English) into DIR, e.g.
``WARNINGS_SCREENSHOTS=docs/img .venv/bin/pytest tests/browser/test_console_browser.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import ConsoleServer, chrome_driver
from warnings_svc.demo.scenarios import write_scenario
from warnings_svc.dissemination.partners.registry import DEMO_SOURCE, import_csv
from warnings_svc.web.accounts import create_user

PASSWORD = "correct horse battery"
WAIT_SECONDS = 20  # a page, an action or a live refresh
SCORE_SECONDS = 180  # the first run a fresh worker process scores


@dataclass(frozen=True)
class People:
    forecaster: str
    approver: str
    chief: str  # a second approver
    token: str  # the forecaster's bearer token, for uploading runs


DEMO_DEPARTMENTS = Path(__file__).parents[2] / "warnings_svc" / "demo" / "departments.csv"


@pytest.fixture(scope="module")
def people(console_server: ConsoleServer) -> People:
    async def make() -> People:
        conn = await asyncpg.connect(console_server.database_url)
        try:
            suffix = uuid.uuid4().hex[:6]
            names = {}
            token = ""
            for role, display in (("forecaster", "王预报员"), ("approver", "李首席"), ("chief", "赵首席")):
                user, tok = await create_user(
                    conn,
                    f"{role}{suffix}",
                    "approver" if role == "chief" else role,
                    password=PASSWORD,
                    display_name=display,
                )
                names[role] = user.name
                token = token or tok
            # the demo's synthetic departments, as the demo seeds them, for the impact preview
            await import_csv(conn, DEMO_DEPARTMENTS, "wuhai", origin=DEMO_SOURCE)
        finally:
            await conn.close()
        return People(names["forecaster"], names["approver"], names["chief"], token)

    return asyncio.run(make())


@pytest.fixture(scope="module")
def second_chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Another browser with a profile (and so cookies) of its own: the second person."""
    with chrome_driver(tmp_path_factory.mktemp("second-chrome-profile")) as driver:
        yield driver


def ingest(server: ConsoleServer, token: str, scenario: str, seed: int = 0) -> list[int]:
    """Write a synthetic scenario starting now and upload it to POST /api/v1/runs; the proposal ids."""
    with tempfile.TemporaryDirectory() as folder:
        (path,) = write_scenario(scenario, folder, "wuhai", reference_time=datetime.now(UTC), seed=seed)
        request = urllib.request.Request(
            f"{server.base_url}/api/v1/runs?filename={quote(path.name)}",
            data=path.read_bytes(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-netcdf"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=SCORE_SECONDS) as response:
            body = json.load(response)
    assert body["proposal_ids"], body
    return body["proposal_ids"]


def open_proposal(
    server: ConsoleServer, token: str, proposal_ids: list[int], level: str | None = None
) -> int:
    """The first of `proposal_ids` that is open, can be drafted, and has `level` (any when None); proposals
    are read with `token` (they need a login)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"{server.base_url}/api/v1/proposals?limit=500", headers={"Authorization": f"Bearer {token}"}
    )
    with opener.open(request, timeout=30) as response:
        proposals = json.load(response)["proposals"]
    return next(
        p["id"]
        for p in proposals
        if p["id"] in proposal_ids and p["action"] != "unchanged" and level in (None, p["level"])
    )


def log_in(driver: WebDriver, server: ConsoleServer, name: str, next_path: str = "/console/") -> None:
    driver.get(f"{server.base_url}/console/login?next={quote(next_path, safe='/')}")
    driver.delete_all_cookies()
    driver.get(f"{server.base_url}/console/login?next={quote(next_path, safe='/')}")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: urlsplit(d.current_url).path == next_path.split("?")[0]
    )


def wait_live(driver: WebDriver) -> None:
    """Until the page's event stream is open."""
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: d.find_element(By.ID, "live-status").get_attribute("data-state") == "live",
        message="the event stream did not open",
    )


def status_of(driver: WebDriver) -> str:
    # read in one script: a live refresh may replace the element between a find and a read
    return driver.execute_script("return document.getElementById('warning-status').dataset.status;")


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').innerText;")


def wait_status(driver: WebDriver, status: str) -> None:
    WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(
        lambda d: status_of(d) == status, message=f"the warning did not become {status}"
    )


def create_draft(driver: WebDriver, proposal_id: int) -> int:
    """Click the proposal's "create draft" button; the id of the warning page it leads to."""
    driver.find_element(By.CSS_SELECTOR, f'button[data-create-draft="{proposal_id}"]').click()
    WebDriverWait(driver, WAIT_SECONDS).until(lambda d: "/console/warnings/" in d.current_url)
    return int(urlsplit(driver.current_url).path.rsplit("/", 1)[1])


def test_a_drafted_proposal_approved_by_a_second_person_shows_as_issued_live_in_the_first_browser(
    chrome: WebDriver, second_chrome: WebDriver, console_server: ConsoleServer, people: People
) -> None:
    orange = open_proposal(
        console_server, people.token, ingest(console_server, people.token, "sandstorm"), "orange"
    )

    log_in(chrome, console_server, people.forecaster)
    assert chrome.title.startswith("预警业务控制台")
    row = chrome.find_element(By.ID, f"proposal-{orange}")
    assert "沙尘暴" in row.text and "橙色" in row.text and "海勃湾区" in row.text
    assert chrome.find_elements(By.CSS_SELECTOR, "#region-map path.proposal-outline")
    warning_id = create_draft(chrome, orange)
    wait_live(chrome)
    assert status_of(chrome) == "draft"
    assert "应急管理局" in text_of(chrome, "impact-responders")
    assert "示例数据/demo data" in text_of(chrome, "live-impact")
    assert not chrome.find_elements(By.ID, "action-approve")  # a forecaster cannot approve
    chrome.find_element(By.ID, "action-submit").click()
    wait_status(chrome, "pending_approval")
    chrome.execute_script("window.__sameDocument = true;")  # gone if the page reloads

    log_in(second_chrome, console_server, people.approver, f"/console/warnings/{warning_id}")
    wait_live(second_chrome)
    approve = second_chrome.find_element(By.ID, "action-approve")
    assert approve.is_enabled()
    second_chrome.find_element(By.ID, "approve-comment").send_keys("同意发布")
    approve.click()
    wait_status(second_chrome, "issued")

    wait_status(chrome, "issued")  # the first browser, by its event stream alone
    assert chrome.execute_script("return window.__sameDocument === true;")
    assert "同意发布" in text_of(chrome, "live-summary")
    timeline = text_of(chrome, "timeline")
    assert people.forecaster in timeline and people.approver in timeline

    chrome.get(f"{console_server.base_url}/console/")
    issued = chrome.find_element(By.ID, "warnings-issued")
    assert f'data-warning="{warning_id}"' in issued.get_attribute("innerHTML")
    assert not chrome.find_elements(By.ID, f"proposal-{orange}")  # accepted, no longer open


def test_the_author_of_an_orange_or_red_warning_cannot_approve_it_in_the_page_or_by_forcing_the_button(
    chrome: WebDriver, console_server: ConsoleServer, people: People
) -> None:
    red = open_proposal(
        console_server, people.token, ingest(console_server, people.token, "rainstorm"), "red"
    )
    log_in(chrome, console_server, people.chief)
    warning_id = create_draft(chrome, red)
    wait_live(chrome)
    chrome.find_element(By.ID, "action-submit").click()
    wait_status(chrome, "pending_approval")

    assert chrome.execute_script("return document.getElementById('action-approve').disabled;")
    note = text_of(chrome, "two-person-note")
    assert "双人规则" in note and "红色" in note

    # forced: enable the button and click it in one go (a live refresh must not swap it in between)
    chrome.execute_script(
        "const b = document.getElementById('action-approve'); b.disabled = false; b.click();"
    )
    problem_js = "return document.querySelector('form[data-action=\"approve\"] [data-problem]');"
    WebDriverWait(chrome, WAIT_SECONDS).until(lambda d: d.execute_script(problem_js).is_displayed())
    problem = chrome.execute_script(problem_js)
    assert "second person must approve" in problem.text and "approver" in problem.text
    assert problem.get_attribute("data-code") == "self_approval"
    chrome.refresh()
    wait_status(chrome, "pending_approval")
    assert f"/console/warnings/{warning_id}" in chrome.current_url


def test_the_edit_form_names_the_field_the_api_refuses(
    chrome: WebDriver, console_server: ConsoleServer, people: People
) -> None:
    # a run of its own (another seed), so that its proposals are open whatever ran before
    proposal = open_proposal(
        console_server, people.token, ingest(console_server, people.token, "sandstorm", seed=7)
    )
    log_in(chrome, console_server, people.forecaster)
    create_draft(chrome, proposal)
    wait_live(chrome)
    for box in chrome.find_elements(By.CSS_SELECTOR, '#edit-form input[name="areas"]:checked'):
        box.click()
    chrome.find_element(By.ID, "edit-save").click()
    problem = chrome.find_element(By.CSS_SELECTOR, "#edit-form [data-problem]")
    WebDriverWait(chrome, WAIT_SECONDS).until(lambda d: problem.is_displayed())
    assert problem.get_attribute("data-field-name") == "areas"
    areas = chrome.find_element(By.CSS_SELECTOR, '#edit-form [data-field="areas"]')
    assert "invalid" in areas.get_attribute("class")
    assert areas.find_element(By.CLASS_NAME, "field-problem").text


def screenshot(driver: WebDriver, path: Path) -> None:
    """The whole page, not only the window."""
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight];"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.skipif(not os.environ.get("WARNINGS_SCREENSHOTS"), reason="set WARNINGS_SCREENSHOTS=DIR")
def test_screenshots_of_the_console_in_chinese_and_english(
    chrome: WebDriver, console_server: ConsoleServer, people: People
) -> None:
    folder = Path(os.environ["WARNINGS_SCREENSHOTS"])
    log_in(chrome, console_server, people.approver)
    wait_live(chrome)
    links = chrome.find_elements(By.CSS_SELECTOR, "#warnings-pending a.card-title")
    warning_url = links[0].get_attribute("href") if links else None
    for lang in ("zh", "en"):
        chrome.get(f"{console_server.base_url}/console/?lang={lang}")
        wait_live(chrome)
        screenshot(chrome, folder / f"console-{lang}.png")
        if warning_url:
            chrome.get(f"{warning_url.split('?')[0]}?lang={lang}")
            wait_live(chrome)
            screenshot(chrome, folder / f"console-warning-{lang}.png")
