"""The deployment files (docker-compose.yml, Dockerfile, .dockerignore, .env.example), checked without
a Docker engine: what the files say, against what the code really offers (CLI commands and options,
Settings fields, console script, files in the repository)."""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import typer
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ENV_EXAMPLE = REPO_ROOT / ".env.example"

CORE_SERVICES = {"redis", "worker", "flower", "collector", "metrics"}
DEMO_SERVICES = {"mcp", "llm"}
FLEET_SERVICES = {"worker", "flower", "collector", "metrics"}  # the ones that talk to Redis

# Variables that are not Settings fields but are part of the deployment contract.
KNOWN_EXTRAS = {
    "REDIS_PASSWORD",  # redis --requirepass, and inside REDIS_URL
    "REDIS_HOST_PORT",  # loopback port Redis is published on, for the host's CLI
    "FLOWER_BASIC_AUTH",  # read by Flower itself
    "WORKER_CONCURRENCY",  # `robot-fleet worker --concurrency`
    "OUTPUT_DIR_HOST",  # host directory bind-mounted on the collector's /output
    "MCP_SERVER_TOKEN",  # `robot-fleet mcp-serve --token` from the environment
}  # the fleet-wide rate limits (FLEET_*) are Settings fields

VAR_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?+])([^}]*))?\}")
WHOLE_REF_RE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?+][^}]*)?\}$")
SECRET_NAME_RE = re.compile(r"PASSWORD|TOKEN|KEY|AUTH", re.IGNORECASE)
URL_PASSWORD_RE = re.compile(r"://[^/@\s:]*:([^@\s]+)@")
ENV_LINE_RE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")

# Click's exceptions as the installed Typer uses them (recent Typer vendors its own copy of Click).
_CLICK_ERRORS = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
ClickException = _CLICK_ERRORS["ClickException"]
UsageError = _CLICK_ERRORS["UsageError"]


# ---------------------------------------------------------------------------------------------
# helpers


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def substitute_defaults(value: str) -> str:
    """Compose interpolation as `docker compose` does it when no variable is set: `${V:-d}` -> d."""

    def replace(match: re.Match[str]) -> str:
        name, operator = match.group(1), match.group(2)
        if operator and operator.lstrip(":").startswith("-"):
            return match.group(3)
        raise AssertionError(f"${{{name}}} in a command has no default: {value!r}")

    return VAR_REF_RE.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


def command_args(svc: dict[str, Any]) -> list[str]:
    command = svc["command"]
    args = shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]
    return [substitute_defaults(arg) for arg in args]


def walk_strings(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in walk_strings(value, (*path, str(key)))]
    if isinstance(node, list):
        return [item for index, value in enumerate(node) for item in walk_strings(value, (*path, str(index)))]
    return [(path, str(node))] if node is not None else []


