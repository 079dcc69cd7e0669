"""`robot-fleet demo` (what `make demo` runs): the example sprint on the offline stand-ins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from producer.local_redis import free_port
from producer.manifest import load_entries
from producer.procs import port_open
from tests.conftest import EXAMPLES
from tests.robot_helpers import run_in_framework
from worker.spec import load_spec_file

pytestmark = pytest.mark.integration


def test_demo_verifies_every_example_suite_they_all_pass_when_run_and_it_stops_its_servers(
    tmp_path: Path,
) -> None:
    out = tmp_path / "generated"
    done = subprocess.run(
        [sys.executable, "-m", "producer.cli", "demo", "--output-dir", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "starting a private redis-server" in done.stdout and (tmp_path / ".robot-fleet" / "redis").is_dir()
    specs = [load_spec_file(path, max_bytes=1 << 20) for path in sorted((EXAMPLES / "specs").glob("*.json"))]
    assert len(specs) >= 12
    for spec in specs:
        assert (out / spec.target_path).is_file(), spec.target_path
    assert f"{len(specs)} suites: {len(specs)} verified, 0 failing; 0 failed, 0 rejected" in done.stdout
    ports = [
        int(word.rsplit(":", 1)[1].split("/")[0])
        for word in done.stdout.split()
        if word.startswith("http://")
    ]
    assert len(ports) == 2 and not any(port_open("127.0.0.1", port) for port in ports), (
        "stand-ins left running"
    )

    entries = load_entries(out)
    assert {entry["verdict"] for entry in entries.values()} == {"verified"}, entries
    assert all(entry["checks"]["stages"] for entry in entries.values())
    # as a person runs them: every generated test passes inside the framework
    suites = {spec.target_path: (out / spec.target_path).read_text(encoding="utf-8") for spec in specs}
    ran, passed, failing = run_in_framework(suites, tmp_path)
    assert ran >= len(specs) and passed == ran, failing


def test_demo_stopped_with_sigterm_stops_everything_it_started(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "demo", "--keep", "--output-dir", str(tmp_path / "g")],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )  # fmt: skip
    try:
        lines: list[str] = []
        for line in demo.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "stays up until Ctrl-C" in line:
                break
        ports = {int(port) for port in re.findall(r"(?:http|redis)://127\.0\.0\.1:(\d+)", "".join(lines))}
        assert len(ports) == 4 and all(port_open("127.0.0.1", port) for port in ports), "".join(lines)
    finally:
        demo.terminate()
        rest = demo.communicate(timeout=60)[0]
    assert "stopped 4 demo processes" in rest
    assert not any(port_open("127.0.0.1", port) for port in ports), "servers left running after SIGTERM"
