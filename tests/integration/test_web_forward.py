"""Issue 16: "Forward my mail to <address>" on the self-service page, in a
real headless browser.  The address offered is the one the (fake) Ubuntu
One vouched for in its signed SReg email; the page writes the same
forwarding script `doveadm launchpad forward` does (delivery through it is
tests/integration/test_sieve.py's)."""

import json
import os
import shutil
import tempfile

import pytest

from test_web import WebWorld, chromium, section_of
from harness import wait_for

USER_NAME = "ivan"          # in ~ubuntumembers, never activated
USER = USER_NAME + "@ubuntu.com"
VOUCHED = USER_NAME + ".personal@example.net"


@pytest.fixture(scope="module")
def world():
    w = WebWorld()
    yield w
    w.close()


@pytest.fixture
def browser(world):
    assert shutil.which("chromium") and shutil.which("chromedriver"), \
        "chromium / chromium-driver not installed (tests/install-deps.sh)"
    profile = tempfile.mkdtemp(prefix="chromium-", dir=world.wd.path)
    driver = chromium(profile)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def forward_show(world):
    res = world.dc.doveadm("-f", "json", "launchpad", "forward", "show", USER)
    return json.loads(res.stdout)[0]


def sign_in(world, d, mode="ok"):
    from selenium.webdriver.common.by import By
    world.op.next(USER_NAME, mode)
    d.get(world.web.base + "/")
    d.find_element(By.LINK_TEXT, "Sign in with Ubuntu One").click()
    wait_for(lambda: "Your mailboxes" in d.title, 20, "status page")


def forward_form(section):
    from selenium.webdriver.common.by import By
    return section.find_element(By.CSS_SELECTOR,
                                "form[action='/forward']")


def test_forward_form_in_browser(world, browser):
    from selenium.webdriver.common.by import By
    d = browser
    sign_in(world, d)
    sec = section_of(d, USER)
    assert "Forward my mail to " + VOUCHED in sec.text
    form = forward_form(sec)
    keep = form.find_element(By.NAME, "keep")
    assert keep.is_selected()
    # Forward without a copy.
    keep.click()
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: "Your mailboxes" in d.title and
             "forwarded to" in d.page_source, 20, "notice")
    assert forward_show(world) == {"user": USER, "forward": VOUCHED,
                                   "keep": "no"}
    sec = section_of(d, USER)
    assert "no copy is kept" in sec.text
    script = os.path.join(world.dc.home(USER_NAME),
                          ".launchpad-forward.sieve")
    assert os.stat(script).st_mode & 0o777 == 0o600
    assert "Stop forwarding" in sec.text
    forward_form(sec).find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: "forwarding is off" in d.page_source, 20, "off")
    assert forward_show(world)["forward"] == ""
    # Again, keeping a copy this time.
    form = forward_form(section_of(d, USER))
    assert form.find_element(By.NAME, "keep").is_selected()
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: "a copy is kept here" in d.page_source, 20, "keep")
    assert forward_show(world)["keep"] == "yes"
    assert "forwarding on" in world.web.log_text()
    # The admin hears of it at the next sync.
    world.sink.clear()
    world.dc.doveadm("launchpad", "sync", check=False)
    mails = [m for m in world.sink.messages
             if "forwarding" in m["data"] and USER in m["data"]]
    assert mails, world.sink.messages
    world.dc.doveadm("launchpad", "forward", "clear", USER)


def test_no_vouched_address_no_form(world, browser):
    d = browser
    sign_in(world, d, mode="no-email")
    sec = section_of(d, USER)
    assert "did not tell us an address" in sec.text
    assert "Forward my mail" not in sec.text
