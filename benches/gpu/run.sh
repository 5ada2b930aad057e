#!/usr/bin/env bash
# The one prepared call for a lent GPU (the `device` tool): parity on CUDA against lm-eval's fixture outputs (f32
# within the CPU tolerance; bf16 argmax agreement), then scoring throughput of ibex against HF transformers
# (hf_anchor.py) on random-weight Salamandra-2B and -7B shapes, all on the same card. Everything it prints goes to
# $OUT; commit it under benches/results/ with the card's name.
#
# Prepare here (see benches/README.md): build with CUDA and copy into the ignored, carried folder .carry/:
#   .carry/ibex         target/release/ibex built with --features cuda
#   .carry/throughput   the throughput bench binary built with --features cuda
# then: run(command="bash benches/gpu/run.sh", carry=[".carry"], timeout_s=540)
set -uo pipefail
out=${OUT:-/tmp/ibex-gpu}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
source scripts/gpu-env.sh
export HF_HOME=$PWD/tests/fixtures/hf-home HF_HUB_OFFLINE=1
reference=tests/fixtures/lm_eval
for dtype in f32 bf16; do
  for shots in 0 3; do
    dir=$out/parity-$dtype-${shots}shot
    .carry/ibex run --model ibex-fixtures/tiny-salamandra --tasks xnli_en --num-fewshot $shots --device cuda \
      --dtype $dtype --batch-size 8 --output "$dir" --log-samples > /dev/null
    python3 benches/gpu/compare_samples.py "$dir/samples_xnli_en.jsonl" "$reference/samples_xnli_en_${shots}shot.jsonl" \
      "xnli_en ${shots}-shot cuda $dtype"
  done
done
for shape in salamandra-2b salamandra-7b; do
  timeout 150 .carry/throughput $shape cuda bf16
done
OUT=$out timeout 240 python3 benches/gpu/hf_anchor.py
