#!/usr/bin/env bash
# The README's second command: install what the tests need, then run every check
# and the whole test suite on SQLite, PostgreSQL and MongoDB (SecantusDB).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_packages "${RUNTIME_PACKAGES[@]}" "${DEMO_PACKAGES[@]}" "${TEST_PACKAGES[@]}" \
  "${BROWSER_TEST_PACKAGES[@]}"
ensure_venv requirements-dev.txt
ensure_postgres
ensure_redis
compile_translations

say "lint"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

failed=()
run_suite() {
  # pytest's exit 5 ("no tests ran") counts as a failure like any other.
  local backend=$1; shift
  say "tests on $backend"
  if ! IMAGER_TEST_DB=$backend "$PY" -m pytest -q "$@"; then failed+=("$backend"); fi
}

for backend in sqlite postgres mongodb; do
  say "system checks and migrations on $backend"
  # The test settings pick (and for mongodb start) the database of each backend.
  IMAGER_TEST_DB=$backend DJANGO_SETTINGS_MODULE=imager_site.test_settings \
    "$PY" manage.py check --fail-level WARNING
  IMAGER_TEST_DB=$backend DJANGO_SETTINGS_MODULE=imager_site.test_settings \
    "$PY" manage.py makemigrations --check --dry-run
done

# Everything once on SQLite; the database-backed apps again on the two servers.
# workers/, ftp/ and whost/ never touch the database, so one run covers them;
# tests/ holds the live-server tests (the API client, the workers and the
# warehouse against a running API), the only tests outside apps/ that import it.
run_suite sqlite
run_suite postgres apps tests
run_suite mongodb apps tests

# The Docker deployment, built and run (scripts/test-docker.sh): once, last, as it
# is the heaviest (about 2 min warm, 4 cold). IMAGER_DOCKER_TEST: `auto` (the
# default) runs it when dockerd can start here and says plainly why not
# otherwise; `require` counts "cannot run" as a failure (.ci/run); `skip`.
docker_test=${IMAGER_DOCKER_TEST:-auto}
docker_note="the Docker test was skipped (IMAGER_DOCKER_TEST=skip)"
if [ "$docker_test" != skip ]; then
  say "the Docker deployment (scripts/test-docker.sh)"
  status=0
  bash scripts/test-docker.sh || status=$?
  if [ "$status" -eq 0 ]; then
    docker_note="the Docker deployment was built and ran an order"
  elif [ "$status" -eq 77 ]; then
    docker_note="the Docker test could not run here (its reason is above)"
    [ "$docker_test" = require ] && failed+=("docker (could not run, IMAGER_DOCKER_TEST=require)")
  else
    failed+=(docker)
  fi
fi

if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED on: ${failed[*]}" >&2
  exit 1
fi
say "all tests passed on sqlite, postgres and mongodb; $docker_note"
