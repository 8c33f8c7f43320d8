#!/usr/bin/env bash
# Installs the Debian packages Falcon's tests and benchmarks need, only when missing.
# redis-server and PostgreSQL: the integration tests start private instances of them;
# prometheus: promtool checks and unit-tests the rendered alert rules, and e2e tests scrape Falcon;
# wrk: the load generator of the benchmark;
# chromium: the web console's browser tests (tests/e2e/test_console_browser.py, Playwright);
# kubectl: `kubectl kustomize` builds the rendered Kubernetes overlays (tests/integration/test_k8s_render.py).
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# kubectl only where the configured apt sources offer a package named kubectl (e.g. the
# Kubernetes project's repository). Debian's own kubernetes-client is kubectl 1.20, whose
# kustomize v2 cannot build the layout (no `patches:`, no components): not installed; the
# kustomize test then skips, saying so.
if ! command -v kubectl >/dev/null 2>&1 \
  && apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [^(]'; then
  missing+=(kubectl)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