def env_example() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, commented) for every `NAME=value` line, commented-out ones included."""
    entries: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ENV_LINE_RE.match(line.strip())
        if match and not (match.group(2) in entries and match.group(1)):
            entries[match.group(2)] = (match.group(3), bool(match.group(1)))
    return entries


def settings_env_names() -> set[str]:
    from worker.settings import Settings

    return {name.upper() for name in Settings.model_fields}


# --- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and `\\` continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile(keyword: str) -> list[str]:
    return [rest for key, rest in dockerfile_instructions() if key == keyword]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the exec (JSON) form: {arguments}"
    return value


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    result = []
    for rest in dockerfile("COPY"):
        parts = exec_form(rest) if rest.startswith("[") else shlex.split(rest)
        if any(part.startswith("--from") for part in parts):
            continue
        parts = [part for part in parts if not part.startswith("--")]
        result.append((parts[:-1], parts[-1]))
    return result


def workdir() -> PurePosixPath:
    return PurePosixPath(dockerfile("WORKDIR")[-1])


def host_path_of(container_path: str) -> Path | None:
    """The repository path a COPY put at `container_path` in the image, or None."""
    wanted = PurePosixPath(container_path)
    for sources, dest in copies():
        for source in sources:
            dest_path = PurePosixPath(dest) if dest.startswith("/") else workdir() / dest
            if dest.endswith("/") and not source.endswith("/"):
                dest_path = dest_path / PurePosixPath(source).name
            if wanted == dest_path or dest_path in wanted.parents:
                return REPO_ROOT / source / wanted.relative_to(dest_path)
    return None


# --- CLI


def cli_context(args: list[str]) -> typer.Context:
    """Parse `robot-fleet ARGS` the way the container's ENTRYPOINT would, without running anything.

    The subcommand is resolved on a resilient parse of the group; its own arguments are then parsed
    strictly, so an unknown subcommand, an unknown option or a value of the wrong type fails. Paths
    inside the image are mapped to the repository files the Dockerfile copies there.
    """
    from producer.cli import app

    group = typer.main.get_command(app)
    assert hasattr(group, "resolve_command"), "robot-fleet is a group of subcommands"
    group_ctx = group.make_context("robot-fleet", list(args), resilient_parsing=True)
    name, command, rest = group.resolve_command(group_ctx, list(args))
    if command is None:
        raise UsageError(f"no such robot-fleet command: {args[0]!r}")
    mapped = []
    for arg in rest:
        host = host_path_of(arg) if arg.startswith("/") else None
        mapped.append(str(host) if host is not None else arg)
    ctx = command.make_context(name, mapped, parent=group_ctx)
    if ctx.args:
        raise UsageError(f"undeclared arguments {ctx.args} for robot-fleet {name}")
    return ctx


def image_services() -> list[str]:
    return sorted(name for name, svc in compose()["services"].items() if "build" in svc)


# ---------------------------------------------------------------------------------------------
# compose: structure


def test_compose_file_parses_as_a_compose_spec_mapping_without_the_obsolete_version_key():
    data = compose()
    assert isinstance(data, dict)
    assert "version" not in data
    assert isinstance(data["services"], dict)


def test_compose_defines_redis_worker_flower_collector_metrics_and_the_demo_stand_ins():
    assert set(compose()["services"]) == CORE_SERVICES | DEMO_SERVICES


def test_core_services_start_without_a_profile_and_the_stand_ins_only_with_the_demo_profile():
    for name in CORE_SERVICES:
        assert "profiles" not in service(name), name
    for name in DEMO_SERVICES:
        assert service(name)["profiles"] == ["demo"], name


def test_every_image_service_is_built_from_this_repository_and_keeps_the_robot_fleet_entrypoint():
    assert set(image_services()) == FLEET_SERVICES | DEMO_SERVICES
    for name in image_services():
        svc = service(name)
        build = svc["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (REPO_ROOT / context / "Dockerfile").is_file(), name
        assert "entrypoint" not in svc, name
    assert len({service(name).get("image") for name in image_services()}) == 1


# compose: redis


def test_redis_runs_with_append_only_file_and_a_password_from_the_environment():
    svc = service("redis")
    assert svc["image"].startswith("redis:7")
    args = [str(arg) for arg in svc["command"]]
    assert args[0] == "redis-server"
    assert args[args.index("--appendonly") + 1] == "yes"
    password = args[args.index("--requirepass") + 1]
    assert WHOLE_REF_RE.match(password) and "REDIS_PASSWORD" in password
    assert ":?" in password, "a missing REDIS_PASSWORD must stop compose, not start Redis without one"


def test_redis_healthcheck_pings_with_the_password():
    test = service("redis")["healthcheck"]["test"]
    command = " ".join(test[1:]) if isinstance(test, list) else test
    assert "redis-cli" in command and "ping" in command.lower()
    assert "-a" in command.split() and "REDIS_PASSWORD" in command
    if "$$REDIS_PASSWORD" in command:  # expanded by the container's shell: it must be set there
        assert "REDIS_PASSWORD" in environment(service("redis"))


def test_redis_data_lives_in_a_named_volume():
    volumes = service("redis")["volumes"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in volumes}
    assert "/data" in mounts
    assert mounts["/data"] in compose()["volumes"]


def test_redis_is_published_on_loopback_only():
    for port in service("redis").get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port


# compose: fleet services


def test_fleet_services_reach_redis_by_service_name_with_the_password_and_wait_for_it_healthy():
    for name in FLEET_SERVICES:
        svc = service(name)
        url = environment(svc)["REDIS_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD") and url.endswith("@redis:6379/0"), name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert svc["env_file"] in (".env", [".env"]), name
        assert svc["restart"] == "unless-stopped", name


def test_worker_is_scalable_no_container_name_and_no_published_ports():
    svc = service("worker")
    assert "container_name" not in svc
    assert not svc.get("ports")
    assert "network_mode" not in svc


def test_worker_stop_grace_period_outlasts_its_bounded_warm_shutdown():
    """Docker kills a container its grace period after SIGTERM (10 s by default): the worker must
    have time to hand its jobs back (WORKER_SHUTDOWN_S) before that."""
    from worker.settings import DEFAULT_SHUTDOWN_S

    grace = str(service("worker")["stop_grace_period"])
    assert grace.endswith("s") and float(grace[:-1]) >= DEFAULT_SHUTDOWN_S + 10


def test_worker_runs_a_threads_pool_with_configurable_concurrency():
    args = [str(arg) for arg in service("worker")["command"]]
    assert args[0] == "worker"
    assert args[args.index("--pool") + 1] == "threads"
    assert args[args.index("--concurrency") + 1] == "${WORKER_CONCURRENCY:-8}"


def test_flower_publishes_5555_listens_on_all_interfaces_and_takes_basic_auth_from_the_environment():
    svc = service("flower")
    assert any(str(port) == "5555:5555" for port in svc["ports"])
    args = command_args(svc)
    assert args[0] == "flower"
    assert args[args.index("--port") + 1] == "5555"
    assert args[args.index("--address") + 1] == "0.0.0.0"  # the CLI default, 127.0.0.1, is unreachable
    auth = environment(svc)["FLOWER_BASIC_AUTH"]
    assert WHOLE_REF_RE.match(auth) and "FLOWER_BASIC_AUTH" in auth and ":?" in auth


def test_metrics_listens_on_all_interfaces_inside_the_stack_and_is_published_on_loopback_only():
    svc = service("metrics")
    args = command_args(svc)
    assert args[0] == "metrics"
    assert args[args.index("--address") + 1] == "0.0.0.0"
    port = args[args.index("--port") + 1]
    assert [str(published) for published in svc["ports"]] == [f"127.0.0.1:{port}:{port}"]


def test_collector_follows_results_into_a_host_directory_mounted_on_output():
    svc = service("collector")
    args = command_args(svc)
    assert args[0] == "collect" and "--follow" in args
    assert args[args.index("--output-dir") + 1] == "/output"
    binds = [str(v) for v in svc["volumes"] if str(v).endswith(":/output")]
    assert binds == ["${OUTPUT_DIR_HOST:-./generated}:/output"]


def test_demo_stand_ins_listen_on_all_interfaces_at_the_urls_the_comments_tell_the_env_to_use():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    env_lines = [line.lstrip("# ").strip() for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()]
    for name, url, setting in (
        ("mcp", "http://mcp:9001/mcp", "GITLAB_MCP_URL"),
        ("llm", "http://llm:9002/v1", "OPENAI_BASE_URL"),
    ):
        args = command_args(service(name))
        assert args[args.index("--host") + 1] == "0.0.0.0", name
        assert f":{args[args.index('--port') + 1]}/" in url, name
        assert f"{setting}={url}" in text, name
        assert f"{setting}={url}" in env_lines, name


def test_demo_mcp_serves_the_example_repository_copied_into_the_image():
    args = command_args(service("mcp"))
    repo = args[args.index("--repo") + 1]
    host = host_path_of(repo)
    assert host is not None, f"no COPY puts anything at {repo}"
    assert (host / "doc" / "convention.md").is_file()


# compose: the commands are real CLI commands


@pytest.mark.parametrize("name", sorted(FLEET_SERVICES | DEMO_SERVICES))
def test_service_command_is_a_real_robot_fleet_subcommand_with_real_options(name):
    args = command_args(service(name))
    ctx = cli_context(args)
    assert ctx.info_name == args[0]


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["mcp-serve", "--repo", "/app/examples/framework", "--no-such-option", "1"],
        ["fake-llm", "--port", "not-a-number"],
        ["mcp-serve", "--repo", "/app/no/such/dir"],
        ["collect", "--outputdir", "/output"],
    ],
)
def test_command_check_rejects_unknown_commands_options_and_bad_values(args):
    with pytest.raises(ClickException):
        cli_context(args)


def test_compose_placeholders_in_commands_are_replaced_by_their_defaults():
    assert substitute_defaults("${WORKER_CONCURRENCY:-8}") == "8"
    assert substitute_defaults("a${X-b}c") == "abc"
    with pytest.raises(AssertionError):
        substitute_defaults("${REDIS_PASSWORD}")


# compose + .env.example: secrets and variable names


def test_compose_holds_no_literal_secret():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "sk-" not in text and "glpat-" not in text
    for path, value in walk_strings(compose()):
        if any(SECRET_NAME_RE.search(part) for part in path):
            assert WHOLE_REF_RE.match(value), f"{'.'.join(path)} = {value!r} is not a ${{...}} reference"
        for password in URL_PASSWORD_RE.findall(value):
            assert WHOLE_REF_RE.match(password), f"{'.'.join(path)} has a literal password in a URL"
    for name, svc in compose()["services"].items():
        args = [str(arg) for arg in svc.get("command") or []]
        for index, arg in enumerate(args[:-1]):
            if arg.startswith("--") and SECRET_NAME_RE.search(arg.replace("requirepass", "password")):
                assert WHOLE_REF_RE.match(args[index + 1]), f"{name}: {arg} takes a literal value"


def test_env_example_secrets_are_placeholders():
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert not re.search(r"sk-[A-Za-z0-9_]{16,}", text)
    assert not re.search(r"glpat-[A-Za-z0-9_-]{10,}", text)
    secrets = re.compile(r"PASSWORD|TOKEN|API_KEY|BASIC_AUTH")
    for name, (value, _commented) in env_example().items():
        if secrets.search(name):
            assert value == "" or "replace-me" in value, f"{name}={value}"
        for password in URL_PASSWORD_RE.findall(value):
            assert password == "replace-me", name


def test_env_example_documents_every_setting_and_every_deployment_variable():
    env = env_example()
    missing = (settings_env_names() | {"REDIS_PASSWORD", "FLOWER_BASIC_AUTH", "WORKER_CONCURRENCY"}) - set(
        env
    )
    assert not missing
    for name in ("FLEET_LLM_RPM", "FLEET_LLM_TPM", "FLEET_MCP_RPM"):
        assert env[name] == ("", False), f"{name} is optional: an empty value (no limit) to fill in"


def test_env_example_lines_each_follow_a_comment():
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        match = ENV_LINE_RE.match(line.strip())
        if match and not match.group(1):
            previous = lines[index - 1].strip()
            assert previous.startswith("#"), f"{match.group(2)} has no comment above it"


def test_variable_names_in_compose_and_env_example_are_settings_or_known_extras():
    known = settings_env_names() | KNOWN_EXTRAS
    used = set(VAR_REF_RE.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    names = {name for name, *_ in used}
    for svc in compose()["services"].values():
        names |= set(environment(svc))
    names |= set(env_example())
    unknown = names - known
    assert not unknown, f"not a Settings field nor a known deployment variable: {sorted(unknown)}"


def test_env_example_loads_into_settings(monkeypatch):
    from worker.settings import Settings

    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=ENV_EXAMPLE)
    assert settings.writer_max_rounds == 16
    assert settings.openai_api_key.get_secret_value().endswith("replace-me")
    assert (settings.fleet_llm_rpm, settings.fleet_llm_tpm, settings.fleet_mcp_rpm) == (None, None, None)
    assert settings.fleet_rate_window_s == 60


# ---------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore


def test_dockerfile_builds_on_python_311_slim():
    assert dockerfile("FROM")[0].split()[0] == "python:3.11-slim"


def test_dockerfile_runs_as_a_non_root_user():
    users = dockerfile("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    keywords = [key for key, _ in dockerfile_instructions()]
    assert max(i for i, key in enumerate(keywords) if key == "USER") < keywords.index("ENTRYPOINT")


def test_dockerfile_entrypoint_is_the_robot_fleet_console_script_and_it_imports():
    assert exec_form(dockerfile("ENTRYPOINT")[-1]) == ["robot-fleet"]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = pyproject["project"]["scripts"]["robot-fleet"]
    module, _, attribute = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_dockerfile_default_command_is_a_worker():
    cmd = exec_form(dockerfile("CMD")[-1])
    assert cmd[0] == "worker"
    cli_context(cmd)


def test_dockerfile_installs_the_package_without_pip_cache():
    runs = " ".join(dockerfile("RUN"))
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", runs)


def test_dockerfile_copies_exist_in_the_repository():
    assert copies()
    for sources, _dest in copies():
        for source in sources:
            assert (REPO_ROOT / source).exists(), source


def test_dockerfile_copies_what_pip_install_needs_before_installing():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.name
        for path in REPO_ROOT.iterdir()
        if (path / "__init__.py").is_file() and any(fnmatch.fnmatch(path.name, p) for p in patterns)
    }
    assert packages >= {"worker", "producer", "offline"}
    instructions = dockerfile_instructions()
    install_at = next(
        i for i, (key, rest) in enumerate(instructions) if key == "RUN" and "pip install" in rest
    )
    copied_before = {
        source.rstrip("/")
        for key, rest in instructions[:install_at]
        if key == "COPY"
        for source in shlex.split(rest)[:-1]
    }
    assert copied_before >= packages | {"pyproject.toml", pyproject["project"]["readme"]}


def test_dockerfile_copies_the_examples_for_the_demo_profile():
    assert host_path_of(str(workdir() / "examples")) == REPO_ROOT / "examples"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context():
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert patterns >= {".venv", ".git", "generated", ".robot-fleet", ".env"}
    assert {"**/__pycache__", ".pytest_cache", ".ruff_cache"} <= patterns


def test_dockerignore_does_not_exclude_what_the_dockerfile_copies():
    patterns = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    for sources, _dest in copies():
        for source in sources:
            name = source.rstrip("/")
            assert not any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
