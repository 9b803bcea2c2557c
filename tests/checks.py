"""Assertions several test modules share."""

import time


def assert_one_line_fast(excinfo, started, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and time.monotonic() - started < 5
    for n in needles:
        assert n in msg, msg
