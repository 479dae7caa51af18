#!/usr/bin/env bash
# The Docker deployment, built and run: its own dockerd, a base image made from
# Debian packages, the site and worker images built on it, a check that no image
# holds a secret, a .git folder, the tests or the data folder, the site stack on
# this machine's PostgreSQL and Redis (checked through gunicorn with DEBUG off),
# then the warehouse, a creator, the downloader and a writer in containers and
# one order through them to a loop-device card verified from the host.
#   bash scripts/test-docker.sh
# scripts/test.sh runs it once, after the test suites. Exit 0 passed, 1 failed,
# 77 when this machine cannot run it (not root, no dockerd, no loop devices),
# with the reason. Needs root.
#
# State kept between runs (the build cache, so a second run is warm):
# IMAGER_DOCKER_ROOT (default /var/lib/imager-docker-test): docker/ is dockerd's
# data root, logs/ the last run's logs, times.log one line of timings per run.
# IMAGER_DOCKER_COLD=1 empties it first (a cold run). Everything else (containers,
# volumes, the test database and Redis database, the loop device, dockerd itself)
# goes at the end, failed or not.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

SKIP=77
STATE=${IMAGER_DOCKER_ROOT:-/var/lib/imager-docker-test}
LOGS=$STATE/logs
RUN=$STATE/run               # this run's folders; removed at the end
EXEC=/run/imager-docker-test # dockerd's exec root, pid file and socket
# Debian's client (20.10) on purpose: it has BuildKit built in, while a newer
# docker on the PATH would want the buildx plugin Debian does not package.
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
BASE_IMAGE=imager-base:bookworm
SITE_IMAGE=imager-site:test
WORKER_IMAGE=imager-worker:test
DATABASE=imager_docker_test
# Every file the test plants (in the build secrets and in the folders the build
# must ignore) holds this; check_image.py fails an image that has it anywhere.
CANARY=imager-test-canary
# The base: what the Dockerfiles need of a Python image (python3, python3-venv),
# certificates for HTTPS and the time zone data Django reads.
BASE_PACKAGES=python3,python3-venv,ca-certificates,tzdata
# The public sources every Debian bookworm image has; the build machine's own
# come in as build secrets and are never kept.
PUBLIC_SOURCES='Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'

skip() {
  printf 'SKIPPED: the Docker test cannot run on this machine: %s\n' "$*" >&2
  exit "$SKIP"
}
now() { date +%s; }
timings=()
timed() {  # timed LABEL START: remember how long a step took since START
  timings+=("$1=$(($(now) - $2))")
}

# The `users` subcommand: run by docker/test/order.py while every container of
# the test runs. Every process of every container must run as a non-root user.
check_users() {
  local container name failed=0 processes uids
  for container in $("$DOCKER" ps -q); do
    name=$("$DOCKER" inspect -f '{{.Name}}' "$container")
    processes=$("$DOCKER" top "$container" -o pid,uid,args | tail -n +2) ||
      { echo "FAILED: cannot list the processes of ${name#/}" >&2; failed=1; continue; }
    uids=$(awk '{print $2}' <<<"$processes" | sort -u | tr '\n' ' ')
    printf '    %-34s uid %s(%s processes)\n' "${name#/}" "$uids" "$(wc -l <<<"$processes")"
    if [ -z "$processes" ] || awk '$2 == 0 {found=1} END {exit !found}' <<<"$processes"; then
      echo "FAILED: ${name#/} runs a process as root (or none):" >&2
      echo "$processes" >&2
      failed=1
    fi
  done
  return "$failed"
}
if [ "${1:-}" = users ]; then
  check_users
  exit
fi

# -- prerequisites ----------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || skip "it needs root (dockerd, loop devices); run it as root"
[ -e /dev/loop-control ] || skip "/dev/loop-control is missing (the loop driver, for the card)"
(ensure_packages "${RUNTIME_PACKAGES[@]}" "${DEMO_PACKAGES[@]}" "${TEST_PACKAGES[@]}" "${DOCKER_TEST_PACKAGES[@]}") ||
  skip "the Debian packages ${DOCKER_TEST_PACKAGES[*]} could not be installed"
