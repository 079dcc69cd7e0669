"""Issue 6, item 7: with known API key and MCP token values, no trace of either anywhere the fleet
stores or shows things: every key and value of every Redis db (job log streams included), the
worker's DEBUG log, the collector's and the CLI's output, Flower's log and its API and pages.

The model server is the scripted one behind a small proxy that, for two specs, answers as some
OpenAI-compatible gateways do: an error echoing the caller's key (a permanent 401 and a retryable
503), so a secret really travels through the failure paths (job record, Celery retry and failure,
result backend, task events, tracebacks) and the test proves it is masked on every one of them.
A negative control plants the same values in every Redis type, a log file and an encoded form, and
checks the scan finds each one: a scan that finds nothing is not silently blind.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis

from producer.local_redis import LocalRedis, free_port
from producer.procs import robot_fleet_command, start_child
from tests.conftest import EXAMPLES, StandIn, writer_env
from tests.fleet_harness import Fleet, fault_spec, spec_dir

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SPECS = sorted((EXAMPLES / "specs").glob("*.json"))
DB = 8
FLOWER_AUTH = ("qa", "flower-pw-not-a-tested-secret")
ECHO_401 = "K-401"  # the proxy answers 401 echoing the key, as LiteLLM's proxy does
ECHO_503 = "K-503"  # the proxy answers 503 echoing the key on this spec's first request only
HOP_HEADERS = ("content-length", "content-encoding", "transfer-encoding", "connection")


# --- the scan ---------------------------------------------------------------------------------


def _b64_needles(secret: bytes) -> set[bytes]:
    """The secret's base64 at each of the three alignments it can have inside a longer encoded
    blob (the characters that mix in neighbouring bytes dropped), standard and URL-safe."""
    needles: set[bytes] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret).rstrip(b"=")
        total = offset + len(secret)
        head = {0: 0, 1: 2, 2: 3}[offset]
        tail = len(encoded) if total % 3 == 0 else len(encoded) - (total % 3 + 1)
        core = encoded[head:tail]
        needles |= {core, core.replace(b"+", b"-").replace(b"/", b"_")}
    return needles


@dataclass
class Scanner:
    """Counts where any of the secrets shows, raw, as `Bearer <token>` or base64-encoded."""

    secrets: dict[str, str]
    hits: list[tuple[str, str]] = field(default_factory=list)
    texts: int = 0

    def __post_init__(self) -> None:
        self._needles: list[tuple[str, bytes]] = []
        for name, value in self.secrets.items():
            raw = value.encode()
            self._needles.append((name, raw))
            self._needles.append((f"{name} (Bearer)", b"Bearer " + raw))
            self._needles += [(f"{name} (base64)", needle) for needle in _b64_needles(raw)]
            self._needles.append((f"{name} (hex)", raw.hex().encode()))

    def scan(self, where: str, data: bytes | str) -> None:
        blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        self.texts += 1
        for name, needle in self._needles:
            if needle in blob:
                self.hits.append((where, name))


@dataclass
class RedisScan:
    keys: int = 0
    values: int = 0
    log_entries: int = 0
    dbs: int = 0


def scan_redis(url: str, scanner: Scanner) -> RedisScan:
    """Every key of every db, every type: names, values, hash fields, members, stream entries and
    consumer groups."""
    admin = redis.Redis.from_url(url)
    count = RedisScan(dbs=int(admin.config_get("databases")["databases"]))
    admin.close()
    base = url.rsplit("/", 1)[0]
    for db in range(count.dbs):
        client = redis.Redis.from_url(f"{base}/{db}")
        try:
            for key in client.scan_iter(count=500):
                count.keys += 1
                where = f"db{db}:{key.decode(errors='replace')}"
                scanner.scan(f"{where} (name)", key)
                kind = client.type(key).decode()
                values: list[bytes] = []
                if kind == "string":
                    values = [client.get(key) or b""]
                elif kind == "hash":
                    values = [part for item in client.hgetall(key).items() for part in item]
                elif kind == "list":
                    values = client.lrange(key, 0, -1)
                elif kind == "set":
                    values = list(client.smembers(key))
                elif kind == "zset":
                    values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
                elif kind == "stream":
                    entries = client.xrange(key)
                    if key.endswith(b":log"):
                        count.log_entries += len(entries)
                    values = [part for _, fields in entries for item in fields.items() for part in item]
                    for group in client.xinfo_groups(key):
                        values.append(group["name"])
                        values += [c["name"] for c in client.xinfo_consumers(key, group["name"])]
                else:
                    raise AssertionError(f"{where}: a {kind} key the scan cannot read")
                for value in values:
                    count.values += 1
                    scanner.scan(where, value if isinstance(value, bytes) else str(value).encode())
        finally:
            client.close()
    return count


# --- a model gateway that echoes the caller's key in its errors ----------------------------------


class EchoingGateway:
    """Forwards to the scripted model; answers the ECHO specs with errors carrying the API key."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.echoed = 0
        self._seen_503: set[str] = set()
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=60)
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _forward(self, body: bytes) -> None:
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                echo = gateway.echo_for(body, key)
                if echo is not None:
                    status, message = echo
                    error = {"message": message, "type": "auth_error", "param": None, "code": str(status)}
                    self._send(
                        status, {"content-type": "application/json"}, json.dumps({"error": error}).encode()
                    )
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                answer = gateway._client.request(self.command, gateway.upstream + self.path,
                                                 content=body, headers=headers)  # fmt: skip
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
                self._send(answer.status_code, kept, answer.content)

            def _send(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def echo_for(self, body: bytes, key: str) -> tuple[int, str] | None:
        with self._lock:
            if ECHO_401.encode() in body:
                self.echoed += 1
                return 401, (f"Authentication Error, Invalid proxy server token passed. "
                             f"Received API Key = {key}, Authorization: Bearer {key}")  # fmt: skip
            if ECHO_503.encode() in body and ECHO_503 not in self._seen_503:
                self._seen_503.add(ECHO_503)
                self.echoed += 1
                return 503, f"upstream overloaded for key {key}; try again"
        return None

    def __enter__(self) -> EchoingGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()


# --- the fleet ------------------------------------------------------------------------------------


@dataclass
class SecretFleet:
    fleet: Fleet
    api_key: str
    mcp_token: str
    gateway: EchoingGateway


@pytest.fixture
def secret_fleet(tmp_path: Path, redis_server: LocalRedis, fake_llm: StandIn) -> Iterator[SecretFleet]:
    api_key = "sk-live-RF-" + secrets.token_urlsafe(24)
    mcp_token = "glpat-RF-" + secrets.token_urlsafe(20)
    log_dir = tmp_path / "logs"
    port = free_port()
    mcp = start_child("mcp-server", robot_fleet_command(
        "mcp-serve", "--repo", str(EXAMPLES / "framework"), "--project-id", "42", "--port", str(port),
        "--log-level", "WARNING"), tmp_path / "mcp-logs", env={"MCP_SERVER_TOKEN": mcp_token},
        ready_port=("127.0.0.1", port))  # fmt: skip
    with EchoingGateway(fake_llm.base) as gateway:
        url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
        env = writer_env(StandIn(mcp, port), fake_llm, REDIS_URL=url,
                         OPENAI_MAX_RETRIES="0", OPENAI_API_KEY=api_key,
                         OPENAI_BASE_URL=f"{gateway.base}/v1", GITLAB_MCP_TOKEN=mcp_token)  # fmt: skip
        fleet = Fleet(env, url, log_dir)
        fleet.redis.flushdb()
        try:
            yield SecretFleet(fleet, api_key, mcp_token, gateway)
        finally:
            fleet.stop_all()
            mcp.stop()


def flower_get(port: int, path: str) -> httpx.Response:
    answer = httpx.get(f"http://127.0.0.1:{port}{path}", auth=FLOWER_AUTH, timeout=30)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return answer


def generate_tasks(port: int) -> dict[str, dict]:
    tasks = flower_get(port, "/api/tasks").json()
    return {uuid: task for uuid, task in tasks.items() if " @ t-secrets-" in (task.get("name") or "")}


def test_no_trace_of_the_api_key_or_mcp_token_anywhere(
    secret_fleet: SecretFleet, tmp_path: Path, report: Callable[..., None]
) -> None:
    fleet, api_key, mcp_token = secret_fleet.fleet, secret_fleet.api_key, secret_fleet.mcp_token
    worker = fleet.start_worker("worker", "--pool", "threads", "--concurrency", "4", "--loglevel", "DEBUG")
    port = free_port()
    flower = start_child("flower", robot_fleet_command("flower", "--port", str(port)), fleet.log_dir,
                         env={**fleet.env, "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)},
                         ready_port=("127.0.0.1", port))  # fmt: skip
    fleet.children.append(flower)
    deadline = time.monotonic() + 30
    while not flower_get(port, "/api/workers").json():  # task args come with task-received events
        assert time.monotonic() < deadline, "Flower never saw the worker"
        time.sleep(0.3)

    specs = {
        "SEC-P.json": fault_spec("SEC-P", fail_first=9, fail_status=400),  # permanent, one attempt
        "SEC-R.json": fault_spec("SEC-R", fail_first=1, fail_status=500),  # retried by Celery, then done
        f"{ECHO_401}.json": fault_spec(ECHO_401),  # permanent, the provider's message holds the key
        f"{ECHO_503}.json": fault_spec(ECHO_503),  # retried, the provider's message holds the key
    }
    directory = spec_dir(tmp_path, SPECS[:3], specs)
    out = tmp_path / "out"
    cli_outputs: dict[str, str] = {}
    done = fleet.cli("run", str(directory), "--batch", "t-secrets", "--output-dir", str(out), timeout=90)
    cli_outputs["run"] = done.stdout + done.stderr
    assert done.returncode == 1, cli_outputs["run"]  # two jobs fail permanently
    batch_id = fleet.batch_of(done.stdout)
    jobs = {job["spec_id"]: job for job in fleet.wait_states(batch_id, {"collected", "failed"})}
    assert len(jobs) == 7
    assert (jobs["SEC-P"]["state"], jobs["SEC-P"]["attempt"]) == ("failed", "1")
    assert (jobs["SEC-R"]["state"], jobs["SEC-R"]["attempt"]) == ("collected", "2")
    assert (jobs[ECHO_503]["state"], jobs[ECHO_503]["attempt"]) == ("collected", "2")
    echoed = jobs[ECHO_401]
    assert (echoed["state"], echoed["error_kind"]) == ("failed", "model_rejected")
    assert "Received API Key = ***" in echoed["error_message"], "the key reached the job and was masked"
    assert secret_fleet.gateway.echoed == 2, "the provider echoed the key once for each ECHO spec"
    for name, args in {
        "collect": ("collect", "--batch", batch_id),
        "status": ("status",),
        "status-json": ("status", batch_id, "--json"),
        **{f"logs-{spec}": ("logs", job["job_id"]) for spec, job in jobs.items()},
    }.items():
        answer = fleet.cli(*args, timeout=60)
        cli_outputs[name] = answer.stdout + answer.stderr

    # Flower: every task final, then every API answer and page it has about them
    deadline = time.monotonic() + 30
    while True:
        tasks = generate_tasks(port)
        final = {task["state"] for task in tasks.values()} <= {"SUCCESS", "FAILURE"}
        if len({task.get("args") for task in tasks.values()}) >= 7 and final:
            break
        assert time.monotonic() < deadline, {t.get("args"): t["state"] for t in tasks.values()}
        time.sleep(0.3)
    flower_paths = ["/api/workers?refresh=1", "/api/workers", "/api/tasks", "/api/task/types",
                    "/api/queues/length", "/metrics", "/workers", "/tasks", "/broker"]  # fmt: skip
    for name in flower_get(port, "/api/workers").json():
        flower_paths.append(f"/worker/{name}")
    for uuid in tasks:
        flower_paths += [f"/api/task/info/{uuid}", f"/api/task/result/{uuid}", f"/task/{uuid}"]
    flower_answers = {path: flower_get(port, path).content for path in flower_paths}
    assert b"Received API Key = ***" in flower_answers["/api/tasks"], "Flower saw the masked failure"

    worker.stop()
    flower.stop()
    scanner = Scanner({"OPENAI_API_KEY": api_key, "GITLAB_MCP_TOKEN": mcp_token})
    for path, content in flower_answers.items():
        scanner.scan(f"flower {path}", content)
    for name, text in cli_outputs.items():
        scanner.scan(f"cli {name}", text)
    log_files = sorted(fleet.log_dir.glob("*.log"))
    assert {path.name for path in log_files} >= {"worker.log", "flower.log"}
    for path in log_files:
        scanner.scan(f"log {path.name}", path.read_bytes())
    worker_log = (fleet.log_dir / "worker.log").read_text(errors="replace")
    assert "DEBUG" in worker_log and "Received API Key = ***" in worker_log
    redis_scan = scan_redis(fleet.env["REDIS_URL"], scanner)
    assert redis_scan.log_entries > 0 and redis_scan.keys > 20
    assert not scanner.hits, "\n".join(sorted({f"{where}: {name}" for where, name in scanner.hits}))

    planted = plant_and_find(fleet, tmp_path, api_key, mcp_token)

    report(7, "secrets: known API key and MCP token", redis_dbs=redis_scan.dbs,
           redis_keys_scanned=redis_scan.keys, redis_values_scanned=redis_scan.values,
           log_entries_scanned=redis_scan.log_entries, log_files=len(log_files),
           cli_outputs=len(cli_outputs), flower_answers=len(flower_answers),
           key_echoed_by_provider=secret_fleet.gateway.echoed, planted_and_found=planted,
           occurrences=len(scanner.hits))  # fmt: skip


def plant_and_find(fleet: Fleet, tmp_path: Path, api_key: str, mcp_token: str) -> int:
    """The negative control: the same scan finds the secrets wherever they are planted."""
    client = redis.Redis.from_url(fleet.env["REDIS_URL"].rsplit("/", 1)[0] + "/15")
    tag = "rf-planted"
    encoded = base64.b64encode(b'{"headers": {"authorization": "Bearer ' + mcp_token.encode() + b'"}}')
    client.set(f"{tag}:string", f"key={api_key}")
    client.hset(f"{tag}:hash", mapping={"field": "clean", api_key: "as a field name"})
    client.rpush(f"{tag}:list", "clean", encoded)  # only its base64 form
    client.sadd(f"{tag}:set", f"Authorization: Bearer {mcp_token}")
    client.zadd(f"{tag}:zset", {api_key: 1.0})
    client.xadd(f"{tag}:stream:log", {"t": f"calling with {api_key}"})
    client.set(f"{tag}:{mcp_token}", "in the key's name")
    log = tmp_path / "planted.log"
    log.write_text(f"DEBUG sending headers {base64.b64encode(('x' + api_key).encode()).decode()}\n")
    try:
        scanner = Scanner({"OPENAI_API_KEY": api_key, "GITLAB_MCP_TOKEN": mcp_token})
        scan_redis(fleet.env["REDIS_URL"], scanner)
        scanner.scan("log planted.log", log.read_bytes())
        found = {where for where, _ in scanner.hits}
        expected = {f"db15:{tag}:{kind}" for kind in ("string", "hash", "list", "set", "zset", "stream:log")}
        expected |= {f"db15:{tag}:{mcp_token} (name)", "log planted.log"}
        assert found == expected, sorted(found ^ expected)
        assert any("(base64)" in name for _, name in scanner.hits)
        return len(expected)
    finally:
        client.delete(*client.keys(f"{tag}:*"))
        client.close()


# --- the redaction itself, without a fleet ----------------------------------------------------------


def test_log_records_and_exceptions_handed_to_celery_are_scrubbed_whole() -> None:
    import io
    import logging
    import traceback

    from celery.exceptions import Retry

    from worker.errors import ModelRequestRejected, ModelUnavailable
    from worker.redact import RedactingFilter, redactor, scrub_exception
    from worker.settings import Settings

    key = "sk-live-RF-" + secrets.token_urlsafe(16)
    redact = redactor([key])

    def chained() -> ModelRequestRejected:
        try:
            try:
                raise ValueError(f"provider said: bad key {key}")
            except ValueError as cause:
                raise ModelRequestRejected(f"rejected (401): bad key {key}", diagnostics=[key]) from cause
        except ModelRequestRejected as exc:
            return exc

    # a log record with a traceback: message, exception chain and stack masked
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Settings(openai_api_key=key)))
    logger = logging.getLogger("rf-test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        error = chained()
        logger.error(
            "job failed: %s", error, exc_info=(type(error), error, error.__traceback__), stack_info=True
        )
    finally:
        logger.removeHandler(handler)
    assert key not in stream.getvalue() and "bad key ***" in stream.getvalue()
    assert "provider said" in stream.getvalue(), "the chain is kept, masked"

    # an exception as Celery gets it: failure, and a retry wrapping its cause
    error = chained()
    assert scrub_exception(error, redact) is error
    text = "".join(traceback.format_exception(error))
    assert key not in text + repr(error) + str(error.diagnostics) and "provider said" in text
    retry = Retry(exc=ModelUnavailable(f"answered 503 for {key}"), when=3)
    assert scrub_exception(retry, redact) is retry
    assert key not in str(retry) + repr(retry.exc) + "".join(traceback.format_exception(retry))

    class Stubborn(Exception):
        def __str__(self) -> str:
            return f"always shows {key}"

    replaced = scrub_exception(Stubborn(), redact)
    assert isinstance(replaced, RuntimeError) and key not in str(replaced)
