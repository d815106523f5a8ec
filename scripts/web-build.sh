#!/usr/bin/env bash
# Builds the browser app: the wasm core (crates/wisp-wasm), its JavaScript
# bindings (wasm-bindgen, at exactly the version in Cargo.lock), and the
# Vite bundle in web/dist, which `wisp-server --web-root web/dist` serves.
# Idempotent: each step is cheap when there is nothing to do.
set -euo pipefail

say() { printf 'web-build: %s\n' "$*"; }
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

say "rust target wasm32-unknown-unknown"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 \
  || { say "cannot add the wasm32-unknown-unknown target (rustup)"; exit 1; }

# The CLI must match the wasm-bindgen crate the wasm was built with, to the patch.
want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[ -n "$want" ] || { say "no wasm-bindgen in Cargo.lock"; exit 1; }
have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
if [ "$have" != "$want" ]; then
  say "installing wasm-bindgen-cli $want (found: ${have:-none})"
  if ! nice cargo install --locked wasm-bindgen-cli --version "$want"; then
    # Seen here: the registry lacked a patch release the CLI's lock file
    # names (webpki-roots 1.0.11, of its download feature). The CLI itself
    # is still exactly $want.
    say "--locked install failed; retrying wasm-bindgen-cli $want with the newest matching dependencies"
    nice cargo install wasm-bindgen-cli --version "$want"
  fi
else
  say "wasm-bindgen-cli $want is installed"
fi

say "building crates/wisp-wasm for wasm32-unknown-unknown (release)"
nice cargo build --locked -p wisp-wasm --target wasm32-unknown-unknown --release

out="web/src/wasm"
say "generating the JavaScript bindings into $out"
wasm-bindgen --target web --out-dir "$out" target/wasm32-unknown-unknown/release/wisp_wasm.wasm

cd web
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
else
  say "node_modules is up to date"
fi
say "npm run build -> web/dist"
npm run build --silent
say "done: $(du -sh dist | cut -f1) in web/dist"
