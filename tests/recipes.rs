//! BSC's recipe set (`--recipes bsc`): the fork's NLI tasks under the fork's names, documents filtered and normalised
//! by BSC's `process_doc_nli`. The expected documents are written by hand from the fork's source
//! (langtech-bsc/mlops-lm-evaluation-harness b67372f7, iberobench_english/utils.py and xnli_en_iberobench.yaml).

use crate::common::{ibex, read_results, read_samples, run_ok, samples_path, HUB_MODEL};

/// Hand-written rows: one kept and normalised, three the fork drops (a question mark, a colon, an empty premise), one
/// kept as it is but for the final period.
const ROWS: &str = r#"{"premise": "the tide came in quickly .", "hypothesis": "Water covered the sand..", "label": 0}
{"premise": "Did the tide come in?", "hypothesis": "The sand is wet.", "label": 1}
{"premise": "The tide: high", "hypothesis": "The sand is wet.", "label": 1}
{"premise": "  ", "hypothesis": "The sand is wet.", "label": 1}
{"premise": "Boats rest on the mud", "hypothesis": "The harbour is dry", "label": 2}
"#;

#[test]
fn bsc_recipes_filter_and_normalise_nli_documents_as_the_fork() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("en.jsonl");
    std::fs::write(&data, ROWS).unwrap();
    let data_arg = format!("xnli_en_iberobench={}", data.display());
    let out = run_ok(&["--model", HUB_MODEL, "--recipes", "bsc", "--tasks", "xnli_en_iberobench", "--data", &data_arg]);
    let samples = read_samples(&samples_path(out.path(), "xnli_en_iberobench"));
    let continuations: Vec<Vec<&str>> = samples
        .iter()
        .map(|s| s["arguments"].as_array().unwrap().iter().map(|a| a[1].as_str().unwrap()).collect())
        .collect();
    assert_eq!(
        continuations,
        [
            [
                "The tide came in quickly, right? Yes, water covered the sand.",
                "The tide came in quickly, right? Also, water covered the sand.",
                "The tide came in quickly, right? No, water covered the sand.",
            ],
            [
                "Boats rest on the mud, right? Yes, the harbour is dry.",
                "Boats rest on the mud, right? Also, the harbour is dry.",
                "Boats rest on the mud, right? No, the harbour is dry.",
            ],
        ]
    );
    // The kept documents are renumbered, as lm-eval numbers a filtered dataset; no delimiter before the choice.
    assert_eq!(samples.iter().map(|s| s["doc_id"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(samples[0]["arguments"][0][0], "");
    let results = read_results(out.path());
    assert_eq!(results["ibex"]["model"]["recipes"], "bsc");
    let file = &results["ibex"]["tasks"]["xnli_en_iberobench"]["task_file"];
    assert_eq!(file, "tasks/bsc/iberobench_english/xnli_en_iberobench.yaml");
}

#[test]
fn a_bsc_task_under_lm_evals_recipes_says_which_flag_runs_it() {
    let output = ibex(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en_iberobench"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`xnli_en_iberobench` is in BSC's recipe set only: pass --recipes bsc"), "{stderr}");
}

/// The same name runs lm-eval's or BSC's definition as `--recipes` says: spanish_bench's xnli_es_spanish_bench keeps
/// the comma in "Así que," under lm-eval's recipes and drops it under BSC's.
#[test]
fn one_task_name_two_recipe_sets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("es.jsonl");
    std::fs::write(
        &data,
        "{\"premise\": \"el barco es azul .\", \"hypothesis\": \"Flota en el puerto\", \"label\": 1}\n",
    )
    .unwrap();
    let data_arg = format!("xnli_es_spanish_bench={}", data.display());
    let neutral = |recipes: &str| {
        let out = run_ok(&[
            "--model",
            HUB_MODEL,
            "--recipes",
            recipes,
            "--tasks",
            "xnli_es_spanish_bench",
            "--data",
            &data_arg,
        ]);
        let samples = read_samples(&samples_path(out.path(), "xnli_es_spanish_bench"));
        samples[0]["arguments"][1][1].as_str().unwrap().to_owned()
    };
    // lm-eval's process_doc_nli: no capitalisation, the premise's final "." dropped, the hypothesis ends with one.
    assert_eq!(neutral("lm-eval"), "el barco es azul, ¿correcto? Así que, flota en el puerto.");
    assert_eq!(neutral("bsc"), "El barco es azul, ¿correcto? Así que flota en el puerto.");
}
