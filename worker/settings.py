"""The one place settings are read: environment variables and `.env`, the original tool's names kept.

Entry points (the CLI, the Celery worker, the collector) build `Settings()` once and pass it down;
nothing below them reads the environment. Secrets are `SecretStr`: masked in `repr`, never logged.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "magistral-2509"
DEFAULT_MCP_URL = "http://127.0.0.1:9001/mcp"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_OUTPUT_DIR = Path("./generated")
DEFAULT_MAX_ROUNDS = 16
DEFAULT_MAX_REPAIRS = 2
DEFAULT_JOB_TIMEOUT_S = 600.0
DEFAULT_LEASE_S = 60.0
DEFAULT_TOOL_TIMEOUT_S = 30.0
DEFAULT_TOOL_RESULT_MAX_CHARS = 24_000
DEFAULT_SPEC_MAX_BYTES = 256 * 1024
DEFAULT_MODEL_MAX_RETRIES = 3
DEFAULT_MODEL_TIMEOUT_S = 120.0
DEFAULT_RATE_WINDOW_S = 60.0
DEFAULT_EXECUTE_TIMEOUT_S = 120.0
DEFAULT_RETRY_WINDOW_S = 30 * 60.0
DEFAULT_PAUSE_AFTER = 3
DEFAULT_SHUTDOWN_S = 30.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        use_attribute_docstrings=True,
        frozen=True,
        populate_by_name=True,
    )

    openai_api_key: SecretStr = SecretStr("")
    """API key of the OpenAI-compatible provider (OPENAI_API_KEY)."""
    openai_base_url: str | None = None
    """Base URL of the provider; None means the OpenAI default (OPENAI_BASE_URL)."""
    openai_model_writer: str = DEFAULT_MODEL
    """Model name used by the writer (OPENAI_MODEL_WRITER)."""
    openai_model_reviewer: str | None = None
    """Model name of the reviewer (OPENAI_MODEL_REVIEWER); None: the writer's model."""
    openai_prompt_cache_key: bool = True
    """Send `prompt_cache_key` (one per project, ref and prompt version) so the provider routes a
    batch's requests to one warm prompt cache; dropped by itself when a provider refuses it."""
    openai_max_retries: int = Field(DEFAULT_MODEL_MAX_RETRIES, ge=0, le=10)
    """Retries of the openai client itself on 429/5xx/timeouts, honouring Retry-After."""
    openai_timeout_s: float = Field(DEFAULT_MODEL_TIMEOUT_S, gt=0)
    """Per-request timeout of the model client, in seconds."""

    gitlab_mcp_url: str = DEFAULT_MCP_URL
    """Streamable-HTTP endpoint of the GitLab MCP server (GITLAB_MCP_URL)."""
    gitlab_mcp_token: SecretStr | None = None
    """Token sent to the MCP server on every request; None sends no auth header."""
    gitlab_mcp_auth_header: str = "Authorization"
    """Header carrying the token: `Authorization` sends `Bearer <token>`, others the raw token."""
    gitlab_project_id: str = ""
    """Numeric id or plain `group/project` path of the test repository (GITLAB_PROJECT_ID)."""
    gitlab_ref: str | None = None
    """Branch or tag to read; None means the project's default branch (GITLAB_REF)."""

    output_dir: Path = DEFAULT_OUTPUT_DIR
    """Root of the output tree the .robot files are written under (OUTPUT_DIR)."""
    redis_url: str = DEFAULT_REDIS_URL
    """Redis used as Celery broker, result backend and job store (REDIS_URL)."""

    writer_max_rounds: int = Field(DEFAULT_MAX_ROUNDS, ge=1, le=100)
    """Model turns allowed per job, repairs included."""
    writer_max_repairs: int = Field(DEFAULT_MAX_REPAIRS, ge=0, le=10)
    """Turns in which the model may fix an answer that failed validation."""
    writer_timeout_s: float = Field(DEFAULT_JOB_TIMEOUT_S, gt=0)
    """Wall-clock budget of one job, enforced inside the coroutine."""
    celery_visibility_timeout_s: int | None = Field(None, ge=1)
    """Redis delivers a task again when it stays unacknowledged this long, seconds. None: twice the
    job timeout plus 30 min. Lower than a job's run time, jobs are delivered twice (the duplicate is
    dropped at its claim, but holds a slot meanwhile); dead workers' jobs are resent by the lease."""
    worker_lease_s: float = Field(DEFAULT_LEASE_S, ge=2)
    """A running job whose worker process has not renewed its lease for this long (the process
    died) is sent again to another worker. Renewed every quarter of it."""
    worker_shutdown_s: float = Field(DEFAULT_SHUTDOWN_S, ge=2)
    """A worker asked to stop (SIGTERM: a warm shutdown) exits within this many seconds: jobs that
    have not finished by then are handed back (they resume on another worker, from their last
    completed round, and the hand-back is not counted as a failure)."""
    job_retry_window_s: float = Field(DEFAULT_RETRY_WINDOW_S, gt=0)
    """A job whose first attempt started longer ago than this fails at its next retryable error:
    its retry budget is bounded by time as well as by count (JOB_RETRY_WINDOW_S)."""
    fleet_pause_after: int = Field(DEFAULT_PAUSE_AFTER, ge=0)
    """When this many different jobs in a row fail on the model provider (or on the MCP server),
    the fleet pauses: no new attempt starts until a probe finds it answering again, and the
    attempts it fails meanwhile do not spend their job's retry budget. 0 turns the pause off; 1 is
    refused (one job failing on its own would pause everyone)."""
    writer_journal: bool = True
    """Journal each completed round of the writer in Redis, so that a new attempt of the job (after a
    worker died, a retryable failure, a redelivery) continues from the last one (WRITER_JOURNAL)."""
    writer_temperature: float | None = 0.1
    """Sampling temperature; None means the provider default."""
    tool_timeout_s: float = Field(DEFAULT_TOOL_TIMEOUT_S, gt=0)
    """Timeout of one MCP tool call."""
    tool_result_max_chars: int = Field(DEFAULT_TOOL_RESULT_MAX_CHARS, ge=1000)
    """Tool results longer than this are cut, with a marker, before the model sees them."""
    spec_max_bytes: int = Field(DEFAULT_SPEC_MAX_BYTES, ge=1024)
    """Spec files larger than this are rejected."""
    writer_verify: bool = Field(True, validation_alias=AliasChoices("writer_verify", "writer_grounding"))
    """Verify every suite (static checks, the repository's rules, execution when on) before accepting
    it; off, any suite that parses is accepted and its verdict is `unverified` (WRITER_VERIFY; the
    older name WRITER_GROUNDING is read too)."""
    writer_review: bool = True
    """Have a reviewer model judge every suite against the convention's prose and the spec's
    acceptance criteria (WRITER_REVIEW); off, the verdict says the review was skipped."""
    reviewer_temperature: float | None = 0.0
    """The reviewer's sampling temperature; None means the provider default."""
    reviewer_format: Literal["auto", "json_schema", "tool", "json"] = "auto"
    """How the reviewer answers its schema: the provider's JSON-schema response format, a forced
    function call, or strict JSON; auto tries them in that order and keeps the first that works."""
    writer_format: bool = True
    """Format suites with Robocop's formatter (the repository's configuration) before checking them."""
    writer_execute: bool = False
    """Run each suite with Robot Framework before accepting it (the team's own keywords, against
    whatever system they point at); failing tests go back to the writer."""
    writer_execute_timeout_s: float = Field(DEFAULT_EXECUTE_TIMEOUT_S, gt=0)
    """Wall-clock limit of one suite run."""
    writer_execute_options: str = ""
    """Robot options added to the repository's own (`.robot-fleet.toml` run.options), shell syntax."""
    writer_execute_env: str = ""
    """Comma-separated environment variables passed to suite runs (secrets never are)."""
    writer_execute_concurrency: int | None = Field(None, ge=1, le=64)
    """Suite runs at once per worker process; None: the number of CPUs."""
    write_failing_suites: bool = True
    """Write suites whose verdict is `failing` (a person can finish them); false keeps them out of
    the output tree (they stay in Redis and the report)."""
    robocop_threshold: str = Field("E", pattern="^[EWIewi]$")
    """Lowest Robocop severity that sends a suite back for repair: E (errors), W or I."""
    robocop_ignore: str = ""
    """Comma-separated Robocop rule ids or names never reported (whitespace rules: the formatter fixes them)."""

    fleet_llm_rpm: int | None = Field(None, ge=1)
    """Fleet-wide model requests per rate window, shared by every worker through Redis; None: no limit."""
    fleet_llm_tpm: int | None = Field(None, ge=1)
    """Fleet-wide model tokens per rate window (estimated before sending); None: no limit."""
    fleet_mcp_rpm: int | None = Field(None, ge=1)
    """Fleet-wide MCP server requests per rate window, shared by every worker; None: no limit."""
    fleet_rate_window_s: float = Field(DEFAULT_RATE_WINDOW_S, ge=1)
    """The window of the three fleet-wide budgets, in seconds: 60 makes them per minute."""

    price_prompt_per_mtok: float | None = Field(None, ge=0)
    """Price of one million prompt tokens not served from the provider's cache, for the cost in
    `robot-fleet report` (any currency); None: no cost is shown."""
    price_completion_per_mtok: float | None = Field(None, ge=0)
    """Price of one million completion tokens; None: no cost is shown."""
    price_cached_per_mtok: float | None = Field(None, ge=0)
    """Price of one million prompt tokens served from the provider's cache; None: the prompt price."""

    @field_validator(
        "openai_base_url",
        "openai_model_reviewer",
        "reviewer_temperature",
        "gitlab_ref",
        "gitlab_mcp_token",
        "celery_visibility_timeout_s",
        "fleet_llm_rpm",
        "fleet_llm_tpm",
        "fleet_mcp_rpm",
        "writer_execute_concurrency",
        "price_prompt_per_mtok",
        "price_completion_per_mtok",
        "price_cached_per_mtok",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        """An empty variable (as `.env.example` leaves the optional ones) means none."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("writer_execute_options")
    @classmethod
    def _shell_words(cls, value: str) -> str:
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"not valid shell syntax ({exc})") from exc
        return value

    @field_validator("fleet_pause_after")
    @classmethod
    def _not_one(cls, value: int) -> int:
        if value == 1:
            raise ValueError(
                "1 would pause the whole fleet on any one job's failure: 0 (no pause) or 2 or more"
            )
        return value

    def execute_options(self) -> list[str]:
        return shlex.split(self.writer_execute_options)

    def execute_env_names(self) -> list[str]:
        return [name.strip() for name in self.writer_execute_env.split(",") if name.strip()]

    def mcp_headers(self) -> dict[str, str]:
        """The auth header for the MCP server, built from the configured name and token."""
        if self.gitlab_mcp_token is None:
            return {}
        token = self.gitlab_mcp_token.get_secret_value()
        if self.gitlab_mcp_auth_header.lower() == "authorization":
            return {"Authorization": f"Bearer {token}"}
        return {self.gitlab_mcp_auth_header: token}
