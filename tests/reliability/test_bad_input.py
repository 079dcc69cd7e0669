"""Issue 6, item 6: a corpus of bad spec files next to valid ones, through the real fleet's `run`.

Every bad file is refused with exactly one line naming it and giving the reason; no traceback; the
valid siblings are generated and collected; nothing is written for the bad ones. The corpus is
`tests/unit/bad_specs.py` (also run kind by kind, without the fleet, by tests/unit/test_spec.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producer.local_redis import LocalRedis
from tests.conftest import StandIn
from tests.fleet_harness import Fleet, start_fleet
from tests.unit.bad_specs import KINDS, SPEC_MAX_BYTES, VALID_IDS, VALID_SPECS, build_corpus, shown
from worker.spec import load_spec_file

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn
) -> Iterator[Fleet]:
    for fleet in start_fleet(
        tmp_path_factory, redis_server, mcp_server, fake_llm, db=5, pool="threads", concurrency=4
    ):
        fleet.env["SPEC_MAX_BYTES"] = str(SPEC_MAX_BYTES)  # the CLI's limit, whatever the shell says
        yield fleet


def test_bad_input_corpus_is_refused_line_by_line_and_valid_siblings_complete(
    fleet: Fleet, tmp_path: Path, report: Callable[..., None]
) -> None:
    specs, out = tmp_path / "specs", tmp_path / "out"
    corpus = build_corpus(specs, tmp_path / "outside")
    bad_files = [path for paths in corpus.values() for path in paths]
    assert len(corpus) >= 20

    done = fleet.cli("run", str(specs), "--batch", "t-bad-input", "--output-dir", str(out), timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output  # rejections make the run fail, after the valid specs ran
    assert "Traceback" not in output

    lines = done.stdout.splitlines()
    rejected_lines = [line for line in lines if line.startswith("rejected ")]
    for kind in KINDS:
        for path in corpus[kind.name]:
            mine = [line for line in rejected_lines if line.startswith(f"rejected {shown(path)}: ")]
            assert len(mine) == 1, (kind.name, mine)
            assert kind.reason in mine[0], (kind.name, mine[0])
    assert len(rejected_lines) == len(bad_files), rejected_lines
    summary = f"3 to generate, 0 up to date, {len(bad_files)} rejected"
    assert any(line == summary or line.startswith(f"{summary}, ") for line in lines), lines[-5:]

    targets = {load_spec_file(path, max_bytes=SPEC_MAX_BYTES).target_path for path in VALID_SPECS}
    written = {path.relative_to(out).as_posix() for path in out.rglob("*.robot")}
    assert written == targets  # the valid ones, and nothing for the bad ones
    batch_id = fleet.batch_of(done.stdout)
    status = json.loads(fleet.cli("status", batch_id, "--json").stdout)
    assert sorted(job["spec_id"] for job in status["jobs"]) == list(VALID_IDS)
    assert {job["state"] for job in status["jobs"]} == {"collected"}

    report(
        6,
        f"bad-input corpus: {len(corpus)} kinds next to 3 valid specs",
        kinds=len(corpus),
        refused=len(bad_files),
        valid_collected=len(status["jobs"]),
        tracebacks=output.count("Traceback"),
    )
