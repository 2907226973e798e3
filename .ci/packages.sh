#!/usr/bin/env bash
# Installs the Debian packages the test suite drives, when they are missing: Chromium and its
# driver for the dashboard's browser tests, nginx for the reverse-proxy test, HAProxy for the
# load balancer's (tests/integration/test_balancer.py) (never a downloaded browser:
# tests/integration/browser.py uses /usr/bin/chromium).
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# The curl tours: README.md and docs/api.md (test_docs), examples/curl.sh (test_examples).
command -v curl >/dev/null 2>&1 || missing+=(curl)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi
