"""Compares an ibex sample log with lm-eval's reference for the same task: per-choice log-likelihood deltas, the
tolerance the CPU parity tests use (1e-4, or 1 ppm beyond 100 nats), and how often both pick the same choice.
    python3 benches/gpu/compare_samples.py OURS.jsonl REFERENCE.jsonl LABEL"""
import json
import sys

ours = [json.loads(line) for line in open(sys.argv[1])]
reference = [json.loads(line) for line in open(sys.argv[2])]
label = sys.argv[3]
assert len(ours) == len(reference), (len(ours), len(reference))
deltas, within, same_argmax = [], 0, 0
for o, r in zip(ours, reference):
    # lm-eval writes log-likelihoods as numbers or, in newer versions (and ibex, as they do), as strings.
    o_ll = [float(x[0]) for x in o["filtered_resps"]]
    r_ll = [float(x[0]) for x in r["filtered_resps"]]
    for a, b in zip(o_ll, r_ll):
        deltas.append(abs(a - b))
        within += abs(a - b) <= max(1e-4, 1e-6 * abs(b))
    same_argmax += o_ll.index(max(o_ll)) == r_ll.index(max(r_ll))
print(json.dumps({
    "label": label, "docs": len(ours), "loglikelihoods": len(deltas), "max_abs_delta": max(deltas),
    "within_cpu_tolerance": f"{within}/{len(deltas)}", "same_argmax": f"{same_argmax}/{len(ours)}",
}))
