#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests of `mlplab search` and print its URL.
#
#   bash .ci/start-postgres.sh [URL_FILE]
#
# Needs the Debian/Ubuntu package `postgresql` (installs nothing itself). Creates a fresh
# cluster in a new temporary directory, listening on 127.0.0.1 on a free port (trust
# authentication for local TCP only, no password), creates the database `mlplab_test`,
# writes postgresql://mlplab@127.0.0.1:PORT/mlplab_test to URL_FILE (if given) and prints
# it. The server keeps running after the script ends; stop it with
#   pg_ctl -D DATADIR stop        (as the user that owns DATADIR; both are printed).
# PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` user
# (created by the package), or to `nobody` if that user does not exist.
set -euo pipefail

url_file="${1:-}"

bindir=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then bindir="$d"; break; fi
done
if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1; then
  bindir="$(dirname "$(command -v initdb)")"
fi
if [ -z "$bindir" ]; then
  echo "start-postgres: no initdb found; install PostgreSQL first (apt-get install -y postgresql)" >&2
  exit 1
fi

run_as=()
owner="$(id -un)"
if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then owner=postgres; else owner=nobody; fi
  if command -v runuser >/dev/null 2>&1; then
    run_as=(runuser -u "$owner" --)
  elif command -v setpriv >/dev/null 2>&1; then
    run_as=(setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups)
  else
    run_as=(su -s /bin/sh "$owner" -c)
  fi
fi
run() {
  if [ "${#run_as[@]}" -gt 0 ] && [ "${run_as[0]}" = su ]; then
    "${run_as[@]}" "$(printf '%q ' "$@")"
  elif [ "${#run_as[@]}" -gt 0 ]; then
    "${run_as[@]}" "$@"
  else
    "$@"
  fi
}

parent="${TMPDIR:-/tmp}"
if [ "$(id -u)" = 0 ]; then parent=/tmp; fi  # the cluster owner must reach it
base="$(mktemp -d "$parent/mlplab-pg.XXXXXX")"
chmod 755 "$base"
data="$base/data"
sock="$base/socket"
mkdir -p "$sock"
if [ "$(id -u)" = 0 ]; then chown "$owner" "$base" "$sock"; fi

# A free TCP port on 127.0.0.1 (ask the kernel; fall back to a pseudo-random one).
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))"

cd "$base"  # runuser keeps the cwd; make sure the cluster owner can access it
run "$bindir/initdb" -D "$data" -U mlplab --auth=trust --encoding=UTF8 --no-locale >"$base/initdb.log" 2>&1 || {
  cat "$base/initdb.log" >&2
  exit 1
}
run "$bindir/pg_ctl" -D "$data" -l "$base/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$sock -c max_connections=100 -c fsync=off" \
  start >/dev/null || {
  cat "$base/server.log" >&2
  exit 1
}
run "$bindir/createdb" -h 127.0.0.1 -p "$port" -U mlplab mlplab_test

url="postgresql://mlplab@127.0.0.1:$port/mlplab_test"
if [ -n "$url_file" ]; then printf '%s\n' "$url" >"$url_file"; fi
echo "PostgreSQL for the tests: $url (data $data, owner $owner; stop: pg_ctl -D $data stop)" >&2
echo "$url"
