"""Crash points for fault tests: `ROBOT_FLEET_FAILPOINT=name[:n]` makes the process die with
SIGKILL's status, without clean-up, the n-th time (default 1st) it reaches `failpoint(name)`;
`name:raise` makes every `injected(name)` true, for the caller to fail as the real thing would.

A crash at an exact line is what a kill signal can only hit by luck; the collector's recovery is
tested at each of its points this way. Unset (always, in production), a failpoint costs one dict
lookup. Points: `collector.mid_write` (half a file in the temp file), `collector.after_write` (file
renamed into place, manifest updated, job not yet marked collected, entry not acknowledged),
`worker.received` (a worker took a job's message from the queue but has not said so yet); and
`broker.send:raise` (the broker refuses every message this process sends).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV_NAME = "ROBOT_FLEET_FAILPOINT"

_name, _, _nth = os.environ.get(ENV_NAME, "").partition(":")
_raising = {_name} if _nth == "raise" else set()
_armed = {_name: int(_nth or 1)} if _name and not _raising else {}
_hits: Counter[str] = Counter()


def injected(name: str) -> bool:
    """True when this process was told to fail at `name` (`name:raise`)."""
    return name in _raising


def failpoint(name: str) -> None:
    if name not in _armed:
        return
    _hits[name] += 1
    if _hits[name] == _armed[name]:
        os.kill(os.getpid(), signal.SIGKILL)
