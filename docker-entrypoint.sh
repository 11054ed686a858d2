#!/bin/sh
# Entry point of the paygate image. Started as root (the default), it gives
# the data folder to the postgres user (a bind-mounted host folder is often
# root-owned, and PostgreSQL refuses to run as root) and runs paygate as
# postgres. Started as another user (docker run --user), it runs paygate as
# that user and leaves ownership alone.
set -eu
data="${DATA_DIR:-/data}"
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$data"
    if [ "$(stat -c %U "$data")" != postgres ]; then
        chown -R postgres:postgres "$data"
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- paygate "$@"
fi
exec paygate "$@"
