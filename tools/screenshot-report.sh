#!/usr/bin/env bash
# Renders a demo report.html to a PNG with headless Chromium, to look at it (or for the README picture).
# Usage: tools/screenshot-report.sh REPORT.html [OUT.png] [WIDTH] [HEIGHT]
#   defaults: OUT = report.png next to the report, 1200 x 2400 pixels.
# Needs chromium (Debian: apt-get install -y chromium). Nothing is fetched: the report is self-contained and the
# browser runs with networking, sync and component updates off, in a throwaway profile.
set -euo pipefail
if [[ $# -lt 1 || ! -f "$1" ]]; then
  echo "usage: $0 REPORT.html [OUT.png] [WIDTH] [HEIGHT]  (REPORT.html must exist)" >&2
  exit 2
fi
html=$(realpath "$1")
out=$(realpath -m "${2:-$(dirname "$html")/report.png}")
width=${3:-1200}
height=${4:-2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [[ -z "$browser" ]]; then
  echo "$0: no chromium found; install it (apt-get install -y chromium)" >&2
  exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$profile" \
  --screenshot="$out" --window-size="$width,$height" "file://$html" 2>/dev/null
echo "$out"