ensure_venv requirements-dev.txt
ensure_postgres
ensure_redis

# One run at a time on a machine: they share the data root, the socket and the
# database name. A second one (another checkout's test.sh) waits for the first.
mkdir -p "$(dirname "$EXEC")"
exec 9>"$EXEC.lock"
if ! flock -n 9; then
  say "another Docker test runs on this machine; waiting for it (up to 30 min)"
  flock -w 1800 9 || die "the other Docker test still runs after 30 min ($EXEC.lock)"
fi

if [ "${IMAGER_DOCKER_COLD:-}" = 1 ] && [ -d "$STATE" ]; then
  say "cold run: emptying $STATE"
  rm -rf "$STATE"
fi
cold=warm
[ -d "$STATE/docker" ] || cold=cold
mkdir -p "$LOGS" "$EXEC"
rm -rf "$RUN"
mkdir -p "$RUN"
export DOCKER_HOST=unix://$EXEC/docker.sock
# The client's own settings (credential helpers…) are not the test's business.
export DOCKER_CONFIG=$STATE/client
export DOCKER_BUILDKIT=1
started=$(now)

# -- clean-up, whatever happens -----------------------------------------------------

dockerd_pid=
created_data=
redis_db=
cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  if [ -x "$RUN/compose-site" ] && [ "$status" -ne 0 ] && [ -n "$dockerd_pid" ]; then
    say "logs of the containers (all of them in $LOGS/containers.log)"
    {
      "$RUN/compose-site" logs --no-color --timestamps
      "$RUN/compose-host" logs --no-color --timestamps
    } >"$LOGS/containers.log" 2>&1
    "$RUN/compose-site" logs --no-color --tail 25 2>&1 | tail -150
    "$RUN/compose-host" logs --no-color --tail 25 2>&1 | tail -60
  fi
  if [ -n "$dockerd_pid" ]; then
    say "removing the test's containers and volumes, stopping dockerd"
    [ -x "$RUN/compose-host" ] && "$RUN/compose-host" down -v -t 10 >/dev/null 2>&1
    [ -x "$RUN/compose-site" ] && "$RUN/compose-site" down -v -t 10 >/dev/null 2>&1
    "$DOCKER" ps -aq | xargs -r "$DOCKER" rm -f -v >/dev/null 2>&1
    # Old builds' images and cache: the data root keeps only what a warm run uses.
    "$DOCKER" image prune -f >/dev/null 2>&1
    "$DOCKER" builder prune -f --keep-storage 4GB >/dev/null 2>&1
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$dockerd_pid" 2>/dev/null
    # The network namespace handle dockerd leaves mounted when it stops.
    umount "$EXEC/netns/default" 2>/dev/null
  fi
  # A card order.py could not take out (it was killed).
  if [ -d "$RUN/chain/demo/cards" ]; then
    for card in "$RUN"/chain/demo/cards/*.img; do
      losetup -j "$card" -O NAME -n 2>/dev/null | xargs -r -n1 losetup -d
    done
  fi
  rm -f docker/secrets/$CANARY "data/$CANARY"
  [ -n "$created_data" ] && rmdir data 2>/dev/null
  psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" \
    >/dev/null 2>&1
  [ -n "$redis_db" ] && redis-cli -h 127.0.0.1 -n "$redis_db" flushdb >/dev/null
  rm -rf "$RUN"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- dockerd --------------------------------------------------------------------------

# A dockerd a killed run left behind (its pid file names our data root; it does
# not hold the lock).
if [ -s "$EXEC/dockerd.pid" ]; then
  stale=$(cat "$EXEC/dockerd.pid")
  if tr '\0' ' ' <"/proc/$stale/cmdline" 2>/dev/null | grep -q -- "--data-root $STATE/docker"; then
    say "stopping the dockerd a previous run left (pid $stale)"
    kill "$stale"
    for _ in $(seq 30); do kill -0 "$stale" 2>/dev/null || break; sleep 1; done
  fi
fi

say "starting dockerd (data root $STATE/docker, socket $EXEC/docker.sock)"
# No bridge, no iptables rules: every container of the test runs on the host
# network, and this dockerd must not touch the firewall of a shared machine.
# Its own session: a Ctrl-C in the terminal reaches the script, whose clean-up
# then stops dockerd after the containers, not dockerd first.
setsid "$DOCKERD" --data-root "$STATE/docker" --exec-root "$EXEC" \
  --pidfile "$EXEC/dockerd.pid" -H "$DOCKER_HOST" \
  --bridge none --iptables=false --ip-masq=false \
  >"$LOGS/dockerd.log" 2>&1 9>&- &
dockerd_pid=$!
for _ in $(seq 60); do
  "$DOCKER" info >/dev/null 2>&1 && break
  if ! kill -0 "$dockerd_pid" 2>/dev/null; then
    dockerd_pid=
    skip "dockerd exited at start: $(grep -v '^$' "$LOGS/dockerd.log" | tail -1)"
  fi
  sleep 1
done
"$DOCKER" info >/dev/null 2>&1 ||
  skip "dockerd did not answer within 60 s: $(tail -1 "$LOGS/dockerd.log")"

# -- this machine's package index settings, as build secrets --------------------------

secrets=$RUN/build-secrets
mkdir -m 700 "$secrets"
say "package index settings of this machine, passed to the builds as secrets"
# apt: the sources in both formats, and the Acquire options that choose how the
# archive is reached (proxies, snapshot mirrors' validity checks, retries).
{
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] && cat "$file" && echo
  done
  echo "# $CANARY:apt-sources"
} >"$secrets/apt.sources"
{
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] && cat "$file"
  done
  echo "# $CANARY:apt-list"
} >"$secrets/apt.list"
{
  apt-config dump | grep -iE '^Acquire::((https?|ftp)::Proxy|Check-Valid-Until|Check-Date|Retries|ForceIPv[46])' || true
  echo "// $CANARY:apt-conf"
} >"$secrets/apt.conf"
# pip: the index settings in effect here (environment over site over user over
# global), without what only this machine's disk has (file: indexes, find-links,
# constraint files): the build cannot see them.
pip_cert=$("$PY" - "$secrets/pip.conf" "$CANARY" <<'PYTHON'
import re, subprocess, sys
from pathlib import Path

out = subprocess.run(
    [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
).stdout
rank = {"global": 0, "user": 1, "site": 2, ":env:": 3}
names = {"default-timeout": "timeout"}
keep = {"index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "retries", "cert"}
best = {}
for line in out.splitlines():
    m = re.match(r"^(:env:|\w+)\.([\w-]+)='(.*)'$", line)
    if not m:
        continue
    scope, key, value = m[1], names.get(m[2], m[2]), m[3]
    if key in keep and rank.get(scope, 0) >= best.get(key, (-1, ""))[0]:
        best[key] = (rank.get(scope, 0), value)
lines, cert = ["[global]"], ""
for key, (_, value) in sorted(best.items()):
    if key == "cert":
        if Path(value).is_file():
            cert = value
            lines.append("cert = /run/secrets/pip_cert")
        continue
    if key.endswith("index-url"):
        urls = [u for u in value.split() if re.match(r"https?://", u)]
        for left_out in set(value.split()) - set(urls):
            print(f"    pip: {key} {left_out} left out (this machine's disk)", file=sys.stderr)
        if not urls:
            continue
        value = " ".join(urls)
    lines.append(f"{key} = {value}")
lines.append(f"# {sys.argv[2]}:pip-conf")
Path(sys.argv[1]).write_text("\n".join(lines) + "\n")
print(cert)
PYTHON
)
build_secrets=(
  --secret "id=apt_sources,src=$secrets/apt.sources"
  --secret "id=apt_list,src=$secrets/apt.list"
  --secret "id=apt_conf,src=$secrets/apt.conf"
  --secret "id=pip_conf,src=$secrets/pip.conf"
)
[ -n "$pip_cert" ] && build_secrets+=(--secret "id=pip_cert,src=$pip_cert")
grep -v '^#' "$secrets/pip.conf" | sed 's/^/    pip.conf: /'

# -- the base image, from Debian packages ---------------------------------------------

step=$(now)
printf '%s\n' "$PUBLIC_SOURCES" >"$RUN/debian.sources"
mmdebstrap_options=(
  --variant=minbase --include="$BASE_PACKAGES"
  # Merged /usr made by mmdebstrap, not by the usrmerge package (and its Perl).
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  # Like Debian's slim images: no manuals, documentation or translations.
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
)
# The key of the base: what it is made of, not where the packages came from.
key=$(printf '%s\n' "$(mmdebstrap --version)" "${mmdebstrap_options[@]}" "$PUBLIC_SOURCES" |
  sha256sum | cut -c1-16)
have=$("$DOCKER" image inspect -f '{{index .Config.Labels "org.imager.base-key"}}' \
  "$BASE_IMAGE" 2>/dev/null || true)
if [ "$have" = "$key" ]; then
  say "base image $BASE_IMAGE: kept from a previous run (Debian bookworm, $BASE_PACKAGES)"
else
  say "making the base image $BASE_IMAGE with mmdebstrap (Debian bookworm: $BASE_PACKAGES)"
  mirrors=()
  for file in "$secrets/apt.sources" "$secrets/apt.list"; do
    grep -qv '^#' "$file" && mirrors+=("$file")
  done
  # The machine's sources and apt options serve the download only: the hook puts
  # the public sources in their place and removes the options mmdebstrap keeps.
  # shellcheck disable=SC2016 # "$1" is the hook's, mmdebstrap gives it the root
  mmdebstrap "${mmdebstrap_options[@]}" --aptopt="$secrets/apt.conf" \
    --customize-hook='rm -f "$1"/etc/apt/apt.conf.d/99mmdebstrap "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/* "$1"/etc/resolv.conf "$1"/etc/hostname' \
    --customize-hook="copy-in $RUN/debian.sources /etc/apt/sources.list.d/" \
    bookworm - "${mirrors[@]}" 2>"$LOGS/mmdebstrap.log" |
    "$DOCKER" import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
      --change "LABEL org.imager.base-key=$key" \
      --message "mmdebstrap bookworm $BASE_PACKAGES" - "$BASE_IMAGE" >/dev/null ||
    die "the base image could not be made; see $LOGS/mmdebstrap.log"
fi
timed base "$step"

# -- the site and worker images -------------------------------------------------------

# Canaries where the build context holds secrets and data the .dockerignore keeps
# out; they are gone again right after the builds.
echo "$CANARY:docker-secrets" >"docker/secrets/$CANARY"
[ -d data ] || { mkdir data && created_data=1; }
echo "$CANARY:data" >"data/$CANARY"
build() {  # build NAME TAG: docker/Dockerfile.NAME on the base image
  local step
  step=$(now)
  say "building $2 (docker/Dockerfile.$1; log $LOGS/build-$1.log)"
  if ! "$DOCKER" build --network host --progress plain \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" "${build_secrets[@]}" \
    -f "docker/Dockerfile.$1" -t "$2" . >"$LOGS/build-$1.log" 2>&1; then
    tail -40 "$LOGS/build-$1.log"
    die "building $2 failed; see $LOGS/build-$1.log"
  fi
  timed "$1" "$step"
}
build site "$SITE_IMAGE"
build worker "$WORKER_IMAGE"
rm -f "docker/secrets/$CANARY" "data/$CANARY"
[ -n "$created_data" ] && rmdir data && created_data=

# -- what no image may hold -----------------------------------------------------------

# The secrets of this run's site: made before the check, so it looks for them too.
export IMAGER_SECRETS_DIR=$RUN/secrets
chain=$RUN/chain
passwords=$chain/demo/passwords
sh docker/make-secrets.sh >/dev/null
for name in demo demo-manager demo-host docker-admin; do
  sh docker/make-secrets.sh password "$name" >/dev/null
done
mkdir -p "$passwords"
for name in demo demo-manager demo-host docker-admin; do
  ln -s "$IMAGER_SECRETS_DIR/$name.password" "$passwords/$name"
done
ln -s "$IMAGER_SECRETS_DIR/warehouse.password" "$passwords/demo-warehouse"
ln -s "$IMAGER_SECRETS_DIR/creator.password" "$passwords/demo-creator"
needles=("--needle=$CANARY")
for file in "$IMAGER_SECRETS_DIR"/*.password "$IMAGER_SECRETS_DIR/secret_key"; do
  needles+=("--needle=$(head -1 "$file")")
done
# A line from the middle of the JWT key: unique to it, unlike its header.
needles+=("--needle=$(sed -n 5p "$IMAGER_SECRETS_DIR/jwt_private.pem")")

step=$(now)
say "checking every layer of every image: no secret, .git folder, tests or data folder"
for image in "$BASE_IMAGE" "$SITE_IMAGE" "$WORKER_IMAGE"; do
  user=()
  [ "$image" = "$BASE_IMAGE" ] || user=(--user 10001:10001)
  "$DOCKER" save "$image" | "$PY" docker/test/check_image.py "$image" "${needles[@]}" "${user[@]}" ||
    die "$image holds what no image may hold (above)"
done
timed check "$step"

# -- the site stack on this machine's PostgreSQL and Redis ----------------------------

step=$(now)
free_ports() {  # free_ports N: the first of N consecutive free TCP ports on loopback
  "$PY" - "$1" <<'PYTHON'
import random, socket, sys

count = int(sys.argv[1])
for _ in range(200):
    first = random.randrange(20000, 32000)
    try:
        for port in range(first, first + count):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(first)
    break
else:
    sys.exit("no free ports")
PYTHON
}
web_port=$(free_ports 1)
ftp_port=$(free_ports 1)
http_port=$(free_ports 1)
passive=$(free_ports 20)
# The local OCI registry standing in for ghcr.io (order.py starts it on this port).
registry_port=$(free_ports 1)
url=http://127.0.0.1:$web_port

PGOPTIONS=--client-min-messages=warning psql -h 127.0.0.1 -U postgres -q -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" -c "CREATE DATABASE $DATABASE" >/dev/null
# An empty Redis database, 13 if it is free, claimed with the key the end-to-end
# test uses (tests/test_end_to_end.py), so neither takes the other's.
for n in 13 12 11 10 9 8 7 6 5 4 3 2 1; do
  if [ "$(redis-cli -h 127.0.0.1 -n "$n" dbsize)" = 0 ] &&
    [ "$(redis-cli -h 127.0.0.1 -n "$n" set imager-e2e "docker-$$" nx ex 3600)" = OK ]; then
    redis_db=$n
    break
  fi
done
[ -n "$redis_db" ] || die "no empty Redis database in 1-13 on 127.0.0.1:6379"

mkdir -p "$RUN/creator-work" "$RUN/creator-cache" "$RUN/images" "$RUN/udev" \
  "$chain/demo/warehouse"
chown 10001:10001 "$RUN/creator-work" "$RUN/creator-cache" "$RUN/images" \
  "$chain/demo/warehouse"
cat >"$RUN/site.env" <<ENV
ALLOWED_HOSTS=127.0.0.1,localhost
SITE_URL=$url
CSRF_TRUSTED_ORIGINS=$url
SECURE_COOKIES=false
DEFAULT_FROM_EMAIL=imager@example.org
OPERATOR_EMAILS=workshop@example.org
LOG_LEVEL=INFO
ENV
cat >"$RUN/compose.env" <<ENV
IMAGER_SITE_IMAGE=$SITE_IMAGE
IMAGER_WORKER_IMAGE=$WORKER_IMAGE
SITE_ENV_FILE=$RUN/site.env
WAREHOUSE_ADDRESS=127.0.0.1
WAREHOUSE_PUBLIC_URL=ftp://127.0.0.1:$ftp_port
WAREHOUSE_HTTP_URL=http://127.0.0.1:$http_port
WAREHOUSE_USERNAME=demo-warehouse
WAREHOUSE_NAME=docker-test
WAREHOUSE_RESERVE=1G
CREATOR_USERNAME=demo-creator
CREATOR_HOST=docker-creator
CREATOR_CACHE_SIZE=2G
IMAGER_API_URL=$url
IMAGER_USERNAME=demo-host
IMAGER_HOST=docker-host
DISK_GID=$(getent group disk | cut -d: -f3)
DOWNLOADER_RESERVE=1G
IMAGER_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DATABASE
IMAGER_TEST_REDIS_URL=redis://127.0.0.1:6379/$redis_db
IMAGER_TEST_WEB_PORT=$web_port
IMAGER_TEST_REGISTRY_URL=http://127.0.0.1:$registry_port
IMAGER_TEST_FTP_PORT=$ftp_port
IMAGER_TEST_HTTP_PORT=$http_port
IMAGER_TEST_PASSIVE_PORTS=$passive-$((passive + 19))
IMAGER_TEST_RUN=$RUN
IMAGER_TEST_CHAIN=$chain
IMAGER_TEST_SECRETS=$IMAGER_SECRETS_DIR
ENV
# compose.writer-host.yml needs WRITER_SLOTS for any command; order.py gives
# the real one (the environment wins over the env file).
echo "WRITER_SLOTS=slot-1=/dev/the-test-gives-it" >>"$RUN/compose.env"
# One command per compose project, also for a person looking into a failed run.
compose_wrapper() {  # compose_wrapper NAME PROJECT FILE...
  local name=$1 project=$2 files=()
  shift 2
  for file in "$@"; do files+=(-f "$file"); done
  cat >"$RUN/$name" <<SH
#!/bin/sh
export DOCKER_HOST=$DOCKER_HOST DOCKER_CONFIG=$DOCKER_CONFIG
exec docker-compose -p $project --project-directory $ROOT/docker \\
  --env-file $RUN/compose.env ${files[*]} "\$@"
SH
  chmod +x "$RUN/$name"
}
# docker-compose 1.29 refuses published ports on the host network, and an
# override can only add ports, not take them away: the site's files are resolved
# once (docker-compose config) and the ports of host-network services dropped.
docker-compose --env-file "$RUN/compose.env" -f docker/compose.site.yml \
  -f docker/test/compose.site.test.yml config >"$RUN/compose.site.config.yml"
"$PY" - "$RUN/compose.site.config.yml" "$RUN/compose.site.resolved.yml" <<'PYTHON'
import sys, yaml

config = yaml.safe_load(open(sys.argv[1]))
for service in config["services"].values():
    if service.get("network_mode") == "host":
        service.pop("ports", None)
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
PYTHON
compose_wrapper compose-site imager-test-site "$RUN/compose.site.resolved.yml"
compose_wrapper compose-host imager-test-host "$ROOT/docker/compose.writer-host.yml" \
  "$ROOT/docker/test/compose.writer-host.test.yml"

say "starting the site: migrate, web (gunicorn, DEBUG=false), rqworker, sweeper on $url"
"$RUN/compose-site" up -d --no-build web rqworker sweeper
health=
for _ in $(seq 90); do
  health=$("$DOCKER" inspect -f '{{.State.Health.Status}}' \
    "$("$RUN/compose-site" ps -q web)" 2>/dev/null || true)
  [ "$health" = healthy ] && break
  sleep 2
done
[ "$health" = healthy ] || die "the web container is not healthy ($health)"

say "checking the site through gunicorn"
check() {  # check WHAT CONDITION...: one line each
  local what=$1
  shift
  if "$@"; then printf '    ok      %s\n' "$what"; else die "$what"; fi
}
curl -fsS "$url/api/v1/health/" >"$RUN/health.json"
check "GET /api/v1/health/: $(tr -d '\n' <"$RUN/health.json")" \
  grep -q '"status": *"ok"' "$RUN/health.json"
jar=$RUN/cookies
curl -sS -c "$jar" -D "$RUN/login.headers" -o "$RUN/login.html" "$url/admin/login/"
check "GET /admin/login/: 200" grep -q '^HTTP/1.1 200' "$RUN/login.headers"
check "  served by gunicorn" grep -qi '^server: gunicorn' "$RUN/login.headers"
check "  the login form" grep -q 'name="username"' "$RUN/login.html"
stylesheet=$(grep -o '/static/[^"]*\.css' "$RUN/login.html" | head -1)
check "  its stylesheet $stylesheet (collected, hashed, served by whitenoise)" \
  curl -fsS -o /dev/null "$url$stylesheet"
curl -sS -o "$RUN/404.html" -w '%{http_code}' "$url/no-such-page/" >"$RUN/404.code"
check "DEBUG is off: a 404 without Django's debug page" \
  sh -c "grep -q 404 '$RUN/404.code' && ! grep -q 'DEBUG = True' '$RUN/404.html'"

say "accounts, made through the web container (entrypoint manage create_account)"
account() {  # account NAME ROLE
  "$RUN/compose-site" exec -T web entrypoint manage create_account "$1" --role "$2" \
    --password-stdin <"$passwords/$1" >/dev/null
}
account docker-admin admin
account demo client
account demo-manager manager
account demo-creator creator
account demo-warehouse warehouse
account demo-host writer
token=$(sed -n 's/.*name="csrfmiddlewaretoken" value="\([^"]*\)".*/\1/p' "$RUN/login.html" | head -1)
curl -sS -b "$jar" -c "$jar" -o /dev/null -D "$RUN/post.headers" \
  --data-urlencode "csrfmiddlewaretoken=$token" --data-urlencode "username=docker-admin" \
  --data-urlencode "password=$(head -1 "$passwords/docker-admin")" \
  --data-urlencode "next=/admin/" "$url/admin/login/?next=/admin/"
