//! A new language of an existing family is one task file: no Rust, no rebuild.

use crate::common::{fixtures, ibex, ibex_path_arg, read_samples, run_ok, samples_path, HUB_MODEL};

/// An Aragonese-style variant written by a user: its own words, the nli preprocessing, its own column names.
const NEW_LANGUAGE: &str = r#"
name = "xnli_an_demo"
family = "nli"
language = "an"
target_delimiter = ""

[recipe]
preprocess = ["strip_final_punct:premise", "lowercase_first:hypothesis"]
choices = [
    "{premise}, verdat? Sí, {hypothesis}",
    "{premise}, verdat? Amás, {hypothesis}",
    "{premise}, verdat? No, {hypothesis}",
]

[recipe.fields]
premise = "frase1"
hypothesis = "frase2"
label = "etiqueta"

[data]
dataset = "example/xnli-an"
test_split = "test"
"#;

#[test]
fn a_task_file_alone_adds_a_language() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("xnli_an_demo.toml"), NEW_LANGUAGE).unwrap();
    let data = dir.path().join("an.jsonl");
    std::fs::write(
        &data,
        "{\"frase1\": \"O barco yera azul.\", \"frase2\": \"O barco teneva color\", \"etiqueta\": \"entailment\"}\n\
         {\"frase1\": \"O barco yera azul.\", \"frase2\": \"O barco yera royo\", \"etiqueta\": 2}\n",
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
fn a_task_file_with_an_unknown_step_is_rejected_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = NEW_LANGUAGE.replace("lowercase_first:hypothesis", "titlecase:hypothesis");
    std::fs::write(dir.path().join("bad.toml"), &bad).unwrap();
    let output = ibex(&["tasks", "--tasks-dir", ibex_path_arg(dir.path())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = bad.lines().position(|l| l.contains("titlecase")).unwrap() + 1;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains(&format!("bad.toml: line {line}: unknown preprocessing step `titlecase:hypothesis`")),
        "{stderr}"
    );
}
