#!/usr/bin/env bash
# The README's first command: builds the web app (scripts/web-build.sh) and
# starts the server on its embedded default (127.0.0.1:7700, SQLite under
# ./wisp-data), serving the app at http://127.0.0.1:7700/ beside the
# WebSocket. Arguments go to wisp-server (see `wisp-server --help`), e.g.
#   scripts/serve.sh --listen 0.0.0.0:7700
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/web-build.sh
echo "serve: building and starting wisp-server (release); open http://127.0.0.1:7700/ (Ctrl-C stops it)"
exec cargo run --release --locked -p wisp-server -- --web-root "$root/web/dist" "$@"
