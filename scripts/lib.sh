# Shared by scripts/up.sh and scripts/test.sh: Debian packages, the virtualenv and
# the local services. Sourced, not run. Every step is skipped when already done, so
# a second run is quick and works offline.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages the service and its tools need at run time (systemd: systemctl
# and journalctl for whost start and whost logs on a writer host; skopeo: the
# creator pulls the hotspot's OCI images with it).
RUNTIME_PACKAGES=(python3 python3-venv gettext e2fsprogs fdisk mtools xz-utils zstd
  bmap-tools zim-tools kiwix-tools udev systemd skopeo)
# The demo's and the tests' local OCI registry, standing in for ghcr.io (which
# this machine may not reach): not needed where the service runs for real.
DEMO_PACKAGES=(docker-registry)
# Extra ones for the tests: real database and cache servers, FTP clients and
# faketime (whost doctor's clock check with a clock five minutes ahead).
TEST_PACKAGES=(postgresql redis-server lftp curl openssl faketime)
# The browser tests (tests/test_browser.py): Debian's headless Chromium and the
# chromedriver Selenium drives it with.
BROWSER_TEST_PACKAGES=(chromium chromium-driver)
# The Docker test (scripts/test-docker.sh): Debian's Docker engine and client
# (20.10, BuildKit built in), docker-compose 1.29 and mmdebstrap for the base image.
DOCKER_TEST_PACKAGES=(docker.io docker-compose mmdebstrap)

ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing Debian packages: ${missing[*]}; install them as root (sudo apt-get install ${missing[*]}) or run this as root"
  fi
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_venv() {
  local requirements=$1 stamp
  [ -x "$PY" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
  # Reinstall only when the requirements changed since the last install.
  stamp="$VENV/.installed-$(basename "$requirements")-$(cat "$ROOT"/requirements*.txt | sha256sum | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    say "installing Python packages from $(basename "$requirements")"
    "$PY" -m pip install -q --disable-pip-version-check -r "$requirements"
    touch "$stamp"
  fi
  # The whost command (pyproject.toml [project.scripts]), once: editable, so it
  # runs this clone's code; --no-deps, as the requirements are installed above.
  if [ ! -x "$VENV/bin/whost" ]; then
    say "installing the whost command into $VENV/bin"
    "$PY" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT"
  fi
}

compile_translations() {
  (cd "$ROOT" && "$PY" manage.py compilemessages -v 0 --ignore=.venv)
}

ensure_postgres() {
  pg_isready -q -h 127.0.0.1 -p 5432 && return 0
  say "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 1; done
  die "PostgreSQL did not start on 127.0.0.1:5432"
}

ensure_redis() {
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0; sleep 1; done
  die "Redis did not start on 127.0.0.1:6379"
}
