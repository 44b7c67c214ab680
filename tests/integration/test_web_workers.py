"""The page keeps serving while a request waits on the network.

The OpenID check_authentication POST and the Launchpad lookups of
dovecot-launchpad-web run in its worker processes (src/web/web-worker.c);
the connection that waits for one is suspended and everyone else is served
meanwhile.  The fakes hold a request until the test releases it (events,
never sleeps): while the sign-in, the "Check again" or the status page of
one contributor is held, another contributor's page, the stylesheet and
the sign-in page complete; once released, the held request completes as it
would have.  A worker killed mid-request costs its client an error page,
and the daemon goes on serving with a new worker.
"""

import os
import signal

import pytest

from conftest import (Background, SESSION, csrf_of, header, page_of,
                      section_html, signin)
from test_web import WebWorld

@pytest.fixture(scope="module")
def world():
    # the longest http_timeout: a held request must not give up on its own
    # while the test looks at the other clients
    w = WebWorld(http_timeout="45s")
    yield w
    code = w.close()
    assert code == 0, "the daemon did not stop cleanly on SIGTERM"


def signed_in(world, name):
    """A session of name whose verdicts are cached (its page was shown)."""
    session = signin(world.web, world.op, name)[3]
    assert session is not None
    page_of(world.web, session)
    return session


def others_are_served(world, session):
    """Another contributor's start page (its lookups go through a worker
    too), the stylesheet and the sign-in page all complete."""
    status, _, page = world.web.request("GET", "/",
                                        cookies={SESSION: session})
    assert status == 200 and "Your mailboxes" in page
    assert "Entitled" in section_html(page, "alice@ubuntu.com")
    status, _, css = world.web.request("GET", "/style.css")
    assert status == 200 and ":root" in css
    status, _, page = world.web.request("GET", "/")
    assert status == 200 and 'href="/login"' in page


def workers_of(pid):
    """The daemon's worker processes (dovecot-launchpad-web -w)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"-w" in argv:
            found.append(int(entry))
    return found


def test_signin_held_at_sso_others_served(world):
    alice = signed_in(world, "alice")
    world.op.hold()
    try:
        held = Background(signin, world.web, world.op, "henry")
        assert world.op.held(1) == 1
        others_are_served(world, alice)
        # its answer needs the SSO's, which is still held
        assert held.running
    finally:
        world.op.release()
    status, _, body, session = held.result()
    assert status == 200 and "Signed in" in body and session is not None
    assert "Entitled" in section_html(page_of(world.web, session),
                                      "henry@ubuntu.com")
    assert "sign-in: henry from" in world.web.log_text()


def test_recheck_held_at_launchpad_others_served(world):
    alice = signed_in(world, "alice")
    erin = signed_in(world, "erin")
    token = csrf_of(page_of(world.web, erin))
    world.fake.fault("hold", path="/~erin$", count=1)
    try:
        held = Background(world.web.request, "POST", "/recheck",
                          {SESSION: erin},
                          {"csrf": token, "domain": "lubuntu.me"})
        assert world.fake.held(1) == 1
        others_are_served(world, alice)
        assert held.running
    finally:
        world.fake.release()
    status, headers, _ = held.result()
    assert status == 303 and header(headers, "Location").endswith("/")
    assert "Launchpad was asked again just now: erin@lubuntu.me is still " \
        "not entitled" in page_of(world.web, erin)


def test_status_page_lookup_held_at_launchpad_others_served(world):
    alice = signed_in(world, "alice")
    # signed in, never looked up: the page's lookup misses the cache
    julia = signin(world.web, world.op, "julia")[3]
    world.fake.fault("hold", path="/~julia$", count=1)
    try:
        held = Background(world.web.request, "GET", "/", {SESSION: julia})
        assert world.fake.held(1) == 1
        others_are_served(world, alice)
        assert held.running
    finally:
        world.fake.release()
    status, _, page = held.result()
    assert status == 200
    assert "Entitled" in section_html(page, "julia@ubuntu.com")


def test_worker_killed_mid_request_error_page_and_serving_on(world):
    alice = signed_in(world, "alice")
    daemon = world.web.proc.pid
    workers = workers_of(daemon)
    assert workers, "no worker processes"
    world.op.hold()
    try:
        held = Background(signin, world.web, world.op, "kevin")
        assert world.op.held(1) == 1
        # the one running the held POST among them
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        status, _, body, session = held.result()
    finally:
        world.op.release()
    assert status == 503 and "Ubuntu One could not be reached" in body
    assert session is None
    assert "its request is answered with an error page" in \
        world.web.log_text()
    # still serving, with new workers
    others_are_served(world, alice)
    status, _, body, session = signin(world.web, world.op, "kevin")
    assert status == 200 and session is not None
    assert "Entitled" in section_html(page_of(world.web, session),
                                      "kevin@ubuntu.com")
    assert world.web.proc.poll() is None
    assert not set(workers) & set(workers_of(daemon))
