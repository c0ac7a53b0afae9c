#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the tests (idempotent: a running one is left alone) and prints the connection
# string to export as WEFT_TEST_POSTGRES. Usage: scripts/start-postgres.sh [DATA_DIR] [PORT]
set -euo pipefail
dir=${1:-/tmp/weft-postgres}
port=${2:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] && ! command -v initdb >/dev/null; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
bin=${bin:-$(dirname "$(command -v initdb)")}
# PostgreSQL refuses to run as root: the cluster then belongs to the postgres user the package created
as=()
if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
if [ ! -f "$dir/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  "${as[@]}" "$bin/initdb" -D "$dir" -U weft --auth=trust -E UTF8 >/dev/null
fi
if ! "${as[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  "${as[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-k /tmp -p $port -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
fi
"$bin/psql" -h 127.0.0.1 -p "$port" -U weft -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'weft'" \
  | grep -q 1 || "$bin/createdb" -h 127.0.0.1 -p "$port" -U weft weft
echo "Host=127.0.0.1;Port=$port;Username=weft;Database=weft"
