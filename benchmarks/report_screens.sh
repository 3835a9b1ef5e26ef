#!/usr/bin/env bash
# First screen (1,400 x 900, what a reader sees before scrolling) of reports, as PNG files beside them:
#   benchmarks/report_screens.sh reports/rq1_jigsaw_2x1_pair reports/rq3_thinking ...
# writes reports/<name>/first_screen.png for each report folder (its index.html) and prints the paths.
# Needs Chromium (apt-get install chromium; .ci/run installs it).
set -euo pipefail
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "error: Chromium not found; install it (apt-get install chromium)" >&2; exit 2; }
[ $# -gt 0 ] || { echo "usage: $0 REPORT_DIR [REPORT_DIR ...]" >&2; exit 2; }
for dir in "$@"; do
  page="$dir/index.html"
  [ -f "$page" ] || { echo "error: $page not found; run the study first (jrl study quick)" >&2; exit 2; }
  out="$dir/first_screen.png"
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900 \
    --screenshot="$(realpath "$out")" "file://$(realpath "$page")" >/dev/null 2>&1
  echo "$out"
done
