"""A real headless Chromium (Debian's ``chromium``, driven through Debian's ``chromium-driver``;
never a downloaded browser) that records every request the pages make and what they log."""

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
# axe-core 4.10.3 (MPL-2.0, npm's axe-core, vendor/axe.LICENSE): for the tests only, never served.
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
# The rules of WCAG 2.1 levels A and AA.
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# Runs axe on the page as it is and reports each violation with the elements it found.
RUN_AXE = """
const [tags, done] = [arguments[0], arguments[arguments.length - 1]];
axe.run(document, { runOnly: { type: "tag", values: tags } }).then(
  (result) => done(result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")),
  }))),
  (error) => done([{ id: "axe failed", help: String(error), nodes: [] }]),
);
"""
CHROMEDRIVER = "/usr/bin/chromedriver"
# Screenshots, kept after the run as test artifacts (README.md shows one of them).
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", "var/test-artifacts")) / "screenshots"
# Schemes a page may use without asking any host.
LOCAL_SCHEMES = ("data:", "blob:", "about:", "chrome-error:")
# What a script shows where it had no value: ``append(null)``, ``${undefined}``.
MISSING_VALUES = re.compile(r"\b(?:null|undefined)\b")
# The texts a page shows, one per text node (the words of two nodes do not run together), but
# for JSON shown as such (a job's spec) and what a person types.
SHOWN_TEXTS = """
const texts = [];
const root = document.querySelector(arguments[0]);
const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  if (!node.parentElement.closest("pre, textarea")) texts.push(node.data);
}
return texts;
"""


class Browser:
    """One Chromium; ``requested`` holds every URL any of its pages asked for."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver
        self.requested: list[str] = []
        self.console: list[dict] = []

    def open(self, url: str) -> None:
        self.driver.get(url)

    def wait_for(self, condition, timeout: float = 30, what: str = "the page"):
        """Poll ``condition(driver)`` until it returns something truthy; fail naming ``what``."""
        try:
            # Pages redraw what they poll: an element read while it is replaced is read again.
            wait = WebDriverWait(
                self.driver,
                timeout,
                poll_frequency=0.1,
                ignored_exceptions=(StaleElementReferenceException,),
            )
            return wait.until(condition)
        except TimeoutException:
            self.screenshot("timeout")
            where = self.driver.current_url
            raise AssertionError(f"timed out waiting for {what} at {where}") from None

    def element(self, css: str, timeout: float = 30) -> WebElement:
        return self.wait_for(
            lambda driver: next(iter(driver.find_elements("css selector", css)), None),
            timeout,
            css,
        )

    def click(self, css: str, timeout: float = 30) -> None:
        """Click the element ``css`` names; one the page redraws between finding it and the
        click is found again (a live page redraws as its data arrives)."""

        def clicked(driver) -> bool:
            element = next(iter(driver.find_elements("css selector", css)), None)
            if element is None:
                return False
            element.click()
            return True

        self.wait_for(clicked, timeout, css)

    def text(self, css: str) -> str:
        return self.wait_for(lambda driver: driver.find_element("css selector", css).text)

    def attribute(self, css: str, name: str) -> str | None:
        return self.wait_for(
            lambda driver: driver.find_element("css selector", css).get_attribute(name) or "",
            what=f"{css} [{name}]",
        )

    def missing_values(self, css: str = "#main") -> list[str]:
        """The words "null" and "undefined" in what ``css`` shows: a value the page lacked."""
        texts = self.driver.execute_script(SHOWN_TEXTS, css)
        return [word for text in texts for word in MISSING_VALUES.findall(text)]

    def accessibility_violations(self) -> list[dict]:
        """axe-core's WCAG 2.1 A and AA violations on the page as shown now. axe is put in the
        page through the driver (as devtools do, which its Content-Security-Policy allows)."""
        if not self.driver.execute_script("return typeof axe !== 'undefined'"):
            self.driver.execute_script(AXE.read_text())
        return self.driver.execute_async_script(RUN_AXE, WCAG_21_AA)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def collect_logs(self) -> None:
        """Move what the browser recorded since the last call into ``requested`` and ``console``."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requested.append(message["params"]["request"]["url"])
        self.console += self.driver.get_log("browser")

    def forget(self) -> None:
        """Start the records afresh (for a test on another server)."""
        self.collect_logs()
        self.requested.clear()
        self.console.clear()

    def outside_requests(self, base_url: str) -> list[str]:
        self.collect_logs()
        return [
            url
            for url in self.requested
            if not url.startswith(base_url) and not url.startswith(LOCAL_SCHEMES)
        ]

    def errors(self) -> list[dict]:
        """Console errors (a script error, a refused Content-Security-Policy...), except failed
        requests, which the tests that make them check themselves."""
        self.collect_logs()
        return [
            entry
            for entry in self.console
            if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
        ]


def chromium_options() -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI's container
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        # No update checks, safe-browsing lists, field trials or metrics: Chromium asks Google's
        # hosts for them on its own, which would hide whether *the pages* ask anything outside.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--metrics-recording-only",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return options


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; skipped where Debian's chromium and chromium-driver are missing,
    and failed then under CI (``.ci/run`` installs them)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=chromium_options())
    driver.set_page_load_timeout(60)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
