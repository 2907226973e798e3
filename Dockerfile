# One image for the API, the worker, the dispatcher, Flower and the one-shot migration
# (docker-compose.yml picks the command).
#
# BASE: an image with Python 3.11+ (python3 and its venv module). `make compose-test` builds on
# a debootstrapped Debian, since no image registry is reachable there.
# WHEELHOUSE: a folder of the build context with a wheel for every dependency, e.g.
#   pip wheel ".[flower]" ./client "setuptools>=77" -w var/wheelhouse
# Set, pip installs from it alone (--no-index); empty, from PyPI.
ARG BASE=python:3.11-slim

FROM ${BASE} AS dependencies
ARG WHEELHOUSE=
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Without a wheelhouse this copies pyproject.toml once more: COPY needs a source.
COPY ${WHEELHOUSE:-pyproject.toml} /tmp/wheelhouse/
COPY pyproject.toml ./
COPY client client
# The dependencies, the client (for `backprop datasets|train|jobs ...` in a container) and a
# setuptools that can install the code itself below without a package index.
RUN python3 -m venv /opt/venv \
    && mkdir -p model_core service worker \
    && touch model_core/__init__.py service/__init__.py worker/__init__.py README.md \
    && pip install ${WHEELHOUSE:+--no-index --find-links /tmp/wheelhouse} \
        ".[flower]" ./client "setuptools>=77" \
    && pip uninstall -y backprop-service

# Only the venv leaves the first stage: not the wheelhouse, nor pip's build files.
FROM ${BASE}
# Python in a venv on PATH: a distribution's own Python refuses pip (PEP 668), and the compose
# file's health checks run `python`.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --create-home --uid 10001 backprop
COPY --from=dependencies /opt/venv /opt/venv

# Editable, so `backprop db upgrade` finds migrations/ next to the code. The code only: the
# build context also holds the wheelhouse, which must not reach the image.
COPY pyproject.toml README.md ./
COPY model_core model_core
COPY service service
COPY worker worker
COPY migrations migrations
RUN pip install --no-deps --no-build-isolation --no-index -e . && chown -R backprop /app
USER backprop

EXPOSE 8000
CMD ["backprop", "api"]
