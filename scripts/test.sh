#!/usr/bin/env bash
# The whole suite in one command: services, the web build, every Rust test,
# then the web app's unit and browser tests; one summary at the end.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
results=()
failed=0

step() {
  local name="$1"
  shift
  printf '\n== %s\n' "$name"
  local started=$SECONDS
  if "$@"; then
    results+=("ok      $name ($((SECONDS - started)) s)")
  else
    results+=("FAILED  $name ($((SECONDS - started)) s)")
    failed=1
  fi
}

step "services (scripts/ensure-services.sh)" scripts/ensure-services.sh
step "web build (scripts/web-build.sh)" scripts/web-build.sh
step "cargo test --workspace --locked" nice cargo test --workspace --locked
# The browser tests start the debug server and CLI that cargo test built
# for the integration tests (building them apart, with other features,
# would compile half the dependencies again).
step "target/debug/wisp-server and target/debug/wisp (built by cargo test)" \
  test -x target/debug/wisp-server -a -x target/debug/wisp
step "web unit tests (vitest)" npm --prefix web run --silent test:unit
step "web browser tests (playwright-core + chromium)" npm --prefix web run --silent test:browser

printf '\n== summary\n'
printf '%s\n' "${results[@]}"
exit "$failed"
