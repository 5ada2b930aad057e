//! A new language is one lm-eval task YAML file in a `--tasks-dir` folder: no Rust, no rebuild.

use crate::common::{fixtures, ibex, ibex_path_arg, read_samples, run_ok, samples_path, HUB_MODEL};

/// An Aragonese-style NLI task written by a user: its own words, its own column names, label names mapped to
/// choices and the sentences normalised in Jinja.
const NEW_LANGUAGE: &str = r#"task: xnli_an_demo
dataset_path: example/xnli-an
output_type: multiple_choice
test_split: test
doc_to_text: ""
target_delimiter: ""
doc_to_target: "{{ {'entailment': 0, 'neutral': 1, 'contradiction': 2}[etiqueta] }}"
doc_to_choice: >-
  {% set p = frase1.rstrip('.') %}{% set h = frase2[0]|lower + frase2[1:] %}{{ [p + ", verdat? Sí, " + h,
  p + ", verdat? Amás, " + h, p + ", verdat? No, " + h] }}
metric_list:
  - metric: acc
"#;

#[test]
fn a_task_file_alone_adds_a_language() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("xnli_an_demo.yaml"), NEW_LANGUAGE).unwrap();
    let data = dir.path().join("an.jsonl");
    std::fs::write(
        &data,
        "{\"frase1\": \"O barco yera azul.\", \"frase2\": \"O barco teneva color\", \"etiqueta\": \"entailment\"}\n\
         {\"frase1\": \"O barco yera azul.\", \"frase2\": \"O barco yera royo\", \"etiqueta\": \"contradiction\"}\n",
    )
    .unwrap();
    let listing = ibex(&["tasks", "--tasks-dir", ibex_path_arg(dir.path())]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("xnli_an_demo") && listing.contains("example/xnli-an"), "{listing}");

    let data_arg = format!("xnli_an_demo={}", data.display());
    let out = run_ok(&[
        "--model",
        HUB_MODEL,
        "--tasks",
        "xnli_an_demo",
        "--tasks-dir",
        ibex_path_arg(dir.path()),
        "--data",
        &data_arg,
    ]);
    let samples = read_samples(&samples_path(out.path(), "xnli_an_demo"));
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0]["arguments"][1][1], "O barco yera azul, verdat? Amás, o barco teneva color");
    assert_eq!(samples[1]["target"], "2");
    assert!(fixtures().is_dir());
}

#[test]
fn a_hook_ibex_lacks_is_named_with_the_file_and_the_hooks_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let bad = NEW_LANGUAGE.replace("test_split: test\n", "test_split: test\nprocess_docs: !function utils.titlecase\n");
    std::fs::write(dir.path().join("bad.yaml"), &bad).unwrap();
    let output =
        ibex(&["run", "--model", HUB_MODEL, "--tasks", "xnli_an_demo", "--tasks-dir", ibex_path_arg(dir.path())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let folder = dir.path().file_name().unwrap().to_string_lossy();
    assert!(
        stderr.contains("bad.yaml: cannot run yet: task xnli_an_demo: `process_docs: !function utils.titlecase`"),
        "{stderr}"
    );
    // The function, its qualified name and the file and line holding the tag (the fifth).
    let at = dir.path().join("bad.yaml").display().to_string();
    assert!(stderr.contains(&format!("({folder}/utils.titlecase, at {at}:5) has no Rust implementation")), "{stderr}");
    assert!(stderr.contains("catalan_bench/utils.process_doc_nli"), "{stderr}");
}
