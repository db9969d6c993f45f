#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and the demo need, and the npm
# packages of the browser test. Idempotent: when everything in scripts/packages.txt is
# installed and tests/browser/node_modules matches its package-lock.json it does nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt" | tr -d ' \t')

missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# playwright-core exactly as package-lock.json pins it, and never a browser of its own:
# the test drives Debian's chromium. npm writes node_modules/.package-lock.json on each
# install, so a lock file newer than it means the pins changed.
browser="$here/../tests/browser"
if ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: npm not found; the Explorer browser test will be skipped" >&2
elif [[ ! -f "$browser/node_modules/.package-lock.json" ||
        "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]]; then
  echo "install-deps: npm ci in tests/browser" >&2
  (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
