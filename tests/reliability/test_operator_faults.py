"""Issue 16: what an operator does to a batch while `run` follows it. `robot-fleet retry` from
another terminal once some jobs failed for good (run waits for them, collects their files, and its
final table and summary say what the store says); the output folder read-only mid-batch (every file
written once it is writable again, one line per refused file, no traceback, `collect`'s exit code
honest; a collector started again under a dead one's name takes over its entries at once).

Real parts: a private redis-server db, a real threads-pool worker, the scripted model and the MCP
server over HTTP, the CLI as a user runs it. A read-only folder refuses root too only without
CAP_DAC_OVERRIDE: as root, the collecting processes run with it (and its kin) dropped."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producer.local_redis import LocalRedis
from producer.procs import Child, robot_fleet_command, start_child
from tests.conftest import StandIn, writer_env
from tests.fleet_harness import Fleet, fault_spec, spec_dir, wait_until
from tests.reliability.lengths import MODEL_LATENCY, READ_ONLY_S, SPECS
from worker import keys

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

DB = 0


@pytest.fixture
def make_fleet(
    redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn, tmp_path: Path
) -> Iterator[Callable[[str], Fleet]]:
    """A fleet on this module's db (flushed) with a threads worker of 4, the model at `knobs`."""
    fleets: list[Fleet] = []

    def make(knobs: str) -> Fleet:
        url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
        fleet = Fleet(writer_env(mcp_server, fake_llm, knobs=knobs, REDIS_URL=url, OPENAI_MAX_RETRIES="0"), url,
                      tmp_path / "logs")  # fmt: skip
        fleet.redis.flushdb()
        fleets.append(fleet)
        fleet.start_worker("worker", "--pool", "threads", "--concurrency", "4")
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop_all()


@pytest.fixture
def fleet(make_fleet: Callable[[str], Fleet]) -> Fleet:
    return make_fleet(MODEL_LATENCY)


# -- retry while run follows the batch --------------------------------------------------------------

REJECTED = 4
"""Specs whose first model request of each conversation is refused with a 400 (permanent: the job
fails at once); their second attempt goes through, slower than the rest (it outlives them)."""
LATENCY_S, REJECTED_LATENCY_S = 1.5, 4.0
"""The model's latency: the rest of the batch lasts long enough for a `retry` started on a loaded
machine to land while `run` follows it; the retried jobs' is longer still."""


