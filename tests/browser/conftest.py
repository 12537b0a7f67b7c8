"""Browser tests: Debian's headless Chromium, driven by Selenium, against the real service in a subprocess.

Fixtures:
- `chrome` (session): a `selenium.webdriver.Chrome` on /usr/bin/chromium and /usr/bin/chromedriver (from
  `scripts/install-debian-peers`), headless, 1400x1000, zh-CN, with a fresh profile. It never reaches anything but
  127.0.0.1: no Selenium Manager, no proxy, no background or component traffic, and every host name except
  localhost resolves to nothing. Cookies are cleared after each test.
- `console_server` (session, async): `warnings-svc serve` on a free loopback port over a fresh, built database
  on the session's embedded PostgreSQL; yields a `ConsoleServer` (`base_url`, `database_url`, `process`) once
  GET /readyz answers 200.

Tests stay synchronous (`def`): Selenium blocks, and the service runs in its own process. When a test that uses
`chrome` fails, a screenshot and the page source are saved under pytest's tmp folder and named in the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.factories_db import fresh_database
from tests.ports import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
READY_SECONDS = 60.0
STOP_SECONDS = 10.0
# Settings the service takes from the environment over its file: none may leak in from the caller's shell.
SERVICE_ENVIRONMENT = (
    "DATABASE_URL",
    "WARNINGS_SVC_DATA_DIR",
    "WARNINGS_SVC_HOST",
    "WARNINGS_SVC_PORT",
    "WARNINGS_SVC_WEB_WORKERS",
)
LOOPBACK = "127.0.0.1,localhost"
RUN_CLI = "import sys; from warnings_svc.cli import main; sys.exit(main())"


@dataclass(frozen=True)
class ConsoleServer:
    base_url: str  # http://127.0.0.1:PORT, no trailing slash
    database_url: str
    process: subprocess.Popen[bytes]


# ---------------------------------------------------------------------------------------------- browser


def chrome_options(profile: Path) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        # Belt and braces: any host but loopback fails to resolve, whatever some Chromium feature wants.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--lang=zh-CN",
    ):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    return options


@pytest.fixture(scope="session")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Headless Chromium from Debian's packages; fails (never skips) when they are not installed."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed: run scripts/install-debian-peers "
            "(apt-get install chromium chromium-driver fonts-wqy-microhei)",
            pytrace=False,
        )
    with chrome_driver(tmp_path_factory.mktemp("chrome-profile")) as driver:
        yield driver


@contextlib.contextmanager
def chrome_driver(profile: Path) -> Iterator[webdriver.Chrome]:
    """A Chromium with `chrome_options` and its own profile (so cookies of its own), quit on leaving."""
    with pytest.MonkeyPatch.context() as env:
        # Selenium Manager is not even run (the Service names the driver); were it run, it must not download.
        env.setenv("SE_OFFLINE", "true")
        # Selenium talks to chromedriver over HTTP on loopback: never through a proxy from the environment.
        for name in ("no_proxy", "NO_PROXY"):
            env.setenv(name, ",".join(filter(None, (os.environ.get(name), LOOPBACK))))
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=chrome_options(profile)
        )
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="session")
def browser_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots of failed browser tests go."""
    return tmp_path_factory.mktemp("browser-artifacts")


@pytest.fixture(autouse=True)
def _fresh_cookies(request: pytest.FixtureRequest, browser_artifacts: Path) -> Iterator[None]:
    """Each test starts without the previous one's cookies (a login, say); `browser_artifacts` is asked for
    here so that the report hook below finds it."""
    yield
    if "chrome" in request.fixturenames:
        request.getfixturevalue("chrome").execute_cdp_cmd("Network.clearBrowserCookies", {})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    funcargs = getattr(item, "funcargs", {})
    if report.when == "call" and report.failed and "chrome" in funcargs and "browser_artifacts" in funcargs:
        stem = re.sub(r"[^\w.-]+", "_", item.name)
        png, html = (funcargs["browser_artifacts"] / f"{stem}.{suffix}" for suffix in ("png", "html"))
        driver = funcargs["chrome"]
        try:
            driver.save_screenshot(str(png))
            html.write_text(driver.page_source, encoding="utf-8")
            report.sections.append(("browser", f"screenshot {png}, page {html}, at {driver.current_url}"))
        except Exception as e:  # a dead browser must not hide the test's own failure
            report.sections.append(("browser", f"no screenshot: {e!r}"))
    return report


# ---------------------------------------------------------------------------------------------- service


def service_command(config: Path) -> list[str]:
    """`warnings-svc serve --config CONFIG`, by the venv's console script when there is one."""
    script = Path(sys.executable).with_name("warnings-svc")
    program = [str(script)] if script.exists() else [sys.executable, "-c", RUN_CLI]
    return [*program, "serve", "--config", str(config)]


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _status(url: str) -> int | None:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL when it has not exited after STOP_SECONDS."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
async def console_server(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConsoleServer]:
    """The real service in a subprocess, ready (GET /readyz is 200) on a free loopback port."""
    folder = tmp_path_factory.mktemp("console-server")
    async with fresh_database(pg_server_url, built=True) as url:
        port = free_port()
        config = folder / "warnings-svc.toml"
        config.write_text(
            "\n".join(
                f"{key} = {value}"
                for key, value in (
                    ("database_url", _toml_string(url)),
                    ("data_dir", _toml_string(str(folder / "data"))),
                    ("host", '"127.0.0.1"'),
                    ("port", str(port)),
                    ("region", '"wuhai"'),
                    ("log_level", '"INFO"'),
                )
            )
            + "\n",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENVIRONMENT}
        stderr_path = folder / "output.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                service_command(config),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=folder,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_SECONDS
            while (status := await asyncio.to_thread(_status, f"{base_url}/readyz")) != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    problem = (
                        f"exited with status {process.returncode}"
                        if process.poll() is not None
                        else f"not ready after {READY_SECONDS:.0f} s (last /readyz status: {status})"
                    )
                    output = stderr_path.read_text(encoding="utf-8", errors="replace")
                    pytest.fail(
                        f"warnings-svc serve {problem}; its output ({stderr_path}):\n{output[-4000:]}",
                        pytrace=False,
                    )
                await asyncio.sleep(0.2)
            yield ConsoleServer(base_url=base_url, database_url=url, process=process)
        finally:
            await asyncio.to_thread(stop, process)
