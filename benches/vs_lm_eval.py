"""ibex against lm-eval on the same work, on this machine's CPU, in one run: an XNLI-shaped multiple-choice task
(three choices per document, each the premise followed by a connective and the hypothesis, lm-eval's xnli recipe)
over generated documents, scored by random-weight Llama checkpoints with the fixture tokenizer:

  tiny-3l    the fixture shape with 3 layers (hidden 64): overhead-bound, its arithmetic takes well under a second
  llama-25m  hidden 512, 8 layers, 8 heads, MLP 1280 (25.3M parameters): compute-bound

Both harnesses get the same checkpoint folder, task file, data, dtype (f32), device (cpu) and batch size, and both
score every request (ibex's scores match lm-eval's per request; the accuracies are printed side by side as a check).
Wall time counts each whole command, start-up included. Tokens are the model-input tokens of every request (what a
harness that shares nothing computes, and what tokens/s counts for both); "computed" are the tokens ibex ran after
sharing each document's prefixes. "Of matmul peak" is 2 x non-embedding parameters x tokens / wall time over the f32
matrix-product rate torch measures on this machine with every core: per token computed (the arithmetic ibex did) and
per request token (the arithmetic it stood in for).

  .venv/bin/python benches/vs_lm_eval.py [--quick]      (lm-eval, torch, transformers: tests/fixtures/requirements.txt)

Prints a table and writes it, with the raw numbers, to benches/results/vs_lm_eval-<cpu>-<date>.{md,json}."""
import datetime
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/models/tiny-salamandra-tied"
SHAPES = {
    "tiny-3l": dict(hidden_size=64, intermediate_size=172, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2),
    "llama-25m": dict(hidden_size=512, intermediate_size=1280, num_hidden_layers=8, num_attention_heads=8,
                      num_key_value_heads=8),
}
BATCH = 8
TASK = """task: bench_nli
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}/test.jsonl
    train: {data}/train.jsonl
output_type: multiple_choice
test_split: test
fewshot_split: train
doc_to_text: ''
doc_to_target: label
doc_to_choice: '{{{{[premise+", right? Yes, "+hypothesis,premise+", right? Also, "+hypothesis,premise+", right? No, "+hypothesis]}}}}'
metric_list:
  - metric: acc
"""


def documents(count: int, seed: int):
    """Premises of 14-30 words and hypotheses of 5-12, drawn from the words of the fixture corpus (this project's own
    sentences), so lengths resemble XNLI's."""
    words = re.findall(r"[a-z']+", (ROOT / "tests/fixtures/corpus.txt").read_text().lower())
    rng = random.Random(seed)
    sentence = lambda lo, hi: " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi))).capitalize()
    return [{"premise": sentence(14, 30) + ".", "hypothesis": sentence(5, 12) + ".", "label": rng.randrange(3)}
            for _ in range(count)]


def checkpoint(name: str, out: Path) -> int:
    """Writes a random-weight checkpoint of shape `name` with the fixture tokenizer; returns its non-embedding
    parameter count (the matrices a token passes through, the LM head included)."""
    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[name], vocab_size=json.loads((FIXTURE / "config.json").read_text())["vocab_size"],
                         max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=3,
                         torch_dtype="float32")
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)
    (out / "tokenizer.json").write_bytes((FIXTURE / "tokenizer.json").read_bytes())
    settings = json.loads((FIXTURE / "tokenizer_config.json").read_text())
    settings["model_max_length"] = 1024
    (out / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
    return sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)


