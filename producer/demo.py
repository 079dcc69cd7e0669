"""`robot-fleet demo`: the whole product on the embedded default, nothing to configure.

Uses REDIS_URL when a Redis answers there, else starts a private redis-server under
`.robot-fleet/`; starts the offline MCP server on `examples/framework`, the scripted model and a
Celery worker; runs the example sprint with progress, collecting into `./generated`; prints the
summary and the commands to look further. The end, an error or Ctrl-C stops everything it started
(`--keep` waits for Ctrl-C first, with Flower running, to look around).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from producer.fleet_cmds import make_plan, print_plan, run_batch
from producer.local_redis import LocalRedis, free_port, redis_answers
from producer.procs import Child, robot_fleet_command, start_child
from worker.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = PROJECT_ROOT / "examples"
STATE_DIR = Path(".robot-fleet")
DEMO_PROJECT_ID = "42"
DEMO_CONCURRENCY = 8
DEMO_BATCH = "demo"


@contextlib.contextmanager
def demo_redis(settings: Settings, console: Console) -> Iterator[tuple[str, bool]]:
    """The Redis URL to use and whether it is a private server that stops with the demo: the one
    REDIS_URL names when it was set (environment or .env) and answers, else a private one — the
    demo never writes into whatever Redis happens to answer on the default port."""
    explicit = "redis_url" in settings.model_fields_set
    if explicit and redis_answers(settings.redis_url):
        console.print(f"using the Redis at REDIS_URL ({_safe(settings.redis_url)})", highlight=False)
        yield settings.redis_url, False
        return
    server = LocalRedis(directory=(STATE_DIR / "redis").resolve(), appendonly=True)
    why = "no Redis at REDIS_URL" if explicit else "REDIS_URL is not set"
    console.print(f"{why}: starting a private redis-server on port {server.port} under {STATE_DIR}/")
    with server:
        yield server.url, True


def _safe(url: str) -> str:
    return url.split("@")[-1] if "@" in url else url


def demo_env(redis_url: str, mcp_port: int, llm_port: int) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "OPENAI_API_KEY": "demo-not-a-secret",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
        "OPENAI_MODEL_WRITER": "fake-writer",
        "GITLAB_MCP_URL": f"http://127.0.0.1:{mcp_port}/mcp",
        "GITLAB_PROJECT_ID": DEMO_PROJECT_ID,
        "GITLAB_REF": "main",
        "WRITER_EXECUTE": "true",  # the example framework simulates its backend: its suites really run
    }


@contextlib.contextmanager
def demo_fleet(redis_url: str, log_dir: Path, console: Console, *, flower: bool) -> Iterator[dict[str, str]]:
    """Stand-ins and a worker as child processes; stopped (whole process groups) on exit."""
    children: list[Child] = []
    mcp_port, llm_port = free_port(), free_port()
    env = demo_env(redis_url, mcp_port, llm_port)
    try:
        repo = str(EXAMPLES / "framework")
        mcp = robot_fleet_command(
            "mcp-serve",
            "--repo",
            repo,
            "--port",
            str(mcp_port),
            "--project-id",
            DEMO_PROJECT_ID,
            "--log-level",
            "WARNING",
        )
        children.append(start_child("mcp-server", mcp, log_dir, ready_port=("127.0.0.1", mcp_port)))
        llm = robot_fleet_command(
            "fake-llm", "--port", str(llm_port), "--chunk-latency", "0.002", "--log-level", "warning"
        )
        children.append(start_child("fake-llm", llm, log_dir, ready_port=("127.0.0.1", llm_port)))
        console.print(f"MCP server {env['GITLAB_MCP_URL']}  model {env['OPENAI_BASE_URL']}", highlight=False)
        worker = robot_fleet_command(
            "worker", "--concurrency", str(DEMO_CONCURRENCY), "--without-mingle", "--without-gossip"
        )
        children.append(start_child("worker", worker, log_dir, env=env))
        if flower:
            port = free_port() if _busy(5555) else 5555
            cmd = robot_fleet_command("flower", "--port", str(port))
            children.append(start_child("flower", cmd, log_dir, env=env, ready_port=("127.0.0.1", port)))
            console.print(f"Flower: http://127.0.0.1:{port}", highlight=False)
        yield env
    finally:
        for child in reversed(children):
            child.stop()
        console.print(f"stopped {len(children)} demo processes (logs in {log_dir})")


def _busy(port: int) -> bool:
    from producer.procs import port_open

    return port_open("127.0.0.1", port)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, timeout, docker stop) cleans up like Ctrl-C


def run_demo(console: Console, output_dir: Path, *, keep: bool = False) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    base = Settings()
    log_dir = (STATE_DIR / "logs" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    try:
        with (
            demo_redis(base, console) as (redis_url, private),
            demo_fleet(redis_url, log_dir, console, flower=keep) as env,
        ):
            overrides: dict[str, Any] = {name.lower(): value for name, value in env.items()}
            settings = Settings(**overrides, output_dir=output_dir)
            plan = make_plan(settings, EXAMPLES / "specs", output_dir, "*.json", False, True)
            print_plan(console, plan)
            batches: list[str] = []
            code = asyncio.run(run_batch(settings, plan, DEMO_BATCH, console, on_batch=batches.append))
            _hints(console, redis_url, batches[0] if batches else "<batch>", keep=keep, private=private)
            if keep:
                console.print("[bold]--keep:[/] everything stays up until Ctrl-C")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
            return code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopped everything the demo started[/]")
        return 130


def _hints(console: Console, redis_url: str, batch_id: str, *, keep: bool, private: bool) -> None:
    """What to try next, one short command a line (readable at 80 columns). Without --keep a private
    Redis stops with the demo: its address would be a dead end, so only --keep is offered."""
    if private and not keep:
        console.print(
            "\nto look around: robot-fleet demo --keep (the fleet, Flower and its Redis stay up, and it"
            " prints the commands for them; this demo's Redis stops now)",
            highlight=False,
        )
        return
    console.print("\nlook further, in another terminal:", highlight=False)
    lines = [
        (f"export REDIS_URL={redis_url}", ""),
        ("robot-fleet status", "batches"),
        (f"robot-fleet status {batch_id}", "its jobs"),
        (f"robot-fleet logs {batch_id}:SHOP-130", "one job's model output"),
        (f"robot-fleet report {batch_id}", "the review page"),
    ]
    for command, what in lines:
        console.print(f"  {command}" + (f"    # {what}" if what else ""), highlight=False, soft_wrap=True)
