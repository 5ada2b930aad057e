//! lm-eval task YAML run unchanged: task files written for these tests (tests/fixtures/yaml/tasks, read by lm-eval
//! 0.4.13 through `--include_path` and by ibex through `--tasks-dir`) give lm-eval's prompts, log-likelihoods and
//! scores, document by document, IberoBench's `process_docs` hooks included (the fixtures' utils.py import lm-eval's
//! own functions; tests/fixtures/make_fixtures.py yaml regenerates lm-eval's side).

use crate::common::{
    assert_samples_match, fixtures, ibex, read_json, read_results, read_samples, run_ok, samples_path, table_cells,
};

const TASKS_DIR: &str = "tests/fixtures/yaml/tasks";

#[test]
fn yaml_multiple_choice_tasks_match_lm_eval() {
    for shots in ["0", "2"] {
        let run = run_ok(&[
            "--model",
            crate::common::HUB_MODEL,
            "--tasks-dir",
            TASKS_DIR,
            "--tasks",
            "yaml_copa_like,yaml_yesno,yaml_paws_ca,yaml_nli_group,yaml_xcopa_eu,yaml_eus_trivia,yaml_eus_exams,\
             yaml_assin_macro,yaml_copa_ca,yaml_paws_eu,yaml_paws_gl,yaml_parafrases_gl,yaml_fewshot_samples",
            "--num-fewshot",
            shots,
        ]);
        let results = read_results(run.path());
        // The group: the size-weighted acc its aggregate_metric_list names, and nothing else.
        let expected = read_json(&fixtures().join(format!("lm_eval/yaml/results_yaml_nli_group_{shots}shot.json")));
        let group = &results["groups"]["yaml_nli_group"];
        for metric in ["acc,none", "acc_stderr,none"] {
            assert!((group[metric].as_f64().unwrap() - expected[metric].as_f64().unwrap()).abs() < 1e-12, "{metric}");
        }
        let keys: Vec<&String> = group.as_object().unwrap().keys().filter(|k| k.contains(",none")).collect();
        assert_eq!(keys, ["acc,none", "acc_stderr,none"]);
        let tasks = [
            "yaml_copa_like",
            "yaml_yesno",
            "yaml_nli_ca",
            "yaml_paws_ca",
            "yaml_nli_gl",
            "yaml_xcopa_eu",
            "yaml_eus_trivia",
            "yaml_eus_exams",
            "yaml_assin_macro",
            "yaml_copa_ca",
            "yaml_paws_eu",
            "yaml_paws_gl",
            "yaml_parafrases_gl",
            "yaml_fewshot_samples",
        ];
        for task in tasks {
            let reference = fixtures().join(format!("lm_eval/yaml/samples_{task}_{shots}shot.jsonl"));
            let ours = samples_path(run.path(), task);
            let delta = assert_samples_match(&ours, &reference);
            eprintln!("{task} {shots}-shot: max |Δ loglik| {delta:.2e}");
            for (o, r) in read_samples(&ours).iter().zip(read_samples(&reference)) {
                for key in ["acc_norm", "acc_bytes", "mcc", "f1"] {
                    assert_eq!(o[key], r[key], "{task} doc {}: `{key}` differs", r["doc_id"]);
                }
            }
            let expected = read_json(&fixtures().join(format!("lm_eval/yaml/results_{task}_{shots}shot.json")));
            let metrics =
                ["acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "acc_bytes", "acc_bytes_stderr", "mcc", "f1"];
            for metric in metrics.map(|m| format!("{m},none")) {
                if expected.get(&metric).is_some() {
                    let (got, want) = (&results["results"][task][&metric], &expected[&metric]);
                    assert!(
                        (got.as_f64().unwrap() - want.as_f64().unwrap()).abs() < 1e-12,
                        "{task} {metric}: {got} vs {want}"
                    );
                }
            }
            // Corpus metrics' standard errors: lm-eval's bootstrap (CPython's draws), or "N/A" where it has none
            // (a custom aggregation such as assin2's macro F1).
            for metric in ["mcc_stderr,none", "f1_stderr,none"] {
                let (got, want) = (&results["results"][task][metric], &expected[metric]);
                match want.as_f64() {
                    Some(want) => {
                        let got = got.as_f64().unwrap_or(f64::NAN);
                        assert!((got - want).abs() < 1e-9, "{task} {metric}: {got} vs {want}");
                    }
                    None => assert_eq!(got, want, "{task} {metric}"),
                }
            }
        }
    }
}

#[test]
fn a_yaml_task_ibex_cannot_run_says_why_and_its_folder_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["copa_like.yaml", "_yesno_common_yaml", "yesno.yaml"] {
        std::fs::copy(fixtures().join("yaml/tasks").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("hooked.yaml"),
        "include: _yesno_common_yaml\ntask: yaml_hooked\ndoc_to_text: question\ndoc_to_target: answer\n\
         process_docs: !function utils.process_docs\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("generated.yaml"),
        "task: yaml_generated\ndataset_path: json\noutput_type: loglikelihood_rolling\n",
    )
    .unwrap();
    let tasks_dir = dir.path().to_str().unwrap();
    let run = |task: &str| {
        ibex(&["run", "--model", crate::common::HUB_MODEL, "--tasks-dir", tasks_dir, "--tasks", task, "--dry-run"])
    };
    assert!(run("yaml_yesno").status.success());
    let stderr = String::from_utf8_lossy(&run("yaml_hooked").stderr).into_owned();
    assert!(
        stderr.contains("hooked.yaml: cannot run yet: task yaml_hooked: `process_docs: !function utils.process_docs`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "has no Rust implementation in ibex, which runs no Python; it has catalan_bench/utils.process_doc_nli"
        ),
        "{stderr}"
    );
    // The file and line that hold the tag.
    assert!(stderr.contains(&format!("at {}:5)", dir.path().join("hooked.yaml").display())), "{stderr}");
    let stderr = String::from_utf8_lossy(&run("yaml_generated").stderr).into_owned();
    assert!(stderr.contains("output_type `loglikelihood_rolling` is not run from YAML yet"), "{stderr}");
    // --check lists every task of the folder with "loads" or why not, then the counts and the commonest reasons.
    let check = ibex(&["tasks", "--tasks-dir", tasks_dir, "--check"]);
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    let rows: Vec<Vec<String>> =
        stdout.lines().map(table_cells).filter(|cells| cells.first().is_some_and(|c| c.starts_with("yaml_"))).collect();
    let status: Vec<(&str, bool)> = rows.iter().map(|r| (r[0].as_str(), r[2] == "loads")).collect();
    assert_eq!(
        status,
        [("yaml_copa_like", true), ("yaml_generated", false), ("yaml_hooked", false), ("yaml_yesno", true)],
        "{stdout}"
    );
    let folder = dir.path().file_name().unwrap().to_str().unwrap();
    assert!(stdout.lines().map(table_cells).any(|c| c == [folder, "2", "2"]), "{stdout}");
    assert!(stdout.contains("output_type loglikelihood_rolling is not run from YAML yet"), "{stdout}");
    // A template error names the task, the row and the key.
    std::fs::write(
        dir.path().join("broken.yaml"),
        "include: _yesno_common_yaml\ntask: yaml_broken\ndoc_to_text: \"{{ questio }}\"\ndoc_to_target: answer\n",
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&run("yaml_broken").stderr).into_owned();
    assert!(stderr.contains("row 0, field `questio`: missing (`doc_to_text` reads it)"), "{stderr}");
}

/// A `generate_until` task from YAML without a `process_results` hook: lm-eval's prompts, stop strings and budget,
/// the same greedy strings, and its `exact_match` with ignore_case, ignore_punctuation, ignore_numbers and
/// regexes_to_ignore, per document and aggregated, at 0 and 2 shots.
#[test]
fn yaml_generation_with_exact_match_options_matches_lm_eval() {
    for shots in ["0", "2"] {
        let run = run_ok(&[
            "--model",
            crate::common::HUB_MODEL,
            "--tasks-dir",
            TASKS_DIR,
            "--tasks",
            "yaml_gen_em",
            "--num-fewshot",
            shots,
            "--batch-size",
            "3",
        ]);
        let ours = read_samples(&samples_path(run.path(), "yaml_gen_em"));
        let reference = read_samples(&fixtures().join(format!("lm_eval/yaml/samples_yaml_gen_em_{shots}shot.jsonl")));
        assert_eq!(ours.len(), 8);
        assert_eq!(ours.len(), reference.len());
        for (o, r) in ours.iter().zip(&reference) {
            for key in ["doc", "target", "arguments", "filtered_resps", "prompt_hash", "target_hash", "metrics"] {
                assert_eq!(o[key], r[key], "{shots}-shot doc {}: `{key}` differs", r["doc_id"]);
            }
            assert_eq!(o["exact_match"].as_f64(), r["exact_match"].as_f64(), "{shots}-shot doc {}", r["doc_id"]);
        }
        let expected = read_json(&fixtures().join(format!("lm_eval/yaml/results_yaml_gen_em_{shots}shot.json")));
        let results = read_results(run.path());
        for metric in ["exact_match,none", "exact_match_stderr,none"] {
            let (got, want) = (&results["results"]["yaml_gen_em"][metric], &expected[metric]);
            assert!((got.as_f64().unwrap() - want.as_f64().unwrap()).abs() < 1e-12, "{metric}: {got} vs {want}");
        }
    }
    // The targets were made so that each option decides a document: 6 of 8 match at 0 shots.
    let expected = read_json(&fixtures().join("lm_eval/yaml/results_yaml_gen_em_0shot.json"));
    assert_eq!(expected["exact_match,none"], 0.75);
}

/// A task file's `num_fewshot` as lm-eval 0.4.13 settles it: the file's count without `--num-fewshot`, the flag's
/// with it, and a file's `num_fewshot: 0` whatever the flag says; results' `n-shot` and sample contexts follow.
#[test]
fn task_files_num_fewshot_follows_lm_evals_rule() {
    let dir = tempfile::tempdir().unwrap();
    let yesno = fixtures().join("yaml/tasks/yesno.yaml").canonicalize().unwrap();
    for (task, shots) in [("fixed_zero", 0), ("own_two", 2)] {
        let text = format!("include: {}\ntask: {task}\nnum_fewshot: {shots}\n", yesno.display());
        std::fs::write(dir.path().join(format!("{task}.yaml")), text).unwrap();
    }
    let tasks_dir = dir.path().to_str().unwrap();
    for (flag, expected) in [(None, [0, 2]), (Some("1"), [0, 1])] {
        let mut args =
            vec!["--model", crate::common::HUB_MODEL, "--tasks-dir", tasks_dir, "--tasks", "fixed_zero,own_two"];
        if let Some(flag) = flag {
            args.extend(["--num-fewshot", flag]);
        }
        let run = run_ok(&args);
        let results = read_results(run.path());
        assert_eq!(results["n-shot"]["fixed_zero"], expected[0], "{flag:?}");
        assert_eq!(results["n-shot"]["own_two"], expected[1], "{flag:?}");
        for (task, shots) in [("fixed_zero", expected[0]), ("own_two", expected[1])] {
            let samples = read_samples(&samples_path(run.path(), task));
            let context = samples[0]["arguments"][0][0].as_str().unwrap();
            // yesno's prompt is the question, its delimiter "\nAnswer: ": one per example shown, one for the document.
            assert_eq!(context.matches("\nAnswer: ").count(), shots, "{task} {flag:?}: {context:?}");
        }
    }
}

/// Relative difference, for values (perplexities) that scale with exp of the log-likelihoods' float noise.
fn relative(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-12)
}

