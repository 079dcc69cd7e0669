# robot-fleet image: one image for every role of the fleet. The role is the `robot-fleet` subcommand
# given as the command (docker-compose.yml): `worker` (default), `collect`, `flower`, and, for the
# demo profile, the offline stand-ins `mcp-serve` and `fake-llm` (which serve examples/framework).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The collector writes into a bind-mounted host directory: build with
# `--build-arg APP_UID=$(id -u) --build-arg APP_GID=$(id -g)` when your uid is not 1000.
ARG APP_UID=1000
ARG APP_GID=1000
RUN groupadd --gid "${APP_GID}" fleet \
    && useradd --uid "${APP_UID}" --gid "${APP_GID}" --create-home --shell /usr/sbin/nologin fleet

WORKDIR /app

# Dependencies and package first: editing examples/ does not reinstall everything.
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY producer/ producer/
COPY offline/ offline/
RUN pip install --no-cache-dir . \
    && rm -rf build *.egg-info

# The example Robot Framework repository and sprint, served by the demo profile's `mcp` service.
COPY examples/ examples/

RUN mkdir -p /output && chown fleet:fleet /output
USER fleet

# No secret is baked in: configuration comes from the environment (compose's env_file .env).
ENTRYPOINT ["robot-fleet"]
CMD ["worker"]
