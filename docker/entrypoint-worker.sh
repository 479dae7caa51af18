#!/bin/sh
# Entrypoint of the worker image: `creator`, `downloader` or `writer`, then the
# worker's own options (all of them also read IMAGER_* variables, see README).
# Passwords come as files (IMAGER_PASSWORD_FILE), which the workers read natively.
set -eu
command=${1:-}
[ $# -gt 0 ] && shift
case $command in
  creator | downloader | writer) exec python -m "workers.$command" "$@" ;;
  "") echo "usage: creator|downloader|writer [OPTIONS] (or any command)" >&2; exit 2 ;;
  *) exec "$command" "$@" ;;
esac