/// `output_type: loglikelihood` (a sentence's last word after the rest, no delimiter, a description): lm-eval's
/// contexts, continuations, log-likelihoods and greedy flags per document, its `acc`, and `perplexity` (exp of minus
/// the mean log-likelihood) with its bootstrap standard error, at 0 and 2 shots.
#[test]
fn yaml_loglikelihood_task_matches_lm_eval() {
    for shots in ["0", "2"] {
        let run = run_ok(&[
            "--model",
            crate::common::HUB_MODEL,
            "--tasks-dir",
            TASKS_DIR,
            "--tasks",
            "yaml_last_word",
            "--num-fewshot",
            shots,
        ]);
        let reference = fixtures().join(format!("lm_eval/yaml/samples_yaml_last_word_{shots}shot.jsonl"));
        let delta = assert_samples_match(&samples_path(run.path(), "yaml_last_word"), &reference);
        eprintln!("yaml_last_word {shots}-shot: max |Δ loglik| {delta:.2e}");
        let samples = read_samples(&reference);
        assert_eq!(samples.len(), 8);
        assert_eq!(samples[1]["arguments"][0][1], " white.", "the target alone is the continuation");
        let expected = read_json(&fixtures().join(format!("lm_eval/yaml/results_yaml_last_word_{shots}shot.json")));
        let results = &read_results(run.path())["results"]["yaml_last_word"];
        for metric in ["acc,none", "acc_stderr,none"] {
            assert!((results[metric].as_f64().unwrap() - expected[metric].as_f64().unwrap()).abs() < 1e-12, "{metric}");
        }
        for metric in ["perplexity,none", "perplexity_stderr,none"] {
            let (got, want) = (results[metric].as_f64().unwrap(), expected[metric].as_f64().unwrap());
            assert!(relative(got, want) < 1e-3, "{shots}-shot {metric}: {got} vs lm-eval {want}");
        }
    }
}

