# One image for the API, the worker, the dispatcher, Flower and the one-shot migration
# (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 backprop

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN mkdir -p model_core service worker \
    && touch model_core/__init__.py service/__init__.py worker/__init__.py README.md \
    && pip install ".[flower]" \
    && rm -rf model_core service worker build *.egg-info

# Editable, so `backprop db upgrade` finds migrations/ next to the code.
COPY . .
RUN pip install --no-deps -e . && chown -R backprop /app
USER backprop

EXPOSE 8000
CMD ["backprop", "api"]
