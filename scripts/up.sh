#!/usr/bin/env bash
# The README's first command: set everything up on the embedded default (SQLite in
# ./data, no Redis), create an admin account, then run one demo order through the
# whole chain (scripts/demo.py: web, jobs, warehouse, creator, downloader, writer)
# and keep the service running.
#   bash scripts/up.sh            set up, run the demo order, keep serving on :8000
#   bash scripts/up.sh --exit     set up, run the demo order, stop after its table
#   bash scripts/up.sh --no-serve set up only (for scripts and CI)
# PORT and IMAGER_DATA_DIR change the port and the data folder; FTP_PORT and
# HTTP_PORT the warehouse's (2121, and 2180 for download links). The cards are sparse files: loop devices as root, file
# slots without root (the demo says which). Without root, the Debian packages
# must be installed already.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

serve=1
demo_args=()
for arg in "$@"; do
  case $arg in
    --no-serve) serve=0 ;;
    --exit) demo_args+=(--exit) ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown option $arg (try --help)" ;;
  esac
done

ensure_packages "${RUNTIME_PACKAGES[@]}"
[ "$serve" -eq 1 ] && ensure_packages "${DEMO_PACKAGES[@]}"
ensure_venv requirements.txt
compile_translations

export IMAGER_DATA_DIR=${IMAGER_DATA_DIR:-$ROOT/data}
port=${PORT:-8000}
say "checking the configuration"
"$PY" manage.py check
say "migrating the database"
"$PY" manage.py migrate --no-input -v 0

password_file="$IMAGER_DATA_DIR/admin.password"
say "admin account"
if [ -s "$password_file" ]; then
  # Keeps a password the operator changed; recreates the account if it is gone.
  "$PY" manage.py create_account admin --role admin --keep-existing \
    --password-file "$password_file"
else
  "$PY" manage.py create_account admin --role admin --update \
    --write-password "$password_file"
fi

cat <<MSG

  Imager service is ready (embedded default: SQLite in $IMAGER_DATA_DIR).
  URL:       http://127.0.0.1:$port/
  Admin:     http://127.0.0.1:$port/admin/
  API docs:  http://127.0.0.1:$port/api/docs/
  Login:     admin / $(cat "$password_file")

MSG
[ "$serve" -eq 1 ] || exit 0
say "running a demo order through the whole chain (Ctrl-C stops everything)"
exec "$PY" scripts/demo.py --port "$port" --ftp-port "${FTP_PORT:-2121}" \
  --http-port "${HTTP_PORT:-2180}" --data-dir "$IMAGER_DATA_DIR" "${demo_args[@]}"
