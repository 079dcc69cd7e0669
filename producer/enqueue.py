"""From a directory of specs to a batch in Redis and one Celery task per valid spec.

Every file is checked against the spec contract; a rejected file is reported with its reason and
never stops its siblings. Specs whose output is up to date (manifest) are skipped unless forced.
Task arguments carry the job id only (Flower shows the spec id); the spec itself is in Redis.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from producer.manifest import is_up_to_date, load_entries
from worker.adapters.store import Store
from worker.agent.prompt import PROMPT_VERSION
from worker.errors import SpecError
from worker.records import BatchRecord, NewJob, Rejected
from worker.settings import Settings
from worker.spec import Spec, find_conflicts, id_from_file_name, load_spec_file, printable

_BATCH_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Rejection:
    source: str
    reason: str

    @property
    def spec_id(self) -> str:
        """The id its file name gives (what `logs BATCH:SPEC_ID` is looked up by)."""
        return id_from_file_name(self.source)


@dataclass
class Plan:
    specs_dir: Path
    output_dir: Path
    accepted: list[Spec] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[Spec] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    """Files of the specs directory the pattern does not match (listed, never silently dropped)."""


def spec_files(specs_dir: Path, pattern: str, recursive: bool) -> list[Path]:
    """Every entry the pattern matches, whatever it is: the loader refuses what is not a regular
    file (a directory, a FIFO, a dangling symlink) with its reason instead of skipping it silently.
    Recursive, matching directories are walked, not refused."""
    if not specs_dir.is_dir():
        raise SpecError(f"{specs_dir}: not a directory of spec files")
    found = specs_dir.rglob(pattern) if recursive else specs_dir.glob(pattern)
    return sorted(path for path in found if not (recursive and path.is_dir()))


def plan_batch(specs_dir: Path, output_dir: Path, settings: Settings, *, pattern: str = "*.json",
               recursive: bool = False, force: bool = False) -> Plan:  # fmt: skip
    plan = Plan(specs_dir=specs_dir, output_dir=output_dir)
    root = specs_dir.resolve()
    loaded: list[Spec] = []
    for path in spec_files(specs_dir, pattern, recursive):
        try:
            _check_inside(path, root)
            loaded.append(load_spec_file(path, max_bytes=settings.spec_max_bytes))
        except SpecError as exc:
            plan.rejected.append(Rejection(printable(str(path)), exc.message))
        except Exception as exc:  # one file must never stop its siblings, nor print a traceback
            reason = f"{printable(str(path))}: could not be read as a spec ({type(exc).__name__}: {exc})"
            plan.rejected.append(Rejection(printable(str(path)), printable(reason)))
    plan.ignored = _ignored(specs_dir, pattern, recursive)
    conflicted = _reject_conflicts(loaded, plan)
    entries = {} if force else load_entries(output_dir)
    wanted = _generation_inputs(settings)
    for spec in loaded:
        if spec.source in conflicted:
            continue
        if not force and is_up_to_date(
            entries, output_dir, spec.target_path, {"spec_sha256": spec.sha256, **wanted}
        ):
            plan.skipped.append(spec)
        else:
            plan.accepted.append(spec)
    return plan


def _ignored(specs_dir: Path, pattern: str, recursive: bool) -> list[str]:
    everything = specs_dir.rglob("*") if recursive else specs_dir.glob("*")
    matching = set(specs_dir.rglob(pattern) if recursive else specs_dir.glob(pattern))
    return sorted(printable(str(path)) for path in everything if path not in matching and not path.is_dir())


def _check_inside(path: Path, root: Path) -> None:
    """Refuse a symlink (or a symlink loop) that leads out of the specs directory."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # Python < 3.13 raises RuntimeError on a symlink loop
        raise SpecError(
            f"{printable(str(path))}: symlink loop (the link points back to itself); replace it with the spec file"
        ) from exc
    if not resolved.is_relative_to(root):
        raise SpecError(
            f"{printable(str(path))}: symlink pointing outside the specs directory (to "
            f"{printable(str(resolved))}); copy the spec into the directory instead"
        )


def _reject_conflicts(specs: list[Spec], plan: Plan) -> set[str]:
    rejected: set[str] = set()
    for target, group in find_conflicts(specs).items():
        for spec in group:
            others = ", ".join(other.source for other in group if other is not spec)
            plan.rejected.append(
                Rejection(spec.source, f"{spec.source}: target path {target!r} also claimed by {others}")
            )
            rejected.add(spec.source)
    seen: dict[str, Spec] = {}
    for spec in specs:
        if spec.source in rejected:
            continue
        if spec.spec_id in seen:
            first = seen[spec.spec_id].source
            plan.rejected.append(
                Rejection(spec.source, f"{spec.source}: spec id {spec.spec_id!r} already used by {first}")
            )
            rejected.add(spec.source)
        else:
            seen[spec.spec_id] = spec
    return rejected


def _generation_inputs(settings: Settings) -> dict[str, str]:
    return {
        "model": settings.openai_model_writer,
        "ref": settings.gitlab_ref or "",
        "prompt_version": PROMPT_VERSION,
    }


def new_batch_id(name: str | None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = _BATCH_NAME_RE.sub("-", name).strip("-")[:40] if name else "batch"
    return f"{label}-{stamp}-{secrets.token_hex(2)}"


async def record_batch(store: Store, plan: Plan, settings: Settings, batch_id: str) -> list[tuple[str, Spec]]:
    """Record the batch and its jobs (each dispatched: its message is to be sent next)."""
    inputs = _generation_inputs(settings)
    batch = BatchRecord(
        batch_id=batch_id, created_at=time.time(), specs_dir=str(plan.specs_dir.resolve()),
        output_dir=str(plan.output_dir.resolve()), total=len(plan.accepted),
        rejected=tuple(Rejected(r.source, r.reason, r.spec_id) for r in plan.rejected),
        skipped=tuple(spec.spec_id for spec in plan.skipped), ignored=tuple(plan.ignored),
        project_id=settings.gitlab_project_id, write_failing=settings.write_failing_suites, **inputs,
    )  # fmt: skip
    pairs = [(f"{batch_id}:{spec.spec_id}", spec) for spec in plan.accepted]
    jobs = [
        NewJob(job_id=job_id, batch_id=batch_id, spec_id=spec.spec_id, source=spec.source,
               target_path=spec.target_path, spec_sha256=spec.sha256, spec_json=spec.to_json(), **inputs)
        for job_id, spec in pairs
    ]  # fmt: skip
    await store.create_batch(batch, jobs)
    return pairs
