"""Drives a real headless Chromium (Debian's chromium and chromium-driver,
through selenium) against a running daemon's status page:

  python3 page_check.py BASE_URL STIGMER_BIN HOME SCREENSHOT

1. The page shows Temporal's pid and state.
2. Temporal is SIGKILLed; once /status shows the new pid serving, the page
   shows it and the restart (reason, recovery time) within 2 s, without a
   reload.
3. It saves a screenshot, then checks the page at 360 px wide (nothing
   overflows) and on a dark system theme (dark background).
4. `stigmer local stop`; the page says the daemon is gone.

Exits 0 when all hold; otherwise prints what did not and exits 1.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

BASE, STIGMER, HOME, SHOT = sys.argv[1:5]
# How long the page may lag behind /status (it polls once a second).
PAGE_LAG = 2.0
# Bound on Temporal's own restart (not the page's business).
RESTART_BOUND = 60.0


def status():
    with urllib.request.urlopen(BASE + "/status", timeout=5) as r:
        return json.load(r)


def text(css):
    # One script, so the page cannot re-render between finding an element
    # and reading it (selenium's find-then-read raises "stale element"
    # when a poll replaces the node in between).
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css
    )


def wait_for(what, cond, timeout):
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: cond())
    except TimeoutException:
        print(f"FAILED within {timeout} s: {what}\npage text:\n{text('body')}")
        sys.exit(1)


profile = tempfile.mkdtemp(prefix="stigmer-chromium-")
options = Options()
options.binary_location = "/usr/bin/chromium"
for arg in [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--user-data-dir={profile}",
    "--window-size=1000,860",
]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(BASE + "/")
    pid = status()["temporal"]["pid"]
    wait_for(
        "the page shows Temporal's pid and state",
        lambda: text("#temporal-pid") == str(pid) and text("#temporal-state") == "running",
        10,
    )
    # A mark that a reload would erase.
    driver.execute_script("window.notReloaded = true;")

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + RESTART_BOUND
    while True:
        doc = status()
        new = doc["temporal"]["pid"]
        if new not in (None, pid) and doc["temporal"]["ready"]:
            break
        if time.monotonic() > deadline:
            print("FAILED: Temporal did not come back")
            sys.exit(1)
        time.sleep(0.02)

    def shows_restart():
        return (
            text("#temporal-pid") == str(new)
            and "signaled (signal 9)" in text("#history tbody tr")
            and " ms" in text("#history tbody tr .recovery")
        )

    wait_for("the new pid and the restart, within 2 s of /status", shows_restart, PAGE_LAG)
    if not driver.execute_script("return window.notReloaded === true;"):
        print("FAILED: the page reloaded")
        sys.exit(1)
    driver.save_screenshot(SHOT)

    # 360 px wide: the page itself never scrolls sideways (tables do, inside).
    driver.set_window_size(360, 800)
    wait_for(
        "nothing overflows at 360 px",
        lambda: driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;"
        ),
        5,
    )
    # A dark system theme.
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    dark = driver.execute_script(
        "const c = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);"
        "return c[0] + c[1] + c[2] < 150;"
    )
    if not dark:
        print("FAILED: no dark background on a dark system theme")
        sys.exit(1)

    subprocess.run([STIGMER, "local", "stop", "--home", HOME], check=True, capture_output=True)
    wait_for(
        "the page says the daemon is gone",
        lambda: "not answering" in text("#conn"),
        5,
    )
    print("ok")
finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
