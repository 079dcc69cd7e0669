"""The job store's records as the fleet sees them: a job's state is an enum, and every stored record
is a frozen dataclass parsed once, where it leaves Redis (`worker.adapters.store`); nothing above the
store handles a `dict[str, str]` of a job or compares state strings.

    queued ──claim──► running ──finish──► succeeded ──collect──► collected
      ▲                 │ └──fail (final)──► failed ──retry──► queued
      │                 ├──fail (retryable)──► retrying ──claim──► running
      │                 └──hand back (a worker stopping)──► queued
      └── the sweep: a holder that died (lease ran out), a message that was lost

The fleet's circuits (one per dependency: the model provider, the MCP server) are records too: open
while the fleet is paused on a dependency that fails for everyone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COLLECTED = "collected"

    @property
    def active(self) -> bool:
        """Not finished: a worker holds the job, or its message is on its way to one."""
        return self in (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)

    @property
    def has_suite(self) -> bool:
        """The job produced a suite (written or waiting for the collector)."""
        return self in (JobState.SUCCEEDED, JobState.COLLECTED)

    @property
    def settled(self) -> bool:
        """Nothing more will happen to it unless someone asks: collected, or failed for good."""
        return self in (JobState.COLLECTED, JobState.FAILED)


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.COLLECTED})


class RecordError(ValueError):
    """A stored record the fleet cannot read (written by an incompatible version, or damaged)."""


def _text(raw: Mapping[str, str], name: str) -> str:
    return raw.get(name) or ""


def _int(raw: Mapping[str, str], name: str) -> int:
    try:
        return int(float(raw.get(name) or 0))
    except ValueError:
        return 0


def _float(raw: Mapping[str, str], name: str) -> float:
    try:
        return float(raw.get(name) or 0)
    except ValueError:
        return 0.0


def _flag(raw: Mapping[str, str], name: str) -> bool:
    return (raw.get(name) or "0") not in ("0", "", "false")


def _json(raw: Mapping[str, str], name: str, default: Any) -> Any:
    try:
        return json.loads(raw[name]) if raw.get(name) else default
    except ValueError:
        return default


JSON_FIELDS = ("stages", "checks", "calls_by_source", "diagnostics", "attempt", "rounds", "repairs", "tool_calls",
               "prompt_tokens", "completion_tokens", "cached_tokens", "calls", "calls_resolved",
               "calls_unverified", "reuse_share", "placeholders", "rule_violations", "tests_run",
               "tests_passed", "tests_failed", "tests_skipped", "duration_s", "first_draft_placeholders",
               "criteria_covered", "criteria_total", "criteria_derived", "review_violations_found",
               "review_violations_fixed", "review_prompt_tokens", "review_completion_tokens", "review_cached_tokens", "reviews",
               "degraded", "retries", "requeued", "resent", "resumed_from_round", "resume_saved_tokens",
               "handed_back", "outage_retries", "attempt_s", "retry_in_s")  # fmt: skip
"""Job fields stored as JSON text (lists, objects, numbers): `JobRecord.shown` gives them decoded."""


@dataclass(frozen=True)
class JobRecord:
    """One job as stored: identity, lifecycle, outcome and the figures commands show."""

    job_id: str
    batch_id: str
    spec_id: str
    state: JobState
    attempt: int = 0
    source: str = ""
    target_path: str = ""
    spec_sha256: str = ""
    model: str = ""
    ref: str = ""
    prompt_version: str = ""
    worker: str = ""
    queued_at: float = 0.0
    started_at: float = 0.0
    first_started_at: float = 0.0
    """When its first attempt (since the last `robot-fleet retry`) started: bounds its retries in time."""
    finished_at: float = 0.0
    collected_at: float = 0.0
    error_kind: str = ""
    error_message: str = ""
    last_error_kind: str = ""
    """The error of the attempt before the current one (a new attempt clears `error_kind`)."""
    last_error_message: str = ""
    retry_at: float = 0.0
    """When a `retrying` job's next attempt is due (server clock)."""
    retries: int = 0
    """Retryable failures so far (each was retried)."""
    outage_retries: int = 0
    """Failed attempts charged to an outage the fleet paused on: retried, not counted in `retries`."""
    handed_back: int = 0
    """Times a worker stopping gave its running attempt back (not a failure: resumed elsewhere)."""
    requeued: int = 0
    """Times a worker holding it died (its lease ran out) and it was sent again."""
    resent: int = 0
    """Times its message was lost before any worker received it, and it was sent again."""
    resumed_from_round: int = 0
    """The round the current attempt resumed from (0: it started fresh)."""
    resume_saved_tokens: int = 0
    """Tokens of the replayed rounds, which the current attempt did not spend again."""
    verdict: str = ""
    output_path: str = ""
    withheld: bool = False
    beside: bool = False
    rounds: int = 0
    repairs: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    review_prompt_tokens: int = 0
    review_completion_tokens: int = 0
    duration_s: float = 0.0
    """The job's own clock: from its first claim (since the last `robot-fleet retry`) to its end."""
    attempt_s: float = 0.0
    """The last attempt's own time in the writer."""
    calls: int = 0
    calls_resolved: int = 0
    calls_unverified: int = 0
    criteria_covered: int = 0
    criteria_total: int = 0
    tests_run: int = 0
    tests_passed: int = 0
    rule_violations: int = 0
    stages: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Everything stored, as text: for the commands that show a job whole (`status --json`, report)."""

    @classmethod
    def parse(cls, raw: Mapping[str, str], job_id: str = "") -> JobRecord:
        """The record of a job hash (or of some of its fields: what is absent takes its default)."""
        try:
            state = JobState(raw.get("state") or JobState.QUEUED)
        except ValueError as exc:
            raise RecordError(
                f"job {raw.get('job_id') or job_id}: unknown state {raw.get('state')!r}"
            ) from exc
        stages = _json(raw, "stages", {})
        return cls(
            job_id=raw.get("job_id") or job_id, batch_id=_text(raw, "batch_id"), spec_id=_text(raw, "spec_id"),
            state=state, attempt=_int(raw, "attempt"), source=_text(raw, "source"),
            target_path=_text(raw, "target_path"), spec_sha256=_text(raw, "spec_sha256"),
            model=_text(raw, "model"), ref=_text(raw, "ref"), prompt_version=_text(raw, "prompt_version"),
            worker=_text(raw, "worker"), queued_at=_float(raw, "queued_at"), started_at=_float(raw, "started_at"),
            first_started_at=_float(raw, "first_started_at"),
            finished_at=_float(raw, "finished_at"), collected_at=_float(raw, "collected_at"),
            error_kind=_text(raw, "error_kind"), error_message=_text(raw, "error_message"),
            last_error_kind=_text(raw, "last_error_kind"), last_error_message=_text(raw, "last_error_message"),
            retry_at=_float(raw, "retry_at"), outage_retries=_int(raw, "outage_retries"),
            handed_back=_int(raw, "handed_back"), attempt_s=_float(raw, "attempt_s"),
            retries=_int(raw, "retries"), requeued=_int(raw, "requeued"), resent=_int(raw, "resent"),
            resumed_from_round=_int(raw, "resumed_from_round"),
            resume_saved_tokens=_int(raw, "resume_saved_tokens"), verdict=_text(raw, "verdict"),
            output_path=_text(raw, "output_path"), withheld=_flag(raw, "withheld"), beside=_flag(raw, "beside"),
            rounds=_int(raw, "rounds"), repairs=_int(raw, "repairs"), tool_calls=_int(raw, "tool_calls"),
            prompt_tokens=_int(raw, "prompt_tokens"), completion_tokens=_int(raw, "completion_tokens"),
            review_prompt_tokens=_int(raw, "review_prompt_tokens"),
            review_completion_tokens=_int(raw, "review_completion_tokens"), duration_s=_float(raw, "duration_s"),
            calls=_int(raw, "calls"), calls_resolved=_int(raw, "calls_resolved"),
            calls_unverified=_int(raw, "calls_unverified"), criteria_covered=_int(raw, "criteria_covered"),
            criteria_total=_int(raw, "criteria_total"), tests_run=_int(raw, "tests_run"),
            tests_passed=_int(raw, "tests_passed"), rule_violations=_int(raw, "rule_violations"),
            stages={str(k): str(v) for k, v in stages.items()} if isinstance(stages, dict) else {},
            fields=dict(raw),
        )  # fmt: skip

    @property
    def tokens(self) -> int:
        """The writer's tokens (prompt and completion)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def review_tokens(self) -> int:
        return self.review_prompt_tokens + self.review_completion_tokens

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens, the writer's and the reviewer's, the provider served from its cache."""
        return _int(self.fields, "cached_tokens") + _int(self.fields, "review_cached_tokens")

    @property
    def shown_verdict(self) -> str:
        """The verdict of a job that produced a suite (a suite accepted unchecked is unverified)."""
        return self.verdict or "unverified"

    def get(self, name: str, default: str | None = None) -> str | None:
        """A stored field as text. Only for bench/, which reads records as the hashes they were
        (until its owner moves to the typed fields); worker/ and producer/ never use it."""
        return self.fields.get(name, default)

    def __getitem__(self, name: str) -> str:
        return self.fields[name]

    def shown(self) -> dict[str, object]:
        """Every stored field, JSON ones decoded: a job as `status --json` and the report show it."""
        shown: dict[str, object] = dict(self.fields)
        for name in JSON_FIELDS:
            if self.fields.get(name):
                try:
                    shown[name] = json.loads(self.fields[name])
                except ValueError:
                    continue
        return shown


@dataclass(frozen=True)
class Rejected:
    source: str
    reason: str
    spec_id: str


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    created_at: float = 0.0
    specs_dir: str = ""
    output_dir: str = ""
    total: int = 0
    project_id: str = ""
    model: str = ""
    ref: str = ""
    prompt_version: str = ""
    write_failing: bool = True
    """What the run that recorded the batch asked for (WRITE_FAILING_SUITES)."""
    rejected: tuple[Rejected, ...] = ()
    skipped: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, str], batch_id: str = "") -> BatchRecord:
        rejected = _json(raw, "rejected", [])
        return cls(
            batch_id=raw.get("batch_id") or batch_id, created_at=_float(raw, "created_at"),
            specs_dir=_text(raw, "specs_dir"), output_dir=_text(raw, "output_dir"), total=_int(raw, "total"),
            project_id=_text(raw, "project_id"), model=_text(raw, "model"), ref=_text(raw, "ref"),
            prompt_version=_text(raw, "prompt_version"), write_failing=(raw.get("write_failing") or "1") != "0",
            rejected=tuple(
                Rejected(str(item.get("source", "")), str(item.get("reason", "")), str(item.get("spec_id", "")))
                for item in (rejected if isinstance(rejected, list) else []) if isinstance(item, dict)
            ),
            skipped=tuple(str(item) for item in _json(raw, "skipped", []) if isinstance(item, str)),
            ignored=tuple(str(item) for item in _json(raw, "ignored", []) if isinstance(item, str)),
        )  # fmt: skip

    def stored(self) -> dict[str, str]:
        """The hash the store writes."""
        return {
            "batch_id": self.batch_id, "created_at": json.dumps(self.created_at), "specs_dir": self.specs_dir,
            "output_dir": self.output_dir, "total": str(self.total), "project_id": self.project_id,
            "model": self.model, "ref": self.ref, "prompt_version": self.prompt_version,
            "write_failing": str(int(self.write_failing)),
            "rejected": json.dumps([{"source": r.source, "reason": r.reason, "spec_id": r.spec_id}
                                    for r in self.rejected]),
            "skipped": json.dumps(list(self.skipped)), "ignored": json.dumps(list(self.ignored)),
        }  # fmt: skip


@dataclass(frozen=True)
class NewJob:
    """A job as the producer records it; the store sets its state, attempt and times."""

    job_id: str
    batch_id: str
    spec_id: str
    source: str
    target_path: str
    spec_sha256: str
    spec_json: str
    model: str = ""
    ref: str = ""
    prompt_version: str = ""

    def stored(self) -> dict[str, str]:
        return {
            "job_id": self.job_id, "batch_id": self.batch_id, "spec_id": self.spec_id, "source": self.source,
            "target_path": self.target_path, "spec_sha256": self.spec_sha256, "model": self.model,
            "ref": self.ref, "prompt_version": self.prompt_version,
        }  # fmt: skip


@dataclass(frozen=True)
class JobResult:
    """The result of a job's succeeded attempt: the suite and the figures of the attempt."""

    attempt: int
    robot_text: str
    payload: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: str) -> JobResult:
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise RecordError(f"a job result is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise RecordError("a job result is not a JSON object")
        return cls(int(payload.get("attempt") or 0), str(payload.get("robot_text") or ""), payload)


@dataclass(frozen=True)
class LogEntry:
    entry_id: str
    kind: str
    text: str
    attempt: int
    data: Mapping[str, Any]

    @classmethod
    def parse(cls, entry_id: str, raw: Mapping[str, str]) -> LogEntry:
        data = _json(raw, "d", {})
        return cls(entry_id, raw.get("k") or "info", raw.get("t") or "", _int(raw, "a"),
                   data if isinstance(data, dict) else {})  # fmt: skip


# -- what the lifecycle steps answer


@dataclass(frozen=True)
class Claimed:
    """A new attempt of the job, leased to the claiming worker."""

    attempt: int
    spec_json: str
    job: JobRecord


@dataclass(frozen=True)
class Refused:
    """The job is finished, or running under another worker's live lease (a duplicate delivery)."""

    state: JobState


@dataclass(frozen=True)
class Unknown:
    """No such job (expired, or a message from another fleet)."""


ClaimOutcome = Claimed | Refused | Unknown


@dataclass(frozen=True)
class Resend:
    """A job the sweep put back on its way: its message is to be sent (again)."""

    job_id: str
    spec_id: str
    countdown: float
    """Seconds before it may run (what is left of a retry's countdown)."""
    why: str
    """`requeued` (its holder's lease ran out) or `resent` (its message was lost before receipt)."""


@dataclass(frozen=True)
class Swept:
    resend: tuple[Resend, ...] = ()
    failed: tuple[str, ...] = ()
    """Jobs failed as `worker_lost` instead: they reached a cap of the retry policy."""


@dataclass(frozen=True)
class ResultEntry:
    batch_id: str
    entry_id: str
    job_id: str
    attempt: int


@dataclass(frozen=True)
class PendingResult:
    """A result a collector read and has not acknowledged yet (writing it, failing to, or dead)."""

    batch_id: str
    entry_id: str
    consumer: str
    idle_ms: int


@dataclass(frozen=True)
class FleetCounts:
    """Fleet-wide figures for `robot-fleet metrics`."""

    queue_messages: int
    leased: int
    dispatched: int
    waits: Mapping[str, float]
    waited_s: Mapping[str, float]


# -- the fleet's circuits


class Dependency(StrEnum):
    """What every job needs and may fail for everyone at once."""

    MODEL = "model"
    MCP = "mcp"

    @property
    def label(self) -> str:
        return "the model provider" if self is Dependency.MODEL else "the MCP server"


UNPROBED_AFTER_S = 60.0
"""An open circuit whose probe is this late has no worker probing it (they probe every 5 s)."""


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    """The fleet is paused on the dependency: no new attempt starts until a probe gets an answer."""


@dataclass(frozen=True)
class CircuitRecord:
    dependency: Dependency
    circuit: Circuit = Circuit.CLOSED
    opened_at: float = 0.0
    closed_at: float = 0.0
    next_probe_at: float = 0.0
    """Server clock."""
    probes: int = 0
    """Probes that failed since it opened."""
    last_kind: str = ""
    last_error: str = ""
    reason: str = ""
    """Why it opened: the failures that made it."""
    failing: int = 0
    """Different jobs that failed on it in a row (while closed)."""
    pauses: int = 0
    """Lifetime: times it opened."""
    paused_s: float = 0.0
    """Lifetime: seconds it was open (closed pauses only)."""

    @classmethod
    def parse(cls, dependency: Dependency, raw: Mapping[str, str], failing: int = 0) -> CircuitRecord:
        try:
            circuit = Circuit(raw.get("circuit") or Circuit.CLOSED)
        except ValueError as exc:
            raise RecordError(f"circuit {dependency}: unknown state {raw.get('circuit')!r}") from exc
        return cls(
            dependency=dependency, circuit=circuit, opened_at=_float(raw, "opened_at"),
            closed_at=_float(raw, "closed_at"), next_probe_at=_float(raw, "next_probe_at"),
            probes=_int(raw, "probes"), last_kind=_text(raw, "last_kind"), last_error=_text(raw, "last_error"),
            reason=_text(raw, "reason"), failing=failing, pauses=_int(raw, "pauses"),
            paused_s=_float(raw, "paused_s"),
        )  # fmt: skip

    @property
    def paused(self) -> bool:
        return self.circuit is Circuit.OPEN

    def unprobed(self, now: float) -> bool:
        """Open, and no worker has probed it for a while: none runs, or theirs have the pause off
        (FLEET_PAUSE_AFTER=0). The next worker that has it on probes at once."""
        return self.paused and now - self.next_probe_at > UNPROBED_AFTER_S

    def describe(self, now: float) -> str:
        """`fleet paused on the model provider for 1m20s (model_unavailable: ...); next probe in 8s`;
        `now` on the server's clock, as its times are."""
        error = f" ({self.last_kind}: {self.last_error[:160]})" if self.last_kind else ""
        head = f"fleet paused on {self.dependency.label} for {span(now - self.opened_at)}{error}"
        if self.unprobed(now):
            return (f"{head}; no worker has probed it for {span(now - self.next_probe_at)} (none running, or"
                    " FLEET_PAUSE_AFTER=0 on them)")  # fmt: skip
        return f"{head}; next probe in {max(0.0, self.next_probe_at - now):.0f}s"

    def shown(self, now: float) -> dict[str, object]:
        """As `status --json` shows it."""
        return {
            "dependency": str(self.dependency), "circuit": str(self.circuit), "paused": self.paused,
            "paused_for_s": round(now - self.opened_at, 1) if self.paused else 0.0,
            "next_probe_in_s": round(max(0.0, self.next_probe_at - now), 1) if self.paused else None,
            "unprobed": self.unprobed(now),
            "probes": self.probes, "last_kind": self.last_kind, "last_error": self.last_error,
            "reason": self.reason, "failing_in_a_row": self.failing, "pauses": self.pauses,
            "paused_s_total": round(self.paused_s, 1),
        }  # fmt: skip


def span(seconds: float) -> str:
    """`45s`, `2m05s`."""
    whole = max(0, round(seconds))
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"
