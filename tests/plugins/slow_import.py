"""A plugin module whose import takes a long time (test fixture: sleeps for 30 s)."""

import time

time.sleep(30)
