#!/usr/bin/env bash
# Queues an ibex evaluation as a Slurm array of N shards plus a merge that runs once every shard has succeeded.
#   scripts/slurm/submit.sh N MODEL TASKS OUT [ibex run flags…]
# e.g. scripts/slurm/submit.sh 8 BSC-LT/salamandra-7b xnli,xquad_es /gpfs/scratch/me/sal7b --num-fewshot 5
# Fill the hub cache first, on the login node (compute nodes are offline): `ibex fetch --model MODEL --tasks TASKS`
# with the same flags, which downloads the checkpoint and the tasks' data and checks the plan.
set -euo pipefail
if [ $# -lt 4 ]; then
    sed -n '2,6p' "$0"; exit 2
fi
count=$1 model=$2 tasks=$3 out=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
export IBEX=${IBEX:-$(command -v ibex || echo "$here/../../target/release/ibex")}
export IBEX_MODEL=$model IBEX_TASKS=$tasks IBEX_OUT=$out IBEX_ARGS="$*"
mkdir -p "$out"
# IBEX_GPUS_PER_SHARD (default 1): GPUs per shard; 4 gives a shard a whole MareNostrum 5 node (ALIA-40B in bf16
# needs two 64 GB GPUs; ibex splits it over two and runs a replica on the other two), with 20 CPU cores per GPU.
gpus=${IBEX_GPUS_PER_SHARD:-1}
array=$(sbatch --parsable --array="0-$((count - 1))" --gres="gpu:${gpus}" --cpus-per-task="$((20 * gpus))" \
    "$here/eval-shard.sbatch")
merge=$(sbatch --parsable --dependency="afterok:${array}" "$here/merge.sbatch")
echo "shards: job ${array} (${count} array tasks); merge: job ${merge} -> ${out}/merged/<model>/results_<date>.json"
