"""The console in a real browser (Debian's chromium through chromedriver), against `otseg run`
enforcing the plant in Mininet on Open vSwitch.

The browser runs in America/New_York, so that a time shown in the operator's timezone differs
from UTC. With OTSEG_SCREENSHOTS=DIR the main pages are saved there (docs/console holds the
ones the documentation shows); otherwise in the test's work folder.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from controller.lab.traffic import Stream
from tests.integration.conftest import Scenario, running

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException, StaleElementReferenceException, TimeoutException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CONDUIT = "hmi-polls-cells"


@pytest.fixture(scope="module")
def plant(workdir: Path) -> Iterator[Scenario]:
    yield from running("plant.yaml", "plant.yaml", workdir, announce=True)


@pytest.fixture(scope="module")
def browser(workdir: Path) -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("OTSEG_REQUIRE_INTEGRATION") == "1":
            pytest.fail("chromium and chromium-driver are missing (scripts/system-setup.sh installs them)")
        pytest.skip("needs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--lang=en-GB"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(
        CHROMEDRIVER, env={**os.environ, "TZ": "America/New_York"}, log_output=str(workdir / "chromedriver.log")))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def shots(workdir: Path) -> Path:
    folder = Path(os.environ.get("OTSEG_SCREENSHOTS") or workdir / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(driver: Any, path: Path) -> None:
    """The page as a person sees it at 1280 wide, down to 1500 px (then back to 1280x800)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height + 140, 800), 1500))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 800)


def console(plant: Scenario, path: str = "") -> str:
    return f"{plant.controller.api_url}/console/{path}"


def wait(driver: Any, condition: Any, seconds: float = 30) -> Any:
    """Until `condition` holds; an element read while the page is replaced (stale) is read again."""
    return WebDriverWait(driver, seconds, poll_frequency=0.5,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(condition)


def sign_in(driver: Any, plant: Scenario) -> None:
    driver.get(console(plant, "signin?next=/console/changes"))
    driver.find_element(By.NAME, "token").send_keys(plant.controller.token())
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, lambda d: "signed in as" in d.find_element(By.TAG_NAME, "header").text)


def severe_logs(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_counters_change_when_traffic_flows(plant: Scenario, browser: Any) -> None:
    browser.get(console(plant, "zones"))
    cell = browser.find_element(By.CSS_SELECTOR, f'td[data-live="conduit:{CONDUIT}"]')
    before = int(cell.text)
    wait(browser, lambda d: d.find_element(By.ID, "live-state").text.startswith("updated"))
    allowed = Stream(plant.lab, "hmi-1", "plc-packer-1", 44818, 1.0, plant.workdir / "browser", rate=200)
    denied = Stream(plant.lab, "plc-packer-2", "hmi-2", 44818, 1.0, plant.workdir / "browser", rate=100)
    allowed.start()
    denied.start()
    sent, refused = allowed.result().sent, denied.result().sent
    # polled from the switches every 5 s, refreshed by the page every 2 s, without a reload
    wait(browser, lambda d: int(d.find_element(By.CSS_SELECTOR, f'td[data-live="conduit:{CONDUIT}"]').text)
         >= before + sent, 30)
    label = browser.find_element(By.CSS_SELECTOR, f'tspan[data-live="conduit:{CONDUIT}"]')
    assert int(label.text) >= before + sent  # the picture's arrow label too
    wait(browser, lambda d: int(d.find_element(
        By.CSS_SELECTOR, 'td[data-live="denied:cell-packaging>supervisory"]').text) >= refused, 30)
    assert severe_logs(browser) == []


def test_every_page_loads_readable_at_1280_with_times_in_the_operator_timezone(plant: Scenario, browser: Any,
                                                                               workdir: Path) -> None:
    browser.get(console(plant))
    assert browser.current_url.endswith("/console/zones")
    folder = shots(workdir)
    for label, heading in (("Zones", "Zones and conduits"), ("Assets", "Assets"), ("Network", "Network"),
                           ("Events", "Events"), ("Changes", "Changes")):
        browser.find_element(By.LINK_TEXT, label).click()
        wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == heading)
        assert browser.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]").text == label
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280, f"{label} scrolls sideways"
        shown = browser.find_element(By.CSS_SELECTOR, "footer time").text
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC-0[45]:00", shown), shown
        screenshot(browser, folder / f"{label.lower()}.png")
    assets = browser.get(console(plant, "assets")) or browser.find_element(By.TAG_NAME, "main").text
    assert "plc-packer-1" in assets and "bound" in assets
    events = browser.get(console(plant, "events?verdict=denied")) or browser.find_element(By.TAG_NAME, "main").text
    assert "plc-packer-2" in events
    browser.find_element(By.LINK_TEXT, "why?").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Why is it allowed or denied?")
    assert "denied" in browser.find_element(By.TAG_NAME, "table").text
    browser.get(console(plant, "network"))
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "td")]
    assert cells.count("protected") == len(plant.description.links) and "ring-2 (0xc) port 11" in cells
    assert severe_logs(browser) == []


