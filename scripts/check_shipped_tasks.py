#!/usr/bin/env python3
"""Checks that every task file ibex ships under tasks/ says what lm-eval's own file of the same name says.

Both are read with lm-eval's YAML loader (includes merged, `!function` kept as its name); prompts are compared as
Jinja syntax trees, so spacing inside `{{ }}` does not count; keys that change no score (comments, metadata, tags,
decontamination) are skipped. Usage, with lm-eval 0.4.13 installed (`pip install --no-deps lm-eval==0.4.13` is
enough):

    python scripts/check_shipped_tasks.py [LM_EVAL_TASKS_DIR] [--bsc FORK_TASKS_DIR]

BSC's recipe set (tasks/bsc/) is compared with the fork's `lm_eval/tasks` when `--bsc` names a checkout of
langtech-bsc/mlops-lm-evaluation-harness (branch `production`), and skipped otherwise.

Prints one line per shipped task (same, differs: keys, or no lm-eval counterpart) and exits 1 when any differs.
"""

import pathlib
import sys

import jinja2
import yaml

SKIPPED = {"task", "tag", "include", "metadata", "should_decontaminate", "doc_to_decontamination_query", "group"}
TEMPLATES = {"doc_to_text", "doc_to_target", "doc_to_choice", "description"}
# lm-eval's defaults for keys a file may leave out.
DEFAULTS = {"target_delimiter": " ", "fewshot_delimiter": "\n\n", "dataset_name": None, "training_split": None,
            "validation_split": None, "test_split": None, "fewshot_split": None, "output_type": "generate_until",
            "dataset_kwargs": None, "num_fewshot": None}
# Differences made on purpose, with the reason.
KNOWN: dict = {}
# Dataset repositories renamed on the hub since lm-eval's file was written: ibex names the current one.
RENAMED = {"xnli": "facebook/xnli", "paws-x": "google-research-datasets/paws-x"}


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def load(path: pathlib.Path) -> dict:
    config = yaml.load(path.read_text(), Loader=Loader) or {}
    includes = config.pop("include", None)
    merged = {}
    for include in [includes] if isinstance(includes, str) else includes or []:
        merged.update(load((path.parent / include).resolve()))
    merged.update(config)
    return merged


def normal(key, value):
    env = jinja2.Environment()
    if key in TEMPLATES and isinstance(value, str) and ("{{" in value or "{%" in value):
        return ("jinja", repr(env.parse(value)))
    if key == "dataset_path":
        return RENAMED.get(value, value)
    if key == "metric_list":
        return [{k: v for k, v in m.items() if not (k == "aggregation" and v == "mean") and not (k == "higher_is_better" and v is True)} for m in value]
    if key == "dataset_kwargs" and isinstance(value, dict):
        # ibex runs no loading script: trusting remote code changes nothing it reads.
        return {k: v for k, v in value.items() if k != "trust_remote_code"} or None
    if key == "generation_kwargs" and isinstance(value, dict):
        return {k: (float(v) if k == "temperature" else v) for k, v in value.items()}
    return value


def effective(config: dict) -> dict:
    out = {k: v for k, v in DEFAULTS.items()}
    out.update({k: v for k, v in config.items() if k not in SKIPPED})
    return {k: normal(k, v) for k, v in out.items()}


def index(tree: pathlib.Path) -> dict:
    """Every task name of a tasks tree, with its file."""
    theirs = {}
    for path in tree.rglob("*.yaml"):
        try:
            config = yaml.load(path.read_text(), Loader=Loader)
        except yaml.YAMLError:
            continue
        if isinstance(config, dict) and isinstance(config.get("task"), str):
            theirs.setdefault(config["task"], path)
    return theirs


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    args = sys.argv[1:]
    fork = None
    if "--bsc" in args:
        i = args.index("--bsc")
        fork = pathlib.Path(args[i + 1])
        del args[i : i + 2]
    if args:
        mainline = pathlib.Path(args[0])
    else:
        import lm_eval

        mainline = pathlib.Path(lm_eval.__file__).parent / "tasks"
    trees = [(root / "tasks", index(mainline), lambda p: "bsc" not in p.relative_to(root / "tasks").parts)]
    if fork is not None:
        trees.append((root / "tasks" / "bsc", index(fork), lambda p: True))
    failures = 0
    for folder, theirs, wanted in trees:
        failures += compare(root, folder, theirs, wanted)
    sys.exit(1 if failures else 0)


def compare(root: pathlib.Path, folder: pathlib.Path, theirs: dict, wanted) -> int:
    failures = 0
    for path in sorted(p for p in folder.rglob("*.yaml") if wanted(p)):
        config = load(path)
        name = config.get("task")
        if not isinstance(name, str):
            continue
        if name not in theirs:
            print(f"{name}: no lm-eval counterpart ({path.relative_to(root)})")
            continue
        ours, reference = effective(config), effective(load(theirs[name]))
        differing = sorted(k for k in set(ours) | set(reference) if ours.get(k) != reference.get(k))
        known = [k for k in differing if (name, k) in KNOWN]
        differing = [k for k in differing if (name, k) not in KNOWN]
        if differing:
            failures += 1
            print(f"{name}: DIFFERS in {', '.join(differing)}")
            for key in differing:
                print(f"    {key}: ibex {ours.get(key)!r}\n    {' ' * len(key)}  lm-eval {reference.get(key)!r}")
        elif known:
            print(f"{name}: same but {', '.join(f'{k} ({KNOWN[name, k]})' for k in known)}")
        else:
            print(f"{name}: same")
    return failures


if __name__ == "__main__":
    main()