/// A generation scored under four `filter_list` pipelines (regex first match, a two-group regex's last match,
/// whitespace and case, uppercase through majority_vote): per document and filter, lm-eval's filtered answers and
/// `exact_match`; per filter, its results keys; and a group aggregating two of the filters.
#[test]
fn yaml_generation_filters_match_lm_eval() {
    let filters = ["first-word", "last-word", "clean", "shout"];
    for shots in ["0", "2"] {
        let run = run_ok(&[
            "--model",
            crate::common::HUB_MODEL,
            "--tasks-dir",
            TASKS_DIR,
            "--tasks",
            "yaml_filter_group",
            "--num-fewshot",
            shots,
        ]);
        let ours = read_samples(&samples_path(run.path(), "yaml_gen_filter"));
        let reference =
            read_samples(&fixtures().join(format!("lm_eval/yaml/samples_yaml_gen_filter_{shots}shot.jsonl")));
        assert_eq!(ours.len(), 8 * filters.len());
        assert_eq!(ours.len(), reference.len());
        // Ours are written filter by filter, as lm-eval logs them; the reference is sorted by document.
        let key = |s: &serde_json::Value| (s["doc_id"].as_u64().unwrap(), s["filter"].as_str().unwrap().to_owned());
        assert_eq!(ours[..8].iter().map(|s| s["filter"].as_str().unwrap()).collect::<Vec<_>>(), ["first-word"; 8]);
        for r in &reference {
            let o = ours.iter().find(|o| key(o) == key(r)).expect("every (document, filter) is logged");
            for field in ["target", "arguments", "resps", "filtered_resps", "metrics", "prompt_hash", "target_hash"] {
                assert_eq!(o[field], r[field], "{shots}-shot {:?}: `{field}` differs", key(r));
            }
            assert_eq!(o["exact_match"].as_f64(), r["exact_match"].as_f64(), "{shots}-shot {:?}", key(r));
        }
        let expected = read_json(&fixtures().join(format!("lm_eval/yaml/results_yaml_gen_filter_{shots}shot.json")));
        let results = read_results(run.path());
        for filter in filters {
            for metric in [format!("exact_match,{filter}"), format!("exact_match_stderr,{filter}")] {
                let (got, want) = (&results["results"]["yaml_gen_filter"][&metric], &expected[&metric]);
                assert!((got.as_f64().unwrap() - want.as_f64().unwrap()).abs() < 1e-12, "{metric}: {got} vs {want}");
            }
        }
        let expected = read_json(&fixtures().join(format!("lm_eval/yaml/results_yaml_filter_group_{shots}shot.json")));
        let group = &results["groups"]["yaml_filter_group"];
        let keys: Vec<&String> = group.as_object().unwrap().keys().filter(|k| k.contains(',')).collect();
        assert_eq!(
            keys,
            [
                "exact_match,clean",
                "exact_match,first-word",
                "exact_match_stderr,clean",
                "exact_match_stderr,first-word"
            ]
        );
        for key in keys {
            assert!((group[key].as_f64().unwrap() - expected[key].as_f64().unwrap()).abs() < 1e-12, "{key}");
        }
        assert_eq!(group["sample_count"], expected["sample_count"]);
        assert_eq!(group["sample_len"], expected["sample_len"]);
    }
    // Each filter decides some documents at 0 shots (the targets were made from its answers).
    let expected = read_json(&fixtures().join("lm_eval/yaml/results_yaml_gen_filter_0shot.json"));
    for filter in filters {
        assert!(expected[format!("exact_match,{filter}")].as_f64().unwrap() > 0.0, "{filter}");
    }
}

