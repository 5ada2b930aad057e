//! The essay suite on the fixture model, then `ibex compare` against published numbers: table, Markdown, JSON, SVG.

use crate::common::{fixtures, ibex, ibex_in, ibex_path_arg, read_json, read_results, run_ok, HUB_MODEL};

const PUBLISHED: &str = r#"
[source]
name = "fixture-paper"
title = "Numbers written for this test"

[[row]]
task = "xnli_en"
metric = "acc"
model = "ibex-fixtures/tiny-salamandra"
value = 0.40
decimals = 0

[[row]]
task = "squad_en"
metric = "f1"
model = "ibex-fixtures/tiny-salamandra"
value = 0.815
decimals = 1

[[row]]
task = "xnli_en"
metric = "acc"
model = "someone/else"
range = [0.6, 0.7]
decimals = 0
verified = false
note = "not traceable"
"#;

/// `ibex run` flags for the essay suite on the fixture model, each of its tasks reading the fixture data.
fn essay_run_args() -> Vec<String> {
    let data = |name: &str| fixtures().join("data").join(name).display().to_string();
    let mut args: Vec<String> =
        ["--suite", "essay", "--model", HUB_MODEL, "--max-gen-toks", "16"].map(str::to_owned).to_vec();
    for (task, file) in [
        ("xnli_en", "xnli_en.validation.jsonl"),
        ("squad_en", "squad_v1.1.dev.json"),
        ("xquad_en", "qa_en.validation.jsonl"),
    ] {
        args.extend(["--data".to_owned(), format!("{task}={}", data(file))]);
    }
    args
}

#[test]
fn essay_suite_then_compare_gives_verdicts_table_json_and_chart() {
    let args = essay_run_args();
    let run = run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let results = read_results(run.path());
    assert_eq!(results["results"]["xnli_en"]["sample_len"], 24);
    assert_eq!(results["results"]["squad_en"]["sample_len"], 3);

    let published = run.path().join("published.toml");
    std::fs::write(&published, PUBLISHED).unwrap();
    // The same folder twice: each task's newest result once.
    let output = ibex(&[
        "compare",
        ibex_path_arg(run.path()),
        ibex_path_arg(run.path()),
        "--published",
        ibex_path_arg(&published),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("consistent") && stdout.contains("lower") && stdout.contains("not measured"), "{stdout}");

    let rows = read_json(&run.path().join("comparison.json"));
    let ours = rows.as_array().unwrap().iter().filter(|r| r["model"] == HUB_MODEL && r["task"] == "xnli_en").count();
    assert_eq!(ours, 1, "{rows}");
    let find = |task: &str, metric: &str, model: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["task"] == task && r["metric"] == metric && r["model"] == model)
            .unwrap_or_else(|| panic!("no row {task}/{metric}/{model}"))
            .clone()
    };
    let xnli = find("xnli_en", "acc", HUB_MODEL);
    assert_eq!(xnli["verdict"], "consistent");
    let delta = xnli["delta"].as_f64().unwrap();
    assert!((delta - (10.0 / 24.0 - 0.40)).abs() < 1e-12);
    assert_eq!(find("squad_en", "f1", HUB_MODEL)["verdict"], "lower");
    assert_eq!(find("squad_en", "exact_match", HUB_MODEL)["verdict"], "no_published");
    assert_eq!(find("xnli_en", "acc", "someone/else")["verdict"], "not_measured");

    let markdown = std::fs::read_to_string(run.path().join("comparison.md")).unwrap();
    assert!(markdown.contains("| xnli_en | acc | ibex-fixtures/tiny-salamandra | 41.67 ± 10.28 |"), "{markdown}");
    assert!(markdown.contains("60–70 (unverified)") && markdown.contains("not traceable"), "{markdown}");
    let chart = std::fs::read_to_string(run.path().join("comparison.svg")).unwrap();
    assert!(chart.starts_with("<svg") && chart.matches("<circle").count() >= 4, "{chart}");
}

