#!/bin/sh
# As the official image: redis-server runs as the redis user in /data, with protected mode off
# (the official build turns it off; Debian's leaves it on, refusing other containers).
set -eu
if [ "$1" = redis-server ]; then
    shift
    chown -R redis:redis /data
    set -- setpriv --reuid=redis --regid=redis --init-groups \
        redis-server --protected-mode no "$@"
fi
exec "$@"
