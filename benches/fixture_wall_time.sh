#!/usr/bin/env bash
# Wall time of one xnli_en run on the bundled fixture (tiny model, 24 docs, CPU, f32, batch size 8): ibex vs lm-eval,
# measured in one script on one machine. The fixture is tiny, so both numbers are mostly start-up cost (loading
# Python, torch and transformers for lm-eval); this shows what a user waits for on small jobs, not model throughput.
#   usage: benches/fixture_wall_time.sh [PYTHON_WITH_LM_EVAL]   (default .venv/bin/python; see tests/fixtures/requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-.venv/bin/python}
cargo build --release --quiet
export HF_HOME=$PWD/tests/fixtures/hf-home HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
snapshot=$(ls -d "$HF_HOME"/hub/models--ibex-fixtures--tiny-salamandra/snapshots/*)
include=$(mktemp -d)
out=$(mktemp -d)
trap 'rm -rf "$include" "$out"' EXIT
cat > "$include/fixture_xnli_en.yaml" <<YAML
task: fixture_xnli_en
dataset_path: json
dataset_kwargs:
  data_files:
    validation: $PWD/tests/fixtures/data/xnli_en.validation.jsonl
output_type: multiple_choice
validation_split: validation
doc_to_text: ''
doc_to_target: label
doc_to_choice: '{{[premise+", right? Yes, "+hypothesis,premise+", right? Also, "+hypothesis,premise+", right? No, "+hypothesis]}}'
metric_list:
  - metric: acc
YAML
seconds() {
  local start end
  start=$(date +%s%N)
  "$@" > /dev/null 2>&1
  end=$(date +%s%N)
  printf '%d.%03d' $(((end - start) / 1000000000)) $(((end - start) / 1000000 % 1000))
}
for i in 1 2 3; do
  ibex=$(seconds ./target/release/ibex run --model ibex-fixtures/tiny-salamandra --tasks xnli_en --batch-size 8 --output "$out/ibex")
  lm=$(seconds "$python" -m lm_eval --model hf --model_args "pretrained=$snapshot,dtype=float32" --tasks fixture_xnli_en \
    --include_path "$include" --device cpu --batch_size 8 --output_path "$out/lm")
  echo "run $i: ibex ${ibex}s  lm_eval ${lm}s"
done