def matmul_peak() -> float:
    """f32 GFLOP/s of a 1024^3 matrix product through torch (MKL or OpenBLAS), every core."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    return 2 * 1024**3 * reps / (time.perf_counter() - start) / 1e9


def timed(command, env):
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return seconds


def newest(folder: Path, pattern: str) -> dict:
    return json.loads(max(folder.rglob(pattern), key=lambda p: p.stat().st_mtime).read_text())


def main():
    quick = "--quick" in sys.argv
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "ibex"], cwd=ROOT, check=True)
    ibex = ROOT / "target/release/ibex"
    work = Path(tempfile.mkdtemp(prefix="ibex-bench-"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(work / "hf-home"), TOKENIZERS_PARALLELISM="false")
    data, tasks = work / "data", work / "tasks"
    data.mkdir()
    tasks.mkdir()
    docs = documents(100 if quick else 1000, seed=1)
    (data / "test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (data / "train.jsonl").write_text("".join(json.dumps(d) + "\n" for d in documents(50, seed=2)))
    (tasks / "bench_nli.yaml").write_text(TASK.format(data=data))
    parameters = {name: checkpoint(name, work / name) for name in SHAPES}
    peak = matmul_peak()
    workloads = [("tiny-3l", 0, 1000), ("llama-25m", 0, 600), ("llama-25m", 3, 600)]
    rows = []
    for model, shots, limit in workloads:
        limit = min(limit, 100) if quick else limit
        folder = work / f"{model}-{shots}"
        ibex_seconds = timed([str(ibex), "run", "--model", str(work / model), "--tasks-dir", str(tasks),
                              "--tasks", "bench_nli", "--num-fewshot", str(shots), "--limit", str(limit),
                              "--batch-size", str(BATCH), "--device", "cpu", "--dtype", "f32",
                              "--output", str(folder / "ibex")], env)
        lm_seconds = timed([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                            f"pretrained={work / model},dtype=float32", "--tasks", "bench_nli", "--include_path",
                            str(tasks), "--num_fewshot", str(shots), "--limit", str(limit), "--device", "cpu",
                            "--batch_size", str(BATCH), "--output_path", str(folder / "lm_eval")], env)
        ours, theirs = newest(folder / "ibex", "results*.json"), newest(folder / "lm_eval", "results*.json")
        tokens = ours["ibex"]["tasks"]["bench_nli"]["tokens"]
        computed = ours["ibex"]["tasks"]["bench_nli"]["tokens_computed"]
        row = {
            "model": model, "parameters": parameters[model], "shots": shots, "docs": limit, "requests": 3 * limit,
            "batch_size": BATCH, "tokens": tokens, "tokens_computed": computed, "ibex_seconds": ibex_seconds, "lm_eval_seconds": lm_seconds,
            "ibex_tokens_per_s": tokens / ibex_seconds, "lm_eval_tokens_per_s": tokens / lm_seconds,
            "speedup": lm_seconds / ibex_seconds,
            "ibex_share_of_peak": 2 * parameters[model] * computed / ibex_seconds / (peak * 1e9),
            "ibex_effective_share_of_peak": 2 * parameters[model] * tokens / ibex_seconds / (peak * 1e9),
            "ibex_acc": ours["results"]["bench_nli"]["acc,none"], "lm_eval_acc": theirs["results"]["bench_nli"]["acc,none"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    header = (f"{cpu}, {os.cpu_count()} cores; torch f32 matmul peak {peak:.1f} GFLOP/s; lm-eval "
              f"{subprocess.run([sys.executable, '-m', 'pip', 'show', 'lm-eval'], capture_output=True, text=True).stdout.split('Version: ')[1].split()[0]}; "
              f"ibex {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}")
    table = ["| model | shots | docs | tokens | computed | ibex s | lm-eval s | ibex tok/s | lm-eval tok/s | ibex/lm-eval | ibex of matmul peak (computed / request tokens) | acc ibex / lm-eval |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['model']} | {r['shots']} | {r['docs']} | {r['tokens']} | {r['tokens_computed']} | {r['ibex_seconds']:.2f} | "
                     f"{r['lm_eval_seconds']:.2f} | {r['ibex_tokens_per_s']:.0f} | {r['lm_eval_tokens_per_s']:.0f} | "
                     f"{r['speedup']:.2f}x | {100 * r['ibex_share_of_peak']:.1f}% / {100 * r['ibex_effective_share_of_peak']:.1f}% | "
                     f"{r['ibex_acc']:.4f} / {r['lm_eval_acc']:.4f} |")
    text = f"# ibex vs lm-eval, batch size {BATCH}, f32, CPU\n\n{header}\n\n" + "\n".join(table) + "\n"
    print(text)
    if not quick:
        stem = ROOT / "benches/results" / f"vs_lm_eval-{re.sub(r'[^A-Za-z0-9]+', '-', cpu).strip('-')}-{datetime.date.today()}"
        stem.parent.mkdir(exist_ok=True)
        stem.with_suffix(".md").write_text(text)
        stem.with_suffix(".json").write_text(json.dumps({"machine": header, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
