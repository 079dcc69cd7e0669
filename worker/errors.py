"""The exception tree of robot-fleet. Every failure a job can end with is one of these.

    RobotFleetError
    ├── RetryableError            the same attempt may succeed later: Celery retries these
    │   ├── ModelUnavailable      LLM 429, 5xx, timeout, connection lost mid-stream
    │   ├── ToolServerUnavailable MCP connection refused or lost, 5xx, 429 rate limit
    │   ├── StoreUnavailable      Redis connection lost
    │   └── WorkerLost            the process running the job died
    └── PermanentError            retrying the same input cannot help
        ├── SpecError             spec unreadable or against the contract
        ├── ConfigError           settings missing or invalid
        ├── ModelRequestRejected  LLM 400, 401, 403, 404, 422
        ├── ToolServerRejected    MCP 401/403: bad token or header
        ├── ConventionMissing     doc/convention.md absent at the configured ref
        ├── RoundsExhausted       the model never gave a final answer within the round budget
        ├── RepairsExhausted      the answer stayed invalid after the repair turns
        ├── NoAnswer              the model ended its turn with nothing to write
        ├── JobTimeout            the wall-clock budget of the job ran out
        └── InternalError         an unexpected exception in the worker (a bug): recorded, not retried

Third-party exceptions are translated once, where the SDK is called, and re-raised `from exc`.
Each class has a stable `kind`, stored with a failed job and shown by `status`.
"""

from __future__ import annotations

from typing import ClassVar


class RobotFleetError(Exception):
    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, diagnostics: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.diagnostics = diagnostics or []


class RetryableError(RobotFleetError):
    kind = "retryable"
    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, diagnostics: list[str] | None = None
    ) -> None:
        super().__init__(message, diagnostics=diagnostics)
        self.retry_after = retry_after


def retry_hint(kind: str) -> str:
    """What retrying a job that failed with `kind` can do, for the failure line a user reads."""
    if kind in {cls.kind for cls in RetryableError.__subclasses__()} | {RetryableError.kind}:
        return "retrying later can help"
    return "retrying will not help until the cause is fixed"


def retry_after_seconds(value: str | None) -> float | None:
    """An HTTP Retry-After header in seconds (None when absent or not a number of seconds)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class ModelUnavailable(RetryableError):
    kind = "model_unavailable"


class ToolServerUnavailable(RetryableError):
    kind = "mcp_unavailable"


class StoreUnavailable(RetryableError):
    kind = "store_unavailable"


class WorkerLost(RetryableError):
    kind = "worker_lost"


class PermanentError(RobotFleetError):
    kind = "permanent"


class SpecError(PermanentError):
    kind = "invalid_spec"


class ConfigError(PermanentError):
    kind = "config"


class ModelRequestRejected(PermanentError):
    kind = "model_rejected"


class ToolServerRejected(PermanentError):
    kind = "mcp_rejected"


class ConventionMissing(PermanentError):
    kind = "convention_missing"


class RoundsExhausted(PermanentError):
    kind = "rounds_exhausted"


class RepairsExhausted(PermanentError):
    kind = "repairs_exhausted"


class NoAnswer(PermanentError):
    kind = "no_answer"


class JobTimeout(PermanentError):
    kind = "timeout"


class InternalError(PermanentError):
    kind = "internal"
