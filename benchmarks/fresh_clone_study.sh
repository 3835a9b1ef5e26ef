#!/usr/bin/env bash
# Benchmark: the README's study command on a fresh clone, timed (spine issue: <= 20 min on 2 cores).
# Usage: benchmarks/fresh_clone_study.sh [study [jrl study options...]]   (default: quick), e.g.
#        benchmarks/fresh_clone_study.sh full --jobs 2. Prints the wall time and the index path.
set -euo pipefail
study=${1:-quick}
shift || true
src=$(cd "$(dirname "$0")/.." && pwd)
dst=$(mktemp -d /tmp/jrl-fresh-XXXX)
git clone -q "$src" "$dst/repo"
cd "$dst/repo"
start=$(date +%s)
python3 -m venv .venv && .venv/bin/pip install -q --no-compile -e '.[dev]'  # the README's study command
setup=$(date +%s)
.venv/bin/jrl study "$study" "$@"
end=$(date +%s)
echo "setup: $((setup - start)) s; study: $((end - setup)) s; total: $((end - start)) s"
echo "index: $dst/repo/reports/index.html"
