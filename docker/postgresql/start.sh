#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Starts PostgreSQL as the container's first process. On the first start (an empty data
# volume) it creates the cluster with the user POSTGRES_USER and its password
# POSTGRES_PASSWORD, and the database POSTGRES_DB; on later starts it reuses them.
# PGPORT and POSTGRES_LISTEN set the port and the addresses it listens on.
set -eu
: "${POSTGRES_USER:?set POSTGRES_USER}" "${POSTGRES_DB:?set POSTGRES_DB}"
bin=/usr/lib/postgresql/15/bin
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

install -d -o postgres -g postgres -m 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "orthanc-enhance-postgres: POSTGRES_PASSWORD is not set: the database would have" \
         "no password" >&2
    exit 64
  fi
  password_file=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
  chown postgres "$password_file"
  as_postgres "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$password_file" \
    --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" |
    as_postgres "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$PGDATA" \
  -p "$PGPORT" -c "listen_addresses=$POSTGRES_LISTEN" -c unix_socket_directories=/tmp
