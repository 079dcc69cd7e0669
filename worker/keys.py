"""Every Redis key of robot-fleet, with its time to live. No other module builds a key string.

rfleet:batches                      zset  batch id -> created_at
rfleet:batch:{batch}                hash  the batch record
rfleet:batch:{batch}:jobs           zset  job id -> position in the batch
rfleet:batch:{batch}:results        stream  one entry per finished attempt; collector group
rfleet:job:{job}                    hash  the job record (state, attempt, counters, error)
rfleet:job:{job}:spec               string  the spec JSON (task arguments carry only the job id)
rfleet:job:{job}:result             string  the result JSON of the current attempt
rfleet:job:{job}:log                stream  the job's streamed log (capped)
rfleet:leases                       zset  job id -> deadline of its running or retrying attempt
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


def leases() -> str:
    return f"{PREFIX}:leases"
