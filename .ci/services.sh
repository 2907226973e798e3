#!/usr/bin/env bash
# Starts Redis and PostgreSQL on their default local ports when they are not already answering.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 6379; then
  echo "starting redis-server on 6379"
  redis-server --daemonize yes --port 6379 --save "" --appendonly no
fi

if ! port_open 5432; then
  echo "starting PostgreSQL on 5432"
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster "$version" main start
  else
    service postgresql start
  fi
fi

for _ in $(seq 1 30); do
  port_open 6379 && port_open 5432 && exit 0
  sleep 1
done
echo "Redis or PostgreSQL did not come up" >&2
exit 1
