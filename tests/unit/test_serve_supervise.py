"""`guidebot serve --processes N`: how the parent reads its servers' ends once told to stop."""

from __future__ import annotations

import signal
import subprocess
import sys

from guidebot.serve import _supervise

# A server still importing when the stop comes: no SIGTERM handler of its own yet.
STARTING = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_server_stopped_while_still_starting_is_a_clean_stop():
    """Told to stop while starting, a server ends by SIGTERM's default action: that is the
    stop the parent asked for, so the parent exits 0 (it said 241 before, and a supervisor
    took a clean stop for a failure)."""
    children = [subprocess.Popen(STARTING) for _ in range(2)]
    for child in children:
        child.send_signal(signal.SIGTERM)
    assert _supervise(children, lambda: True) == 0
    assert [child.returncode for child in children] == [-signal.SIGTERM] * 2


def test_a_server_failing_as_it_stops_is_still_reported():
    children = [
        subprocess.Popen(STARTING),
        subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]),
    ]
    children[0].send_signal(signal.SIGTERM)
    assert _supervise(children, lambda: True) == 3
