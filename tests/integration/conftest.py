import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import Dovecot, LaunchpadFake, Workdir  # noqa: E402


class World:
    """One fake Launchpad + one Dovecot, torn down together."""

    def __init__(self, **dovecot_settings):
        self.wd = Workdir()
        self.fake = LaunchpadFake(self.wd.path).start()
        try:
            self.dc = Dovecot(self.wd.path, self.fake.api_url,
                              **dovecot_settings).start()
        except Exception:
            self.fake.stop()
            raise

    def close(self):
        self.dc.stop()
        self.fake.stop()
        self.wd.cleanup()


@pytest.fixture
def make_world():
    worlds = []

    def make(**settings):
        w = World(**settings)
        worlds.append(w)
        return w
    yield make
    for w in worlds:
        w.close()
