"""The first page in a real headless Chromium: it renders, its four risk maps load, English works, and it
fetches nothing from anywhere but the service itself."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from risk_zoning import HAZARDS

MAP_SECONDS = 60  # the first request for each map renders it with matplotlib

# The risk maps are lazy: bring each into view, then report each one's (src, complete, naturalWidth).
MAPS_STATE = """
const maps = [...document.querySelectorAll('.maps img')];
for (const img of maps) img.scrollIntoView({block: 'center'});
return maps.map(img => [img.getAttribute('src'), img.complete, img.naturalWidth]);
"""


def loaded_maps(driver: WebDriver) -> list[str]:
    """The src of each risk map once all four have loaded with a size (fails the test after MAP_SECONDS)."""
    state: list[list] = []

    def all_loaded(d: WebDriver) -> bool:
        state[:] = d.execute_script(MAPS_STATE)
        return len(state) == len(HAZARDS) and all(complete and width > 0 for _, complete, width in state)

    WebDriverWait(driver, MAP_SECONDS, poll_frequency=0.25).until(
        all_loaded, message=f"risk maps did not all load: {state}"
    )
    return [src for src, _, _ in state]


def test_first_page_shows_the_region_and_its_four_risk_maps_in_chinese_then_english(
    chrome: WebDriver, console_server
) -> None:
    chrome.get(console_server.base_url + "/")
    assert chrome.title == "乌海市 · 气象灾害风险区划"
    assert chrome.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh"
    assert chrome.find_element(By.TAG_NAME, "h1").text.startswith("乌海市")
    assert "风险区划图" in chrome.find_element(By.CSS_SELECTOR, "main").text
    assert loaded_maps(chrome) == [f"/maps/risk/{h}.png" for h in HAZARDS]

    chrome.find_element(By.LINK_TEXT, "English").click()
    WebDriverWait(chrome, 10).until(lambda d: d.current_url.endswith("/?lang=en"))
    assert chrome.title == "Wuhai · Meteorological disaster risk zoning"
    assert chrome.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert chrome.find_element(By.TAG_NAME, "h1").text.startswith("Wuhai")
    main = chrome.find_element(By.CSS_SELECTOR, "main").text
    assert "Risk maps" in main and "Assessment units" in main
    assert loaded_maps(chrome) == [f"/maps/risk/{h}.png?lang=en" for h in HAZARDS]
    assert chrome.find_element(By.LINK_TEXT, "中文").get_attribute("href").endswith("/?lang=zh")


def test_first_page_requests_nothing_but_the_service(chrome: WebDriver, console_server) -> None:
    chrome.get(console_server.base_url + "/")
    loaded_maps(chrome)
    urls = chrome.execute_script(
        "return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]"
        ".map(e => e.name)"
    )
    assert any(url.endswith("/static/style.css") for url in urls), urls
    assert len([url for url in urls if "/maps/risk/" in url]) == len(HAZARDS), urls
    foreign = [url for url in urls if not url.startswith(console_server.base_url + "/")]
    assert foreign == []
