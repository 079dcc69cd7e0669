"""How long the long faults last. CI runs them short (the whole suite must stay well under 20 minutes
on 2 cores); `make reliability` sets RELIABILITY_LONG=1 and runs them at full length, as an operator
met them (issue 16): 2-minute outages, the output folder read-only for 30 s, the example sprint whole."""

from __future__ import annotations

import os

from tests.conftest import EXAMPLES

LONG = os.environ.get("RELIABILITY_LONG", "") == "1"

MODEL_OUTAGE_S = 120.0 if LONG else 20.0
MCP_OUTAGE_S = 120.0 if LONG else 40.0
"""Above the MCP session's 30 s of waiting in place for a reconnection, or no job would fail at all."""
READ_ONLY_S = 30.0 if LONG else 10.0
SPECS = sorted((EXAMPLES / "specs").glob("*.json"))[: None if LONG else 12]
MODEL_LATENCY = "latency=1.5" if LONG else "latency=0.5"
REDIS_OUTAGE_S = 60.0 if LONG else 20.0
"""Redis stopped this long under a running `run` (issue 16 met a minute's outage)."""
