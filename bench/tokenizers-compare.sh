#!/usr/bin/env bash
# Ours vs Microsoft.ML.Tokenizers vs Hugging Face tokenizers on the same text and vocabularies, in one run: encode
# speed (MB/s, ids/s) and exactness against Hugging Face's ids. Prints the markdown kept in bench/RESULTS.md.
# Hugging Face's Rust tokenizers come from the npm package @anush008/tokenizers, installed on first use outside the
# repository (HF_NODE_DIR, default /tmp/hftok; not a project dependency). ROUNDS=n sets the interleaved rounds (3).
set -euo pipefail
cd "$(dirname "$0")/.."
hf_dir=${HF_NODE_DIR:-/tmp/hftok}
if [ ! -d "$hf_dir/node_modules/@anush008/tokenizers" ]; then
  mkdir -p "$hf_dir"
  (cd "$hf_dir" && npm install --no-save --silent @anush008/tokenizers @anush008/tokenizers-linux-x64-gnu)
fi
export NODE_PATH="$hf_dir/node_modules"
dotnet build -c Release bench/Whittle.Native.Bench -v quiet -nologo >&2
dotnet bench/Whittle.Native.Bench/bin/Release/net10.0/Whittle.Native.Bench.dll tokenizers-compare --rounds "${ROUNDS:-3}"