def state_counts(fleet: Fleet, batch_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in fleet.jobs(batch_id):
        counts[job["state"]] = counts.get(job["state"], 0) + 1
    return counts


def test_retry_from_another_terminal_while_run_follows_the_batch(
    make_fleet: Callable[[str], Fleet], tmp_path: Path, report: Callable[..., None], fake_llm: StandIn
) -> None:
    fleet = make_fleet(f"latency={LATENCY_S}")
    rejected = {f"00-rejected-{n}.json": fault_spec(f"REJ-{n}", fail_first=1, fail_status=400,
                                                    latency=REJECTED_LATENCY_S)
                for n in range(1, REJECTED + 1)}  # fmt: skip
    out = tmp_path / "out"
    run = fleet.start("run", "run", str(spec_dir(tmp_path, SPECS, rejected)), "--batch", "t-retry-run",
                      "--output-dir", str(out))  # fmt: skip
    batch_id = fleet.latest_batch()
    ids = {f"{batch_id}:REJ-{n}" for n in range(1, REJECTED + 1)}
    wait_until(lambda: all(fleet.job(job_id).get("state") == "failed" for job_id in ids), 60,
               "the rejected jobs failed")  # fmt: skip
    retried = fleet.cli("retry", batch_id, "--kind", "permanent")
    others_left = sum(job["state"] != "collected" for job in fleet.jobs(batch_id) if job["job_id"] not in ids)
    assert others_left > 0 and run.alive(), "the retry landed while run still followed the batch"
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"{REJECTED} failed jobs of {batch_id} sent again" in retried.stdout
    code = run.process.wait(timeout=180)
    exited_at = time.time()
    text = run.log_text()
    assert code == 0, text[-4000:]

    jobs = fleet.assert_written_once(batch_id, out, len(SPECS) + REJECTED)
    again = [job for job in jobs if job["job_id"] in ids]
    assert {job["attempt"] for job in again} == {"2"} and all(job["error_kind"] == "" for job in again)
    rest = [job for job in jobs if job["job_id"] not in ids]
    outlived_s = max(float(job["finished_at"]) for job in again) - max(
        float(job["collected_at"]) for job in rest
    )
    assert outlived_s > 0, "a retried job was still running when the others were all collected"
    assert all(float(job["collected_at"]) <= exited_at for job in jobs)
    shown = final_table(text, jobs)
    assert shown == {job["spec_id"]: (job["state"], job["verdict"], job["attempt"], job["target_path"])
                     for job in jobs}, shown  # fmt: skip
    verdicts = {name: sum(job["verdict"] == name for job in jobs) for name in ("verified", "failing")}
    summary = text.rstrip().splitlines()[-1]
    assert summary.startswith(f"{len(jobs)} suites: {verdicts['verified']} verified, {verdicts['failing']} failing; "
                              f"0 failed, 0 rejected"), summary  # fmt: skip
    assert progress_counts(text) == (len(jobs), 0, 0, 0), "run's last progress line: all ok, none failed"
    assert "Traceback" not in text and "model_rejected" not in text
    conversations = [c for c in fake_llm.stats()["conversations"].values()
                     if c["spec_id"].startswith("REJ-") and not c["review"]]  # fmt: skip
    assert len(conversations) == REJECTED and all(c["faults"] == 1 for c in conversations)
    report(16, f"`retry BATCH` from another terminal while `run` follows: {REJECTED} of {len(jobs)} jobs "
               "failed for good with a 400, then sent again (second attempt slower than the rest)",
           jobs=len(jobs), failed_then_retried=REJECTED, collected=len(jobs), run_exit_code=code,
           retried_done_after_the_rest_s=round(outlived_s, 1), table_rows_matching_store=len(shown),
           files_written_once=len(jobs), model_400s=sum(c["faults"] for c in conversations),
           others_unfinished_at_retry=others_left)  # fmt: skip


def final_table(text: str, jobs: list[dict[str, str]]) -> dict[str, tuple[str, str, str, str]]:
    """The rows of run's final table: spec -> (state, verdict, attempt, output path)."""
    specs = {job["spec_id"] for job in jobs}
    table = text[text.rindex("\nbatch ") :]
    rows = {}
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in specs:
            rows[cells[0]] = (cells[1], cells[2], cells[3], cells[-1])
    return rows


def progress_counts(text: str) -> tuple[int, int, int, int]:
    """`16 ok 0 failed 0 running 0 waiting` of run's last progress line."""
    found = re.findall(r"(\d+) ok (\d+) failed (\d+) running (\d+) waiting", text)
    assert found, text[-3000:]
    ok, failed, running, waiting = (int(n) for n in found[-1])
    return ok, failed, running, waiting


# -- the output folder read-only mid-batch ----------------------------------------------------------

BYPASS = "-dac_override,-dac_read_search,-fowner"
"""The capabilities that let root write where the permission bits say no."""


@pytest.fixture(scope="module")
def as_a_user(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A prefix for the commands that collect: none for a user; for root, `setpriv` dropping the
    capabilities that bypass permission bits (root stays uid 0: it reads and owns what it did).
    Skipped, saying why, when a read-only folder would not refuse the probe's write."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a read-only folder would not refuse root's writes")
        prefix = [setpriv, "--inh-caps=-all", "--bounding-set", BYPASS]
    folder = tmp_path_factory.mktemp("read-only-probe")
    folder.chmod(0o555)
    try:
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
    finally:
        folder.chmod(0o755)
    if probe.returncode == 0 or "PermissionError" not in probe.stderr:
        pytest.skip(f"a read-only folder does not refuse a write here ({' '.join(prefix) or 'uid '}"
                    f"{os.geteuid()}: exit {probe.returncode}, {probe.stderr.strip()[-200:]!r})")  # fmt: skip
    return prefix


class ReadOnly:
    """Every folder of an output tree without write permission (files keep theirs), then back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modes: dict[Path, int] = {}
        self.started = self.ended = 0.0

    def __enter__(self) -> ReadOnly:
        folders = [self.root, *(path for path in self.root.rglob("*") if path.is_dir())]
        self.modes = {folder: folder.stat().st_mode & 0o7777 for folder in folders}
        for folder in folders:
            folder.chmod(0o555)
        self.started = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        for folder, mode in self.modes.items():
            folder.chmod(mode)
        self.ended = time.time()


def start_as(prefix: list[str], fleet: Fleet, name: str, *args: str) -> Child:
    child = start_child(name, [*prefix, *robot_fleet_command(*args)], fleet.log_dir,
                        env={**fleet.env, "COLUMNS": "220"})  # fmt: skip
    fleet.children.append(child)
    return child


def cli_as(
    prefix: list[str], fleet: Fleet, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *robot_fleet_command(*args)], env={**os.environ, **fleet.env, "COLUMNS": "220"},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


REFUSED = re.compile(r"^could not write (\S+): (.+); trying again in \d+s$", re.M)
WRITTEN_AFTER = re.compile(r"^wrote (\S+) after (\d+) failed tries \((.+)\)$", re.M)


def test_output_folder_read_only_mid_batch_run_writes_every_file_after(
    fleet: Fleet, as_a_user: list[str], tmp_path: Path, report: Callable[..., None]
) -> None:
    out = tmp_path / "out"
    run = start_as(as_a_user, fleet, "run", "run", str(spec_dir(tmp_path, SPECS)), "--batch", "t-read-only",
                   "--output-dir", str(out))  # fmt: skip
    batch_id = fleet.latest_batch()
    wait_until(lambda: state_counts(fleet, batch_id).get("collected", 0) >= 2, 60, "the first files written")
    with ReadOnly(out) as fault:
        wait_until(lambda: REFUSED.search(run.log_text()), 30, "run told of a refused file")
        time.sleep(max(0.0, READ_ONLY_S - (time.time() - fault.started)))
        during = state_counts(fleet, batch_id)
    assert during.get("succeeded", 0) >= 1, f"files were left to write when the folder came back: {during}"
    code = run.process.wait(timeout=120)
    text = run.log_text()
    assert code == 0, text[-4000:]
    jobs = fleet.assert_written_once(batch_id, out, len(SPECS))
    refused = REFUSED.findall(text)
    written = WRITTEN_AFTER.findall(text)
    paths = [path for path, _ in refused]
    assert len(paths) == len(set(paths)), f"one line per refused file: {refused}"
    assert sorted(paths) == sorted(path for path, _, _ in written), (refused, written)
    assert all(reason.startswith("Permission denied") for _, reason in refused), refused
    targets = {str(out / job["target_path"]): job for job in jobs}
    assert set(paths) <= set(targets), (paths, list(targets))
    for path in paths:
        # written after the folder came back; or, caught by the fault as it began, the file was whole
        # but the manifest refused (its entry is settled after without rewriting the file)
        mtime = os.stat(path).st_mtime
        assert mtime >= fault.ended - 0.05 or mtime <= fault.started, (
            f"{path} written after the folder came back"
        )
    in_window = [path for path in targets if fault.started < os.stat(path).st_mtime < fault.ended]
    assert in_window == [], "no file written while the folder was read-only"
    assert "Traceback" not in text and "PermissionError" not in text
    report(16, f"output folder read-only {READ_ONLY_S:.0f} s mid-batch while `run` collects ({len(SPECS)} specs)",
           jobs=len(jobs), collected=len(jobs), files_refused=len(paths),
           lines_per_refused_file=max(Counter(paths).values()), written_after_lines=len(written),
           tracebacks=text.count("Traceback"), run_exit_code=code,
           last_file_after_fault_s=round(max(float(job["collected_at"]) for job in jobs) - fault.ended, 1))  # fmt: skip


GAVE_UP = re.compile(r"^could not write (\S+): (.+) \(tried (\d+) times; left pending\)$", re.M)
LEFT = re.compile(r"^(\d+) results not written \((\d+) refused by the filesystem, above\)", re.M)
TAKEOVER_SPECS = 4


def test_a_collector_killed_on_a_read_only_folder_is_taken_over_at_once_and_collect_tells_what_is_left(
    fleet: Fleet, as_a_user: list[str], tmp_path: Path, report: Callable[..., None]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    specs = spec_dir(tmp_path, SPECS[:TAKEOVER_SPECS])
    queued = fleet.cli("enqueue", str(specs), "--batch", "t-takeover", "--output-dir", str(out))
    assert queued.returncode == 0, queued.stdout + queued.stderr
    batch_id = fleet.latest_batch()
    jobs = fleet.wait_states(batch_id, {"succeeded"})
    targets = sorted(str(out / job["target_path"]) for job in jobs)
    with ReadOnly(out) as fault:
        follower = start_as(as_a_user, fleet, "collect-follow", "collect", "--follow", "--batch", batch_id)
        wait_until(lambda: len(REFUSED.findall(follower.log_text())) == TAKEOVER_SPECS, 30,
                   "the collector told of every refused file")  # fmt: skip
        follower.signal(signal.SIGKILL)
        assert follower.process.wait(timeout=10) == -9
        held = fleet.redis.xpending(keys.batch_results(batch_id), keys.COLLECTOR_GROUP)
        assert held["pending"] == TAKEOVER_SPECS, held
        started = time.monotonic()
        again = cli_as(as_a_user, fleet, "collect", "--batch", batch_id)
        took_s = time.monotonic() - started
        while_refused = again.stdout + again.stderr
        assert again.returncode == 1, while_refused
        gave_up = GAVE_UP.findall(while_refused)
        assert sorted(path for path, _, _ in gave_up) == targets, while_refused
        left = LEFT.search(while_refused)
        assert left is not None and left.groups() == (str(TAKEOVER_SPECS),) * 2, while_refused
        assert took_s < 30, "taken over at once, not after the 30 s a dead collector's entries must sit idle"
        assert "waiting for" not in while_refused and "Traceback" not in while_refused
        time.sleep(max(0.0, READ_ONLY_S - (time.time() - fault.started)))
    started = time.monotonic()
    after = cli_as(as_a_user, fleet, "collect", "--batch", batch_id)
    after_s = time.monotonic() - started
    assert after.returncode == 0, after.stdout + after.stderr
    assert (
        after.stdout.count("collected ") == TAKEOVER_SPECS and "Traceback" not in after.stdout + after.stderr
    )
    assert after_s < 30, "the entries the last collect left were its own: taken over at once"
    fleet.assert_written_once(batch_id, out, TAKEOVER_SPECS)
    report(16, f"`collect --follow` SIGKILLed on a read-only output folder ({TAKEOVER_SPECS} files refused), "
               "`collect` run again under the same name while read-only, then after",
           files=TAKEOVER_SPECS, refused=len(gave_up), collect_exit_while_read_only=again.returncode,
           said_left=int(left.group(1)), takeover_s=round(took_s, 1),
           collect_exit_after=after.returncode, collect_after_s=round(after_s, 1),
           tracebacks=(while_refused + after.stdout + after.stderr).count("Traceback"))  # fmt: skip
