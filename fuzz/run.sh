#!/usr/bin/env bash
# Builds and runs one fuzz target on the stable toolchain (see fuzz/README.md).
#
#   bash fuzz/run.sh TARGET SECONDS [libFuzzer flags...]
#
# New inputs go to fuzz/work/TARGET (the committed seed corpus fuzz/corpus/TARGET is only
# read); crashes go to fuzz/artifacts/TARGET/. Both folders are git-ignored: move a crash you
# want kept into fuzz/regressions/TARGET/ so that the replay test runs it.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: bash fuzz/run.sh TARGET SECONDS [libFuzzer flags...]" >&2
  exit 2
fi
target=$1
seconds=$2
shift 2

cd "$(dirname "$0")"
triple=x86_64-unknown-linux-gnu

# The coverage instrumentation cargo-fuzz would pass, as ordinary stable codegen flags.
# --target keeps build scripts and proc macros uninstrumented.
RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions" \
  cargo build --release --target "$triple" --bin "$target"

mkdir -p "work/$target" "artifacts/$target" "corpus/$target"
exec "./target/$triple/release/$target" \
  "work/$target" "corpus/$target" \
  -max_total_time="$seconds" \
  -rss_limit_mb=512 \
  -artifact_prefix="artifacts/$target/" \
  -print_final_stats=1 \
  "$@"