#[test]
fn shipped_published_numbers_and_suites_load() {
    let files = ibex_compare::load(&fixtures().join("../../configs/published")).unwrap();
    let rows: usize = files.iter().map(|f| f.rows.len()).sum();
    assert_eq!(rows, 18);
    let essay = files.iter().find(|f| f.source.name == "essay").unwrap();
    let llama_squad = essay.rows.iter().find(|r| r.task == "squad_en" && r.model.contains("Llama-2")).unwrap();
    assert_eq!(llama_squad.interval(), Some((0.925, 0.945)));
    assert!(!llama_squad.verified);
    let registry = ibex_runner::Registry::load(&[] as &[&std::path::Path], ibex_runner::Recipes::LmEval).unwrap();
    for suite in ["essay", "iberian"] {
        let tasks = ibex_runner::suite_tasks(suite).unwrap();
        assert!(registry.select(&tasks).is_ok(), "suite {suite} names a task that does not exist");
    }
}

/// Suites and published numbers ship inside the binary: a run and a comparison from a folder that is not a checkout.
#[test]
fn suite_and_compare_work_outside_the_repository() {
    let cwd = tempfile::tempdir().unwrap();
    let args = essay_run_args();
    let args: Vec<&str> = ["run"].into_iter().chain(args.iter().map(String::as_str)).collect();
    let output = ibex_in(cwd.path(), &[&args[..], &["--output", "mine"]].concat());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let results = read_results(&cwd.path().join("mine"));
    assert_eq!(results["results"]["squad_en"]["sample_len"], 3);

    let output = ibex_in(cwd.path(), &["compare", "mine"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = read_json(&cwd.path().join("mine/comparison.json"));
    let alia = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task"] == "xnli_en" && r["model"] == "BSC-LT/ALIA-40b")
        .expect("the shipped essay row for ALIA-40B");
    assert_eq!(alia["source"], "essay");
    assert_eq!(alia["verdict"], "not_measured");
}

/// A published number is judged only against a run made under its conditions: a `--limit`ed run, or one at other
/// shots than the row states, gets no verdict, and says why.
#[test]
fn runs_at_other_shots_or_limited_get_no_verdict() {
    let published = tempfile::tempdir().unwrap();
    let file = published.path().join("mine.toml");
    let instruct = fixtures().join("variants/instruct_chatml");
    let row = |model: &str| {
        format!(
            "[[row]]\ntask = \"xnli_en\"\nmetric = \"acc\"\nmodel = {model:?}\nvalue = 0.25\ndecimals = 0\nshots = 3\n"
        )
    };
    let source = "[source]\nname = \"mine\"\ntitle = \"Numbers written for this test\"\n";
    std::fs::write(&file, format!("{source}\n{}\n{}", row(HUB_MODEL), row(ibex_path_arg(&instruct)))).unwrap();
    let data = format!("xnli_en={}", fixtures().join("data/xnli_en.validation.jsonl").display());
    for (model, args, run, mismatch) in [
        (
            HUB_MODEL,
            vec!["--limit", "4", "--num-fewshot", "3"],
            "3-shot, lm-eval recipes, BOS on, --limit 4",
            "the run evaluated only the first 4",
        ),
        (HUB_MODEL, vec![], "0-shot, lm-eval recipes, BOS on", "published at 3 shots, measured at 0"),
        (
            ibex_path_arg(&instruct),
            vec!["--num-fewshot", "3", "--apply-chat-template"],
            "3-shot, lm-eval recipes, BOS on, chat template",
            "published without the chat template, measured with it",
        ),
    ] {
        let mut all = vec!["--model", model, "--tasks", "xnli_en", "--data", &data];
        all.extend(args);
        let out = run_ok(&all);
        let output = ibex(&["compare", ibex_path_arg(out.path()), "--published", ibex_path_arg(&file)]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let rows = read_json(&out.path().join("comparison.json"));
        let row = rows.as_array().unwrap().iter().find(|r| r["model"] == model && r["measured"].is_number()).unwrap();
        assert_eq!(row["verdict"], "not_comparable", "{row}");
        assert_eq!(row["run"], run);
        assert!(row["mismatch"].as_str().unwrap().starts_with(mismatch), "{row}");
        let markdown = std::fs::read_to_string(out.path().join("comparison.md")).unwrap();
        assert!(markdown.contains(mismatch), "{markdown}");
    }
}

/// A published number made with BSC's recipe, or with the other BOS policy, gets no verdict from a run made
/// otherwise, and the comparison says which flag reproduces it.
#[test]
fn a_row_published_with_other_recipes_or_bos_says_how_to_measure_it() {
    let published = tempfile::tempdir().unwrap();
    let file = published.path().join("bsc.toml");
    std::fs::write(
        &file,
        "[source]\nname = \"bsc\"\ntitle = \"Numbers written for this test\"\n\n\
         [[row]]\ntask = \"xnli_es_spanish_bench\"\nmetric = \"acc\"\nmodel = \"ibex-fixtures/tiny-salamandra\"\n\
         value = 0.3\ndecimals = 0\nrecipes = \"bsc\"\nlm_eval_version = \"0.4.8\"\nadd_bos_token = false\n",
    )
    .unwrap();
    let data = format!("xnli_es_spanish_bench={}", fixtures().join("data/xnli_es.validation.jsonl").display());
    let judged = |extra: &[&str]| {
        let mut args = vec!["--model", HUB_MODEL, "--tasks", "xnli_es_spanish_bench", "--data", &data];
        args.extend(extra);
        let out = run_ok(&args);
        let output = ibex(&["compare", ibex_path_arg(out.path()), "--published", ibex_path_arg(&file)]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let rows = read_json(&out.path().join("comparison.json"));
        rows.as_array().unwrap().iter().find(|r| r["measured"].is_number()).unwrap().clone()
    };
    let row = judged(&[]);
    assert_eq!(row["verdict"], "not_comparable");
    assert_eq!(row["needs"], "bsc recipes, lm-eval 0.4.8, BOS off");
    let expected = "published with BSC's recipe for xnli_es_spanish_bench; measure it with `ibex run --recipes bsc`";
    assert_eq!(row["mismatch"], expected);
    let row = judged(&["--recipes", "bsc"]);
    assert_eq!(row["mismatch"], "published with BOS off, measured with BOS on (`--add-bos-token false`)");
    let row = judged(&["--recipes", "bsc", "--add-bos-token", "false"]);
    assert!(row["mismatch"].is_null(), "{row}");
    assert_ne!(row["verdict"], "not_comparable");
}

/// A published number says the filter it was read under (`filter`, lm-eval's `none` when absent): it is compared with
/// that filter's value only, and each filter of the run is its own row.
#[test]
fn a_published_row_is_compared_under_its_own_filter() {
    let published = tempfile::tempdir().unwrap();
    let file = published.path().join("filters.toml");
    // yaml_gen_filter scores 2 of 8 documents under each of its filters at 0 shots.
    let rows = "[source]\nname = \"filters\"\ntitle = \"Numbers written for this test\"\n\n[[row]]\n\
                task = \"yaml_gen_filter\"\nmetric = \"exact_match\"\nfilter = \"last-word\"\n\
                model = \"ibex-fixtures/tiny-salamandra\"\nvalue = 0.25\ndecimals = 2\nshots = 0\n";
    std::fs::write(&file, rows).unwrap();
    let out = run_ok(&["--model", HUB_MODEL, "--tasks-dir", "tests/fixtures/yaml/tasks", "--tasks", "yaml_gen_filter"]);
    let output = ibex(&["compare", ibex_path_arg(out.path()), "--published", ibex_path_arg(&file)]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = read_json(&out.path().join("comparison.json"));
    let verdict = |metric: &str| {
        let row = rows.as_array().unwrap().iter().find(|r| r["metric"] == metric).expect("a row per filter");
        row["verdict"].as_str().unwrap().to_owned()
    };
    assert_eq!(verdict("exact_match (last-word)"), "consistent");
    for filter in ["first-word", "clean", "shout"] {
        assert_eq!(verdict(&format!("exact_match ({filter})")), "no_published", "{filter}");
    }
}