check "POST /admin/login/ as an admin: redirected to /admin/" \
  grep -qiE '^location: /admin/' "$RUN/post.headers"
check "  GET /admin/ with that session: Site administration" \
  sh -c "curl -fsS -b '$jar' '$url/admin/' | grep -q 'Site administration'"
timed stack "$step"

# -- one order through the containers -------------------------------------------------

step=$(now)
say "one order through the warehouse, creator, downloader and writer containers"
"$PY" docker/test/order.py --data "$chain" --port "$web_port" \
  --registry-port "$registry_port" \
  --compose-site "$RUN/compose-site" --compose-host "$RUN/compose-host" \
  --while-running "bash $0 users" ||
  die "the order did not reach a verified card (the containers' logs are below)"
timed order "$step"

# -- report ---------------------------------------------------------------------------

timed total "$started"
sizes=()
for image in "$BASE_IMAGE" "$SITE_IMAGE" "$WORKER_IMAGE"; do
  sizes+=("$image=$(("$("$DOCKER" image inspect -f '{{.Size}}' "$image")" / 1000000))MB")
done
say "Docker test passed ($cold run)"
printf '    %s\n' "seconds: ${timings[*]}" "sizes: ${sizes[*]}"
printf '%s %s %s %s\n' "$(date -u +%FT%TZ)" "$cold" "${timings[*]}" "${sizes[*]}" \
  >>"$STATE/times.log"
