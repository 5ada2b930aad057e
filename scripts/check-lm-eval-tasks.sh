#!/usr/bin/env bash
# Runs ibex over lm-eval 0.4.13's own task tree and checks ibex's shipped task files against it. lm-eval is
# installed without its dependencies (no torch): only its YAML files and the loader's needs. Usage:
#   scripts/check-lm-eval-tasks.sh [IBEX_BINARY] [DIR]    (defaults: target/debug/ibex, ~/.cache/lm-eval-0.4.13)
# Prints, per benchmark folder, how many of lm-eval's tasks and groups load in ibex, the commonest reasons for the
# rest, and one line per shipped task ("same" as lm-eval's file of its name, or what differs); fails when a shipped
# task differs.
set -euo pipefail
cd "$(dirname "$0")/.."
ibex=${1:-target/debug/ibex}
dir=${2:-$HOME/.cache/lm-eval-0.4.13}
if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q --disable-pip-version-check pyyaml==6.0.2 jinja2==3.1.6
  "$dir/venv/bin/pip" install -q --disable-pip-version-check --no-deps lm-eval==0.4.13
fi
tree=$(echo "$dir"/venv/lib/python3*/site-packages/lm_eval/tasks)
# The per-task table is long: keep the summary tables (from the folder counts on).
"$ibex" tasks --tasks-dir "$tree" --check | awk '/┆ loads ┆ cannot run yet/ {on=1} on'
"$dir/venv/bin/python" scripts/check_shipped_tasks.py "$tree"
# The hooks ibex mirrors in Rust, read from lm-eval's own utils.py: each task must load (ibex checks the Python body
# beside the task file against the one it mirrors).
report=$("$ibex" tasks --tasks-dir "$tree" --check)
for task in xnli_ca teca paws_ca copa_ca copa_es xnli_es_spanish_bench paws_es_spanish_bench xnli_gl paws_gl \
    parafrases_gl paws_eu xcopa_eu eus_trivia eus_reading eus_exams_eu_ejadministrari assin2_rte xquad_ca catalanqa \
    xquad_es; do
  grep -qE "^│ $task +┆ [a-z_]+ +┆ loads" <<<"$report" || { echo "lm-eval's $task does not load in ibex" >&2; exit 1; }
done
echo "every hook ibex mirrors matches lm-eval 0.4.13's Python body"
