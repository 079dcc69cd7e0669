"""The import direction (STYLE.md): every import of worker/, producer/ and offline/, lazy ones
included, is walked from the source; a layer that reaches up fails here.

    worker/*.py       the contract (settings, spec, errors, keys, records, redaction): itself only
    worker/agent      the contract and itself: no adapter, no fleet runtime, no SDK or Celery
    worker/adapters   the contract, the agent's interfaces and itself: never the fleet runtime
    worker/fleet      anything in worker/
    producer          worker/ but the fleet runtime (only the `worker` and `flower` commands start it)
    offline           neither worker/ nor producer/
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDKS = ("celery", "kombu", "redis", "httpx", "httpx2", "openai", "mcp", "mcp_types", "limits")
FLEET_COMMANDS = ("worker", "flower")


def imports(path: Path) -> Iterator[tuple[str, str]]:
    """(module imported, the top-level function it is imported in, or '')."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for top in tree.body:
        function = top.name if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef) else ""
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                yield from ((alias.name, function) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield node.module, function


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "worker":
        return (
            f"worker.{parts[1]}"
            if len(parts) > 2 and parts[1] in ("agent", "adapters", "fleet")
            else "worker"
        )
    return parts[0]


def under(module: str, *prefixes: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def violations() -> list[str]:
    found = []
    for package in ("worker", "producer", "offline"):
        for path in sorted((ROOT / package).rglob("*.py")):
            source = module_of(path)
            for target, function in imports(path):
                problem = _problem(layer(source), source, target, function)
                if problem:
                    found.append(f"{source} imports {target}: {problem}")
    return found


def _problem(source_layer: str, source: str, target: str, function: str) -> str | None:
    target_layer = layer(target) if under(target, "worker", "producer", "offline") else "third-party"
    if source_layer.startswith("worker") and target_layer in ("producer", "offline"):
        return "worker/ never imports the producer or the stand-ins"
    if source_layer == "worker" and target_layer.startswith("worker."):
        return "the contract imports only the contract"
    if source_layer == "worker.agent" and (
        target_layer in ("worker.adapters", "worker.fleet") or under(target, *SDKS)
    ):
        return "the agent depends on interfaces, never on an adapter, the fleet runtime, an SDK or Celery"
    if source_layer == "worker.adapters" and target_layer == "worker.fleet":
        return "adapters never reach up into the fleet runtime"
    if source_layer == "producer" and target_layer == "worker.fleet":
        if source == "producer.cli" and function in FLEET_COMMANDS:
            return None
        return "the producer runs no fleet runtime (only `robot-fleet worker` and `flower` start one)"
    if source_layer == "offline" and (target_layer == "producer" or target_layer.startswith("worker")):
        return "the stand-ins stand alone"
    return None


def test_no_layer_reaches_up() -> None:
    assert violations() == []


def test_the_walk_sees_lazy_imports_and_would_catch_a_layer_reaching_up() -> None:
    cli = dict(imports(ROOT / "producer" / "cli.py"))
    assert cli.get("worker.fleet.celery_app") in FLEET_COMMANDS, "a lazy import inside a command is seen"
    assert _problem("worker.agent", "worker.agent.loop", "worker.adapters.store", "") is not None
    assert _problem("worker.agent", "worker.agent.loop", "redis.asyncio", "") is not None
    assert _problem("worker", "worker.keys", "worker.agent.loop", "") is not None
    assert _problem("producer", "producer.fleet_cmds", "worker.fleet.jobs", "") is not None
    assert _problem("producer", "producer.cli", "worker.fleet.celery_app", "worker") is None
    assert _problem("offline", "offline.fake_llm.app", "worker.spec", "") is not None
