#!/usr/bin/env bash
# `make compose-test`: docker-compose.yml up for real (issue 14), then tests/compose/stack.py.
#
# Needs root on a Debian bookworm machine that reaches Debian's packages and PyPI, and no image
# registry: it installs Docker from Debian when missing, starts dockerd when it is not running,
# builds a Debian base image with debootstrap, stand-ins for the official postgres, redis and
# haproxy images (tests/compose/images/), a wheelhouse on the host and the app image from the real
# Dockerfile, then runs docker-compose.yml with docker-compose.ci.yml (the images only).
# Images are kept, so a second run builds nothing new; the stack and its volumes are removed at
# the end, whatever happens. A daemon that cannot start fails the run with its own error.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
BASE_IMAGE=backprop-ci/bookworm:latest
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DOCKERD_LOG=/var/log/dockerd.log
WHEELHOUSE=var/wheelhouse
# What the image installs, and a setuptools to install the code itself with. Debian bookworm's
# Python is 3.11.2, where redis also wants async-timeout (python_full_version < "3.11.3"): a
# newer Python on the host would not put it in the wheelhouse.
WHEELS=(".[flower]" ./client "setuptools>=77" "async-timeout>=4.0.3")
export COMPOSE_FILE=docker-compose.yml:docker-compose.ci.yml
export COMPOSE_PROJECT_NAME=backprop-ci
# The classic builder: the Docker client here may lack the buildx plugin BuildKit needs.
export DOCKER_BUILDKIT=0

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

install_docker() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then
        step "installing ${missing[*]} from Debian"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
}

start_dockerd() {
    docker info >/dev/null 2>&1 && return
    local pid_file=/var/run/docker.pid
    if [[ -f $pid_file ]] && ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "removing the stale $pid_file"
        rm -f "$pid_file"
    fi
    step "starting dockerd (log: $DOCKERD_LOG)"
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    local dockerd_pid=$!
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return
        if ! kill -0 "$dockerd_pid" 2>/dev/null; then
            echo "dockerd exited; the end of $DOCKERD_LOG:" >&2
            tail -n 20 "$DOCKERD_LOG" >&2
            exit 1
        fi
        sleep 1
    done
    echo "dockerd did not answer within 60 s; the end of $DOCKERD_LOG:" >&2
    tail -n 20 "$DOCKERD_LOG" >&2
    exit 1
}

build_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "$BASE_IMAGE exists"
        return
    fi
    step "building $BASE_IMAGE with debootstrap (Debian bookworm, minbase, python3)"
    local rootfs
    rootfs=$(mktemp -d /var/tmp/backprop-rootfs.XXXXXX)
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" \
        "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
    tar -C "$rootfs" -c . | docker import --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE"
    rm -rf "$rootfs" "$rootfs.log"
}

build_wheelhouse() {
    local stamp=$WHEELHOUSE/.requirements want
    want=$( (cat pyproject.toml client/pyproject.toml; echo "${WHEELS[*]}") | sha256sum)
    if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
        echo "$WHEELHOUSE is up to date"
        return
    fi
    step "building the wheelhouse $WHEELHOUSE on the host (containers cannot reach PyPI)"
    rm -rf "$WHEELHOUSE"
    "$PYTHON" -m pip wheel -q --wheel-dir "$WHEELHOUSE" "${WHEELS[@]}"
    # The image installs our code from its source; wheels of it, new bytes at every build,
    # would only invalidate the image's cached dependency layer.
    rm -f "$WHEELHOUSE"/backprop_service-*.whl "$WHEELHOUSE"/backprop_client-*.whl
    echo "$want" >"$stamp"
}

# Builds image TAG (the rest: docker build's arguments), then removes the image TAG named before
# if it is another one: each run would otherwise leave the previous build behind, untagged.
build_replacing() {
    local tag=$1 old
    shift
    old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    docker build --force-rm -t "$tag" "$@"
    if [[ -n $old && $old != "$(docker image inspect --format '{{.Id}}' "$tag")" ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
}

build_images() {
    step "building the stand-in images (cached layers are reused)"
    build_replacing backprop-ci/postgres:15 -q --build-arg BASE="$BASE_IMAGE" \
        tests/compose/images/postgres
    build_replacing backprop-ci/redis:7 -q --build-arg BASE="$BASE_IMAGE" \
        tests/compose/images/redis
    build_replacing backprop-ci/haproxy:2.6 -q --build-arg BASE="$BASE_IMAGE" \
        tests/compose/images/haproxy
    step "building backprop-service:latest from the Dockerfile on $BASE_IMAGE"
    local args=(--build-arg BASE="$BASE_IMAGE" --build-arg WHEELHOUSE="$WHEELHOUSE" .)
    # The dependency stage tagged too, so that it is kept (the next run's cache) and replaced.
    build_replacing backprop-service:dependencies --target dependencies "${args[@]}"
    build_replacing backprop-service:latest "${args[@]}"
}

take_down() {
    step "docker-compose down -v"
    docker-compose down -v --remove-orphans || true
}

install_docker
start_dockerd
build_base_image
build_wheelhouse
build_images
# Values the stack needs from its environment; made up for this run.
FLOWER_BASIC_AUTH="ci:$(openssl rand -hex 8)" METRICS_TOKEN=$(openssl rand -hex 16) \
    SECRET_KEY=$(openssl rand -hex 32)
export FLOWER_BASIC_AUTH METRICS_TOKEN SECRET_KEY
trap take_down EXIT
"$PYTHON" -m tests.compose.stack