def test_an_action_without_the_token_is_refused(plant: Scenario, browser: Any) -> None:
    browser.delete_all_cookies()
    before = plant.controller.status() or {}
    browser.get(console(plant, "changes"))
    form = browser.find_element(By.CSS_SELECTOR, "form[action$='/console/isolations']")
    form.find_element(By.NAME, "target").send_keys("cell-packaging")
    form.find_element(By.NAME, "reason").send_keys("no token")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait(browser, lambda d: "needs an API token" in d.find_element(By.TAG_NAME, "main").text)
    sign_in(browser, plant)
    browser.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.value = 'forged')")
    form = browser.find_element(By.CSS_SELECTOR, "form[action$='/console/isolations']")
    form.find_element(By.NAME, "target").send_keys("cell-packaging")
    form.find_element(By.NAME, "reason").send_keys("forged form")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait(browser, lambda d: "CSRF token is missing or wrong" in d.find_element(By.TAG_NAME, "main").text)
    after = plant.controller.status() or {}
    assert after["overrides"]["isolations"] == [] and after["policy"]["version"] == before["policy"]["version"]


def test_a_bad_policy_shows_its_located_error_and_a_good_one_its_diff_then_goes_in_force(
        plant: Scenario, browser: Any, workdir: Path) -> None:
    sign_in(browser, plant)
    text = Path(plant.policy_path).read_text()
    bad, good = workdir / "bad-plant.yaml", workdir / "good-plant.yaml"
    bad.write_text(text.replace("services: [modbus, enip]", "services: [modbus, enipp]", 1))
    good.write_text(text.replace('reason: "HMIs read and write PLC tags"',
                                 'reason: "HMIs read and write PLC tags (reviewed 2026-12)"', 1))
    version = (plant.controller.status() or {})["policy"]["version"]
    folder = shots(workdir)

    browser.get(console(plant, "changes"))
    browser.find_element(By.NAME, "file").send_keys(str(bad))
    browser.find_element(By.ID, "check-candidate").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Candidate refused"))
    line = next(n for n, l in enumerate(bad.read_text().splitlines(), 1) if "enipp" in l)
    marked = browser.find_element(By.ID, f"line-{line}")
    assert "has-error" in marked.get_attribute("class") and "enipp" in marked.text
    assert "did you mean 'enip'" in browser.find_element(By.CSS_SELECTOR, ".located-error").text
    column = bad.read_text().splitlines()[line - 1].index("enipp") + 1
    browser.find_element(By.LINK_TEXT, f"line {line}, column {column}").click()  # jumps to the line in the text
    wait(browser, lambda d: d.execute_script("return location.hash") == f"#line-{line}")
    top = browser.execute_script(f"return document.getElementById('line-{line}').getBoundingClientRect().top")
    assert browser.execute_script("return window.scrollY") > 0 and -5 <= top < 800, top
    browser.save_screenshot(str(folder / "candidate-error.png"))
    assert (plant.controller.status() or {})["policy"]["version"] == version

    browser.get(console(plant, "changes"))
    browser.find_element(By.NAME, "file").send_keys(str(good))
    browser.find_element(By.ID, "check-candidate").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text.endswith("is valid"))
    added = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "pre.diff .add")]
    assert added == ['+    reason: "HMIs read and write PLC tags (reviewed 2026-12)"']
    screenshot(browser, folder / "candidate-diff.png")
    assert (plant.controller.status() or {})["policy"]["version"] == version  # shown, not applied yet
    browser.find_element(By.ID, "apply-candidate").click()
    try:
        wait(browser, lambda d: "is in force" in d.find_element(By.CSS_SELECTOR, ".notice").text, 60)
    except TimeoutException:
        raise AssertionError(browser.find_element(By.TAG_NAME, "main").text) from None
    now = (plant.controller.status() or {})["policy"]["version"]
    assert now != version and now[:12] in browser.find_element(By.TAG_NAME, "header").text
    history = browser.find_element(By.TAG_NAME, "main").text
    assert "apply" in history and time.strftime("%Y") in history