/// A group without `aggregate_metric_list` runs its tasks by the group's name and, as in lm-eval (`Group.aggregate`,
/// `EvalAcc.collect`), has a results entry with its name only and is not among `groups`.
#[test]
fn a_group_without_aggregate_metrics_runs_its_tasks_and_reports_no_score() {
    let run = run_ok(&["--model", crate::common::HUB_MODEL, "--tasks-dir", TASKS_DIR, "--tasks", "yaml_plain_group"]);
    let results = read_results(run.path());
    assert!(results["results"]["yaml_last_word"]["perplexity,none"].as_f64().unwrap() > 1.0);
    assert!(results["results"]["yaml_yesno"]["acc,none"].is_number());
    let entry = serde_json::json!({"alias": "yaml_plain_group", "name": "yaml_plain_group"});
    assert_eq!(results["results"]["yaml_plain_group"], entry);
    assert!(results.get("groups").and_then(|g| g.get("yaml_plain_group")).is_none());
    assert_eq!(results["group_subtasks"]["yaml_plain_group"], serde_json::json!(["yaml_last_word", "yaml_yesno"]));
    // Both tasks ran at 0 shots: so did the group.
    assert_eq!(results["n-shot"]["yaml_plain_group"], 0);
}

/// A group entry without `filter_list` aggregates the metric under every filter its members report (lm-eval's
/// `_discover_filters_for_metric`: `none` from yaml_gen_em, four from yaml_gen_filter), each key over the members
/// that have it (its `sample_count`), unweighted (`weight_by_size: false`, `unweighted_mean_stderr`).
#[test]
fn a_group_without_filter_list_aggregates_every_filter_its_members_report() {
    for shots in ["0", "2"] {
        let run = run_ok(&[
            "--model",
            crate::common::HUB_MODEL,
            "--tasks-dir",
            TASKS_DIR,
            "--tasks",
            "yaml_auto_filter_group",
            "--num-fewshot",
            shots,
        ]);
        let group = &read_results(run.path())["groups"]["yaml_auto_filter_group"];
        let expected =
            read_json(&fixtures().join(format!("lm_eval/yaml/results_yaml_auto_filter_group_{shots}shot.json")));
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().filter(|k| k.contains(',')).cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(group), keys(&expected));
        assert_eq!(keys(group).len(), 10, "five filters, each a value and a stderr");
        for key in keys(&expected) {
            let (got, want) = (group[&key].as_f64().unwrap(), expected[&key].as_f64().unwrap());
            assert!((got - want).abs() < 1e-12, "{shots}-shot {key}: {got} vs lm-eval {want}");
        }
        assert_eq!(group["sample_count"], expected["sample_count"]);
        assert_eq!(group["sample_len"], expected["sample_len"]);
    }
}
