"""Debian's headless Chromium driven by Selenium, for tests/test_browser.py.

A ``Browser`` opens the live server's pages, waits on real conditions of the
page (never on the clock), saves a screenshot at each step under
``var/test-artifacts/browser/<test>/`` and fails on any SEVERE entry of the
browser's console (a JavaScript error, a resource that did not load).
"""

import os
import shutil
from pathlib import Path

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # missing() names what to install
    webdriver = None

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "browser"
#: The pages poll every 3 s; a busy 2-core machine answers late, not never.
WAIT_SECONDS = 30


def missing() -> str | None:
    """What this machine lacks to run the browser tests, or None."""
    backend = os.environ.get("IMAGER_TEST_DB", "sqlite")
    if backend != "sqlite":
        # The pages are the same on every backend; the database-backed code
        # under them is tested on each by apps/ and the other tests/.
        return (
            f"IMAGER_TEST_DB=sqlite (they run once, in the SQLite pass; not {backend})"
        )
    if webdriver is None:
        return "the selenium package (pip install -r requirements-dev.txt)"
    for tool, package in (
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} (Debian package {package}: apt-get install {package})"
    return None


def marked(name: str) -> str:
    """The CSS selector of the element the page marks data-testid=name."""
    return f'[data-testid="{name}"]'


class Browser:
    """One headless Chromium asking for pages in ``language``; its screenshots
    are ``<folder>/<who>-NN-<step>.png``."""

    def __init__(self, base_url: str, folder: Path, language: str, who: str):
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        options.add_argument("--headless=new")
        # Chromium refuses to start its sandbox as root (CI runs the tests so).
        options.add_argument("--no-sandbox")
        # Containers give /dev/shm 64 MB, too little for Chromium's renderer.
        options.add_argument("--disable-dev-shm-usage")
        options.add_argument("--window-size=1280,1400")
        options.add_argument(f"--lang={language}")
        # What Accept-Language says: the site picks its language from it.
        options.add_experimental_option("prefs", {"intl.accept_languages": language})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(shutil.which("chromedriver"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.base_url = base_url.rstrip("/")
        self.folder, self.who, self.steps = folder, who, 0

    # Pages and elements.

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base_url)

    def find(self, selector: str, within=None):
        return (within or self.driver).find_element(By.CSS_SELECTOR, selector)

    def find_all(self, selector: str, within=None) -> list:
        return (within or self.driver).find_elements(By.CSS_SELECTOR, selector)

    def by_id(self, name: str):
        return self.driver.find_element(By.ID, name)

    def fill(self, name: str, value: str) -> None:
        field = self.by_id(name)
        field.clear()
        field.send_keys(value)

    def read(self, selector: str, read):
        """``read(element)`` of the first element ``selector`` finds now (None
        when there is none). htmx may swap the part between finding and
        reading: the element is then found again."""
        for _attempt in range(5):
            try:
                found = self.find_all(selector)
                return read(found[0]) if found else None
            except StaleElementReferenceException:
                continue
        raise AssertionError(f"{selector} kept being replaced while read")

    def attribute(self, selector: str, name: str) -> str | None:
        return self.read(selector, lambda element: element.get_attribute(name))

    def text(self, selector: str) -> str | None:
        return self.read(selector, lambda element: element.text)

    @property
    def language(self) -> str:
        return self.find("html").get_attribute("lang")

    def label_of(self, field_id: str) -> str:
        return self.find(f'label[for="{field_id}"]').text

    def choose(self, select_id: str, value: str) -> None:
        Select(self.by_id(select_id)).select_by_value(value)

    def wait(self, condition, what: str):
        """Until ``condition()`` is true (its value is returned); fails saying
        ``what`` was awaited."""
        waiting = WebDriverWait(
            self.driver,
            WAIT_SECONDS,
            poll_frequency=0.2,
            ignored_exceptions=(StaleElementReferenceException,),
        )
        return waiting.until(
            lambda _driver: condition(), message=f"waited {WAIT_SECONDS} s for {what}"
        )

    def wait_for(self, selector: str, what: str = ""):
        """The first element ``selector`` finds, once there is one."""
        return self.wait(lambda: self.find_all(selector), what or selector)[0]

    def wait_for_path(self, prefix: str) -> None:
        self.wait(lambda: self.path.startswith(prefix), f"the page {prefix}")

    def click(self, selector: str, within=None) -> None:
        element = self.find(selector, within)
        # Into view first, at once: a button under the fold is not clickable,
        # and Bootstrap makes scrolling smooth (the click would land mid-way).
        self.driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})",
            element,
        )
        element.click()

    def mark_document(self) -> None:
        """Mark this page; ``same_document`` says later whether it was reloaded."""
        self.driver.execute_script("window.imagerTestMark = true;")

    def same_document(self) -> bool:
        return self.driver.execute_script("return window.imagerTestMark === true;")

    # Evidence: screenshots and the console.

    def shot(self, step: str) -> Path:
        """Save the page as ``<who>-NN-<step>.png`` and check the console is clean."""
        self.steps += 1
        path = self.folder / f"{self.who}-{self.steps:02d}-{step}.png"
        self.driver.save_screenshot(str(path))
        self.assert_console_clean(step)
        return path

    def assert_console_clean(self, step: str) -> None:
        # get_log empties the log: each step sees only what came after the last.
        severe = [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE"
        ]
        assert severe == [], f"errors in the browser's console at {step}: {severe}"

    def close(self) -> None:
        self.driver.quit()


def log_in(browser: Browser, username: str, password: str) -> None:
    """Through the login form, as a person does: the site sends to it first."""
    browser.open("/")
    browser.wait_for(marked("login-form"), "the login form")
    browser.fill("id_username", username)
    browser.fill("id_password", password)
    browser.shot("login")
    browser.click(marked("login-submit"))
    browser.wait_for(marked("account-menu"), f"{username} logged in")
