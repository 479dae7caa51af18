#!/bin/sh
# Creates the central site's secret files in docker/secrets/, once: an existing
# file is never overwritten (a new SECRET_KEY logs everybody out, a new JWT key
# invalidates every token, a new password locks an account out).
#   sh make-secrets.sh                 SECRET_KEY, JWT key, warehouse, creator and
#                                      PostgreSQL passwords, DATABASE_URL for it
#   sh make-secrets.sh password NAME   secrets/NAME.password only (e.g. host-1, to
#                                      copy to a writer host as secrets/host.password)
# IMAGER_SECRETS_DIR puts them in another folder than docker/secrets (the Docker
# test uses a folder of its own).
# Files are mode 644 inside a mode 700 folder: other users of this machine cannot
# reach them, while containers (uid 10001, PostgreSQL's uid 999), which get the
# file itself bind-mounted, can read them. Needs python3 and openssl.
set -eu
cd "$(dirname "$0")"
dir=${IMAGER_SECRETS_DIR:-secrets}
mkdir -p "$dir"
chmod 700 "$dir"
umask 022

random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }

make() {  # make FILE COMMAND...: run COMMAND into FILE unless FILE exists
  file=$dir/$1
  shift
  if [ -s "$file" ]; then
    echo "kept    $file"
  else
    "$@" > "$file.tmp" && mv "$file.tmp" "$file" && echo "created $file"
  fi
}

if [ "${1:-}" = password ]; then
  [ -n "${2:-}" ] || { echo "usage: sh make-secrets.sh password NAME" >&2; exit 2; }
  make "$2.password" random
  exit 0
fi

make secret_key python3 -c 'import secrets; print(secrets.token_urlsafe(50))'
make jwt_private.pem openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072
make warehouse.password random
make creator.password random
make postgres.password random
# Single quotes on purpose: the inner sh reads postgres.password, made just above.
# shellcheck disable=SC2016
make database_url sh -c 'printf "postgres://imager:%s@postgres:5432/imager\n" "$(cat "$1/postgres.password")"' sh "$dir"
