#!/usr/bin/env bash
# The plugin benchmark: builds the example plugins, the Extism peer's guest
# and the runner (release), then prints the table. Takes a while the first
# time: extism brings a second wasmtime.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-unknown-unknown wasm32-wasip2 >/dev/null
(cd ../.. && cargo xtask plugins)
cargo build --quiet --release -p extism-vip --target wasm32-unknown-unknown
cargo run --quiet --release -p plugin-bench
