"""Every Redis key of robot-fleet, with its time to live. No other module builds a key string.

rfleet:batches                      zset  batch id -> created_at
rfleet:batch:{batch}                hash  the batch record
rfleet:batch:{batch}:jobs           zset  job id -> position in the batch
rfleet:batch:{batch}:results        stream  one entry per finished attempt; collector group
rfleet:job:{job}                    hash  the job record (state, attempt, counters, error)
rfleet:job:{job}:spec               string  the spec JSON (task arguments carry only the job id)
rfleet:job:{job}:result             string  the result JSON of the current attempt
rfleet:job:{job}:log                stream  the job's streamed log (capped)
rfleet:job:{job}:journal            list  the writer's completed rounds: a header, then one per round
rfleet:leases                       zset  job id -> deadline of the worker holding it (server clock)
rfleet:dispatched                   zset  job id -> when its message was sent: no worker holds it yet
rfleet:receipts                     zset  dispatch time of a received job -> when it was received
rfleet:receipt-mark                 string  the newest dispatch time received more than a grace ago
rfleet:circuit:{dependency}         hash  the fleet's circuit on `model` or `mcp`: open (paused) or
                                          closed, when, probes, last error, lifetime pause counters
rfleet:circuit:{dependency}:failing zset  job id -> when: different jobs failing on it in a row
rfleet:circuit:{dependency}:probe   string  the probe lock: one worker of the fleet probes at a time
rfleet:LIMITER/...                  the `limits` library's moving windows (ratelimit.py)
rfleet:stats:rate-limit-waits       hash  budget -> requests that waited for a fleet-wide budget
rfleet:stats:rate-limit-wait-s      hash  budget -> seconds those requests waited
robot-fleet                         list  kombu's: the Celery queue's waiting messages (read only)
"""

from __future__ import annotations

PREFIX = "rfleet"
RECORD_VERSION = 1

BATCH_TTL_S = 14 * 24 * 3600
"""Batches, jobs, specs and results are kept two weeks after their last change."""
LOG_TTL_S = 3 * 24 * 3600
"""Logs are the bulkiest keys: three days."""
LOG_MAX_ENTRIES = 4000
"""Approximate cap of one job's log stream (XADD MAXLEN ~)."""
COLLECTOR_GROUP = "collectors"
JOURNAL_TTL_S = 3 * 24 * 3600
"""A journal outlives a crashed fleet for as long as the logs do; it is deleted when its job ends."""
JOURNAL_MAX_BYTES = 2 * 1024 * 1024
"""A job's journal stops growing past this (its later rounds are not journaled: a resume replays the
rounds journaled before)."""


def batches() -> str:
    return f"{PREFIX}:batches"


def batch(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}"


def batch_jobs(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:jobs"


def batch_results(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:results"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def job_spec(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:spec"


def job_result(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:result"


def job_log(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:log"


def job_journal(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:journal"


def leases() -> str:
    return f"{PREFIX}:leases"


def dispatched() -> str:
    """Jobs whose message is sent (or about to be) and that no worker has received yet; the sweep
    sends again those whose message was lost. No expiry: entries leave when a worker receives the
    job or the job ends."""
    return f"{PREFIX}:dispatched"


def receipts() -> str:
    """Recent receipts, trimmed by every sweep (see `Store.sweep`)."""
    return f"{PREFIX}:receipts"


def receipt_mark() -> str:
    return f"{PREFIX}:receipt-mark"


def circuit(dependency: str) -> str:
    """No expiry: a circuit open when the fleet stops must still be open when it starts again, and
    its pause counters are lifetime counters (Prometheus), as `rate_limit_waits`."""
    return f"{PREFIX}:circuit:{dependency}"


CIRCUIT_FAILING_TTL_S = 10 * 60
"""Failures "in a row" are those of the last ten minutes: a failure an hour ago and one now are not
an outage."""


def circuit_failing(dependency: str) -> str:
    return f"{PREFIX}:circuit:{dependency}:failing"


def circuit_probe(dependency: str) -> str:
    """Expires on its own (PX: the probe's timeout and a margin), so a prober that died frees it."""
    return f"{PREFIX}:circuit:{dependency}:probe"


def rate_limits_prefix() -> str:
    """The prefix the `limits` library puts before its own keys (`rfleet:LIMITER/<budget>/...`)."""
    return PREFIX


def rate_limit_waits() -> str:
    """No expiry: the fleet's lifetime counters (one field per budget), which Prometheus reads as
    counters; a flushed Redis is a counter reset to it."""
    return f"{PREFIX}:stats:rate-limit-waits"


def rate_limit_wait_seconds() -> str:
    """No expiry, as `rate_limit_waits`."""
    return f"{PREFIX}:stats:rate-limit-wait-s"


def broker_queue(queue: str) -> str:
    """The Redis list in which kombu keeps a Celery queue's waiting messages (those sent with no
    priority, as the fleet's are). kombu owns it: read its length, never write it."""
    return queue
