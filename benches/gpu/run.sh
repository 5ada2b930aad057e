#!/usr/bin/env bash
# The one prepared call for a lent GPU (the `device` tool): parity on CUDA against lm-eval's fixture outputs (f32
# within the CPU tolerance; bf16 argmax agreement), the same model split over two handles of the card, as two
# replicas and as two replicas of a split (`--device cuda:0,cuda:0…`, the placement code paths a multi-GPU node
# takes), greedy generation against lm-eval's strings, then scoring throughput of ibex against HF transformers
# (hf_anchor.py) on random-weight Salamandra-2B and -7B shapes, and what shared prefixes save (throughput.rs
# choices), all on the same card. Everything it prints goes to
# $OUT; commit it under benches/results/ with the card's name.
#
# Prepare here (see benches/README.md): build with CUDA, strip, and pack into the ignored, carried folder .carry/
# (the binaries hold CUDA kernels and exceed the 64 MiB a call carries; xz makes them 17 MiB):
#   .carry/bins.tar.xz  holding ibex (target/release/ibex built with --features cuda) and throughput (the bench)
# then: run(command="bash benches/gpu/run.sh", carry=[".carry"], timeout_s=420)
set -uo pipefail
out=${OUT:-/tmp/ibex-gpu}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
source scripts/gpu-env.sh
export HF_HOME=$PWD/tests/fixtures/hf-home HF_HUB_OFFLINE=1
reference=tests/fixtures/lm_eval
work=$(mktemp -d)
step() { echo "== $* ($(date +%T))"; }
# Runs xnli_en on the fixture model and compares its samples with lm-eval's: LABEL SHOTS DTYPE then --device etc.
parity() {
  local label=$1 shots=$2 dtype=$3
  shift 3
  local dir=$work/$label-$dtype-${shots}shot
  if .carry/ibex run --model ibex-fixtures/tiny-salamandra --tasks xnli_en --num-fewshot "$shots" --dtype "$dtype" \
    --batch-size 8 --output "$dir" --log-samples "$@" > "$dir.log" 2>&1; then
    echo "placement: $(python3 -c "import json,glob;print(json.load(open(glob.glob('$dir/*/results_*.json')[0]))['config']['device'])")"
    python3 benches/gpu/compare_samples.py "$dir"/*/samples_xnli_en_*.jsonl \
      "$reference/samples_xnli_en_${shots}shot.jsonl" "xnli_en ${shots}-shot $dtype $label"
  else
    echo "FAILED $label ${shots}-shot $dtype"; tail -5 "$dir.log"
  fi
}
step "binary"
tar -xJf .carry/bins.tar.xz -C .carry
.carry/ibex --version
step "parity: one handle"
for dtype in f32 bf16; do
  for shots in 0 3; do parity single "$shots" "$dtype" --device cuda:0; done
done
step "parity: placements over two and four handles of cuda:0 (f32)"
for shots in 0 3; do
  parity split "$shots" f32 --device cuda:0,cuda:0 --max-memory 600KiB,600KiB
  parity replicas "$shots" f32 --device cuda:0,cuda:0
  parity split-replicas "$shots" f32 --device cuda:0,cuda:0,cuda:0,cuda:0 --max-memory 600KiB
done
step "generation: xquad_en 0-shot, f32, one handle and split"
# The fixture's recipe: xquad_en with max_gen_toks 24 on the bundled questions (as tests/generation.rs runs it).
mkdir -p "$work/tasks"
sed -e 's/name = "xquad_en"/name = "xquad_en_short"/' -e 's/until = \["\\n"\]/&\nmax_gen_toks = 24/' \
  tasks/qa/xquad_en.toml > "$work/tasks/xquad_en_short.toml"
for placement in "cuda:0" "cuda:0,cuda:0 --max-memory 600KiB,600KiB"; do
  dir=$work/gen-${placement%% *}
  # shellcheck disable=SC2086
  .carry/ibex run --model ibex-fixtures/tiny-salamandra --tasks xquad_en_short --tasks-dir "$work/tasks" \
    --data xquad_en_short=tests/fixtures/data/qa_en.validation.jsonl --dtype f32 --batch-size 8 --output "$dir" \
    --log-samples --device $placement > "$dir.log" 2>&1 || { echo "FAILED generation $placement"; tail -5 "$dir.log"; }
  python3 - "$dir"/*/samples_xquad_en_short_*.jsonl "$reference/samples_xquad_en_0shot.jsonl" "$placement" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
ref = [json.loads(l) for l in open(sys.argv[2])]
same = sum(o["filtered_resps"] == r["filtered_resps"] for o, r in zip(ours, ref))
print(json.dumps({"label": f"xquad_en 0-shot f32 generation {sys.argv[3]}", "docs": len(ref), "identical_strings": f"{same}/{len(ref)}"}))
PY
done
step "throughput: ibex"
for shape in salamandra-2b salamandra-7b; do timeout 75 .carry/throughput $shape cuda bf16; done
step "throughput: shared prefixes (ibex; XNLI-shaped documents of three choices, each alone, then in shared rows)"
for shape in salamandra-2b salamandra-7b; do timeout 100 .carry/throughput choices $shape cuda bf16; done
step "throughput: HF transformers anchor"
OUT=$out timeout 130 python3 benches/gpu/hf_anchor.py
step "done"
