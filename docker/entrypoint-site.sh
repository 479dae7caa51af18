#!/bin/sh
# Entrypoint of the site image. One image, several services: the first argument
# names the process (see the case below); anything else runs as given.
# It creates nothing secret: keys, passwords and the admin account are the
# operator's (docker/make-secrets.sh, manage.py create_account).
set -eu

# Secrets arrive as files (compose secrets in /run/secrets) so they stay out of
# `docker inspect` and the environment of unrelated processes. Django reads these
# variables only from the environment, so VAR_FILE becomes VAR here. The other
# secrets (JWT_PRIVATE_KEY_FILE, WAREHOUSE_PASSWORD_FILE) are read as files natively.
for var in SECRET_KEY DATABASE_URL REDIS_URL EMAIL_HOST_PASSWORD; do
  eval "file=\${${var}_FILE:-}"
  if [ -n "$file" ]; then
    [ -r "$file" ] || { echo "error: ${var}_FILE: cannot read $file" >&2; exit 2; }
    value=$(cat "$file")
    export "$var=$value"
    unset "${var}_FILE"
  fi
done

manage() { exec python manage.py "$@"; }

# migrate may start before the database accepts connections on a cold boot even
# with healthchecks (MongoDB elects its primary a moment after it answers pings).
migrate() {
  tries=${MIGRATE_TRIES:-10}
  n=1
  until python manage.py migrate --no-input; do
    [ "$n" -ge "$tries" ] && { echo "error: migrate failed $tries times" >&2; exit 1; }
    echo "migrate failed (try $n of $tries); retrying in 5 s" >&2
    n=$((n + 1))
    sleep 5
  done
}

command=${1:-web}
[ $# -gt 0 ] && shift
case $command in
  migrate)
    # The one-shot migrate service of the compose files; the only place that
    # changes the schema, so several web replicas never race on it.
    # migrate runs Django's system checks first: a bad environment stops here,
    # with the variable named, before any service starts.
    migrate
    ;;
  web)
    exec gunicorn imager_site.wsgi --bind "0.0.0.0:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-3}" --timeout "${WEB_TIMEOUT:-60}" \
      --access-logfile - "$@"
    ;;
  rqworker) manage rqworker --with-scheduler "$@" ;;
  rqcron) manage rqcron imager_site.cron "$@" ;;
  sweep) manage sweep --loop "$@" ;;
  warehouse) exec python -m ftp "$@" ;;
  manage) manage "$@" ;;
  *) exec "$command" "$@" ;;
esac
