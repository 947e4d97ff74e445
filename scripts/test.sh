#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
bash scripts/fuzz.sh smoke
