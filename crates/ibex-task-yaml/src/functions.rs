//! lm-eval's `!function` hooks that ibex has, in Rust: registered under `<benchmark folder>/<module>.<name>`, the
//! folder holding the task file and its Python module (`catalan_bench/utils.process_doc_nli`), since two benchmarks
//! may give one name different bodies. Each mirrors the function of lm-eval 0.4.13 named in its key; IberoBench's
//! `process_docs` hooks come first (the NLI and paraphrase preprocessing, COPA's choices).

use ibex_core::metrics::Aggregation;
use ibex_core::python::{general_detokenize, is_space, lowercase_first_letter, python_str};
use serde_json::{Map, Value};
use sha2::Digest;

/// A data split's rows, as `process_docs` sees and returns them.
pub type Rows = Vec<Map<String, Value>>;

/// A `process_docs` hook: a split's rows in, the rows the task uses out; errors name the row and field.
pub type ProcessDocs = fn(Rows) -> Result<Rows, String>;

/// Every `process_docs` hook ibex has, by qualified name.
pub const PROCESS_DOCS: &[(&str, ProcessDocs)] = &[
    ("catalan_bench/utils.process_doc_nli", nli_premise_hypothesis),
    ("spanish_bench/utils.process_doc_nli", nli_premise_hypothesis),
    ("galician_bench/utils.process_doc_nli", nli_galician),
    ("catalan_bench/utils.process_docs_paraphrases", paraphrases_sentences),
    ("spanish_bench/utils.process_docs_paraphrases", paraphrases_sentences),
    ("galician_bench/utils.process_docs_paws", paraphrases_sentences),
    ("galician_bench/utils.process_docs_paraphrases", paraphrases_frase),
    ("basque_bench/utils.paws_process_docs", paws_basque),
    ("catalan_bench/utils.process_docs_copa_ca", copa_choices),
    ("spanish_bench/utils.process_docs_copa_es", copa_choices),
    ("eus_exams/utils.process_docs", eus_exams_answered),
];

/// BSC's fork of lm-eval (`langtech-bsc/mlops-lm-evaluation-harness`, branch `production`, since 2025-04-08) gives
/// these hooks other bodies under lm-eval's names; `--recipes bsc` runs them instead.
pub const BSC_PROCESS_DOCS: &[(&str, ProcessDocs)] = &[
    ("catalan_bench/utils.process_doc_nli", bsc_nli_premise_hypothesis),
    ("spanish_bench/utils.process_doc_nli", bsc_nli_premise_hypothesis),
    ("xnli_eu/utils.process_doc_nli", bsc_nli_premise_hypothesis),
    ("iberobench_english/utils.process_doc_nli", bsc_nli_premise_hypothesis),
    ("galician_bench/utils.process_doc_nli", bsc_nli_galician),
];

/// The hook registered as `qualified`, BSC's body first under `--recipes bsc` (`bsc`).
pub fn process_docs(qualified: &str, bsc: bool) -> Option<ProcessDocs> {
    let find = |list: &[(&str, ProcessDocs)]| list.iter().find(|(name, _)| *name == qualified).map(|(_, f)| *f);
    bsc.then(|| find(BSC_PROCESS_DOCS)).flatten().or_else(|| find(PROCESS_DOCS))
}

/// BSC's `process_doc_nli`: rows whose two sentences are not both non-blank text, or that hold `¡ ! ? ¿ ... : ;`,
/// are dropped; both are detokenized and stripped; every final `.` leaves the first, whose first letter is
/// uppercased (a first sentence of periods alone is dropped, the fork's "nothing is left"); the second is lowercased
/// at its start and ends with exactly one `.`.
fn bsc_nli_pair(rows: Rows, first: &str, second: &str) -> Rows {
    const BANNED: [&str; 7] = ["¡", "!", "?", "¿", "...", ":", ";"];
    let usable = |row: &Map<String, Value>| {
        let text = |field: &str| row.get(field).and_then(Value::as_str).filter(|t| !strip(t).is_empty());
        match (text(first), text(second)) {
            (Some(a), Some(b)) => !BANNED.iter().any(|p| a.contains(p) || b.contains(p)),
            _ => false,
        }
    };
    rows.into_iter()
        .filter(usable)
        .filter_map(|mut row| {
            let edit = |field: &str| strip(&general_detokenize(row[field].as_str().unwrap_or_default()));
            let (a, b) = (edit(first), edit(second));
            let a = a.trim_end_matches('.');
            if a.is_empty() || b.is_empty() {
                return None;
            }
            let mut chars = a.chars();
            let a: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
            let b = format!("{}.", lowercase_first_letter(&b).trim_end_matches('.'));
            row.insert(first.to_owned(), Value::String(a));
            row.insert(second.to_owned(), Value::String(b));
            Some(row)
        })
        .collect()
}

/// BSC's catalan_bench, spanish_bench, xnli_eu and iberobench_english `process_doc_nli` (`premise`, `hypothesis`).
fn bsc_nli_premise_hypothesis(rows: Rows) -> Result<Rows, String> {
    Ok(bsc_nli_pair(rows, "premise", "hypothesis"))
}

/// BSC's galician_bench `process_doc_nli`: the same on `sentence1`/`sentence2`, and `gold_label` mapped from its name.
fn bsc_nli_galician(rows: Rows) -> Result<Rows, String> {
    label_ids(bsc_nli_pair(rows, "sentence1", "sentence2"))
}

/// SHA-256 of each hook's Python body as lm-eval 0.4.13 and BSC's fork (b67372f7) write it ([`python_body`]): the
/// functions ibex's Rust mirrors. `None` where that harness has no such function.
const BODIES: &[(&str, Option<&str>, Option<&str>)] = &[
    (
        "catalan_bench/utils.process_doc_nli",
        Some("818768abd245a3bc1ea6c914c1b75780b2d5ec315885c31333a1025da9c5e915"),
        Some("09a148eef3942557cf5bdc913f55d7b023ed0e3fb938dcbd755db425172f03b8"),
    ),
    (
        "spanish_bench/utils.process_doc_nli",
        Some("818768abd245a3bc1ea6c914c1b75780b2d5ec315885c31333a1025da9c5e915"),
        Some("09a148eef3942557cf5bdc913f55d7b023ed0e3fb938dcbd755db425172f03b8"),
    ),
    (
        "galician_bench/utils.process_doc_nli",
        Some("4f5ec65c38c6c9557cbc5cc8d610820b218f8e7d6cd49d57c3d100aa0f31dfa7"),
        Some("cf208f07c48e222025e0e504b77fcd1dbc9c9c0653e2120da78622e41c40c792"),
    ),
    (
        "catalan_bench/utils.process_docs_paraphrases",
        Some("f2c2591648d86ad5771dca3741a30752a539506661c5a931f0aa26e91c1045f5"),
        Some("f2c2591648d86ad5771dca3741a30752a539506661c5a931f0aa26e91c1045f5"),
    ),
    (
        "spanish_bench/utils.process_docs_paraphrases",
        Some("78769af0af03eb3089e2361a718dddd6de3b4ce3d2492db397f563b97d1d8423"),
        Some("78769af0af03eb3089e2361a718dddd6de3b4ce3d2492db397f563b97d1d8423"),
    ),
    (
        "galician_bench/utils.process_docs_paws",
        Some("b5b3db852a677fa6a487623b1f8fd4161d9e982e4a4bf30843dbcc2762239e75"),
        Some("b5b3db852a677fa6a487623b1f8fd4161d9e982e4a4bf30843dbcc2762239e75"),
    ),
    (
        "galician_bench/utils.process_docs_paraphrases",
        Some("0d3aa7b3b3359540975d458c0e7106ff5454bd76ccbef91292c826e043e123a7"),
        Some("0d3aa7b3b3359540975d458c0e7106ff5454bd76ccbef91292c826e043e123a7"),
    ),
    (
        "basque_bench/utils.paws_process_docs",
        Some("b6388bbebcc3c9522d70ffbe2b5ac3640e38d9e611dac1b6b5d80f49ef5a7e9e"),
        Some("b6388bbebcc3c9522d70ffbe2b5ac3640e38d9e611dac1b6b5d80f49ef5a7e9e"),
    ),
    (
        "catalan_bench/utils.process_docs_copa_ca",
        Some("fe8dc3f8e01f6ab7422109871d777b684da7bb852f849957c51d5c0f33550eb6"),
        Some("fe8dc3f8e01f6ab7422109871d777b684da7bb852f849957c51d5c0f33550eb6"),
    ),
    (
        "spanish_bench/utils.process_docs_copa_es",
        Some("16f562803a31254f5a21e4c944e47fa54a57da330173c9962269d5dd0c5d912f"),
        Some("16f562803a31254f5a21e4c944e47fa54a57da330173c9962269d5dd0c5d912f"),
    ),
    (
        "eus_exams/utils.process_docs",
        Some("441b9fd4aee6c345c753a9b6877966ff8e480cdabed49c0450e1a4701ee10883"),
        Some("441b9fd4aee6c345c753a9b6877966ff8e480cdabed49c0450e1a4701ee10883"),
    ),
    (
        "basque_bench/utils.xcopa_doc_to_text",
        Some("6d85cbfd9a80feed83d38acc7d2caf66a3687c4cd7456aca2d45a6b8a2b3a0de"),
        Some("6d85cbfd9a80feed83d38acc7d2caf66a3687c4cd7456aca2d45a6b8a2b3a0de"),
    ),
    (
        "basque_bench/utils.xcopa_doc_to_choice",
        Some("8a02c8c5557966893cb9754d9a449ce3c6fe90f227c433d916839d10a3ad5931"),
        Some("8a02c8c5557966893cb9754d9a449ce3c6fe90f227c433d916839d10a3ad5931"),
    ),
    (
        "eus_trivia/utils.doc_to_text",
        Some("abd7be488794b94ee512395d21e31ca8dadfb5493697c476cf5399048c80c915"),
        Some("abd7be488794b94ee512395d21e31ca8dadfb5493697c476cf5399048c80c915"),
    ),
    (
        "eus_trivia/utils.doc_to_choice",
        Some("bf5acb8080273f99bddf9d756949de7bd3f46bc8527d6a4d9de918ed0c37ee62"),
        Some("bf5acb8080273f99bddf9d756949de7bd3f46bc8527d6a4d9de918ed0c37ee62"),
    ),
    (
        "eus_reading/utils.doc_to_text_context",
        Some("3eb7e1d12aae94f989613f18fa73b9bbe362bab11d38eaa94ce91fcfa6e5a9dc"),
        Some("3eb7e1d12aae94f989613f18fa73b9bbe362bab11d38eaa94ce91fcfa6e5a9dc"),
    ),
    (
        "eus_reading/utils.doc_to_choice",
        Some("bf5acb8080273f99bddf9d756949de7bd3f46bc8527d6a4d9de918ed0c37ee62"),
        Some("bf5acb8080273f99bddf9d756949de7bd3f46bc8527d6a4d9de918ed0c37ee62"),
    ),
    (
        "catalan_bench/utils.process_results_qa",
        Some("7693eb6a6299eea5a5223ba448ca09548fa76cb961027fe1067d8a1c568c78e3"),
        Some("7693eb6a6299eea5a5223ba448ca09548fa76cb961027fe1067d8a1c568c78e3"),
    ),
    (
        "xquad/utils.process_results_qa",
        Some("83c24dc6018448132b9b0a559c273836598ea0ff8862548715e8bed19c1a2d3c"),
        Some("83c24dc6018448132b9b0a559c273836598ea0ff8862548715e8bed19c1a2d3c"),
    ),
    (
        "portuguese_bench/assin2_utils.macro_f1",
        Some("02f5b778e66de400224b278476c693e16f57a221d636b21e83620f6ca9e78c23"),
        None,
    ),
    ("xnli_eu/utils.process_doc_nli", None, Some("09a148eef3942557cf5bdc913f55d7b023ed0e3fb938dcbd755db425172f03b8")),
    (
        "iberobench_english/utils.process_doc_nli",
        None,
        Some("09a148eef3942557cf5bdc913f55d7b023ed0e3fb938dcbd755db425172f03b8"),
    ),
];

/// A Python function's body as ibex fingerprints it: from `def NAME(` to the next line at the left margin, without
/// blank lines, comment lines or trailing spaces; `None` when the module defines no such function (it may import
/// it).
pub fn python_body(module: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = module.split('\n').collect();
    let start = lines.iter().position(|l| l.starts_with(&format!("def {name}(")))?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && !l.starts_with(char::is_whitespace))
        .map_or(lines.len(), |i| start + 1 + i);
    let kept: Vec<&str> = lines[start..end]
        .iter()
        .map(|l| l.trim_end())
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    Some(kept.join("\n"))
}

/// Whether the Python module beside a task file (`module`, its text) defines the hook `qualified` as the harness of
/// `bsc` does, so that ibex's Rust body computes what it would; an error says whose body it is, if either's.
pub fn check_body(qualified: &str, module: &str, bsc: bool) -> Result<(), String> {
    let name = qualified.rsplit('.').next().unwrap_or(qualified);
    let Some(body) = python_body(module, name) else { return Ok(()) };
    let digest = format!("{:x}", sha2::Sha256::digest(body.as_bytes()));
    let Some((_, lm_eval, fork)) = BODIES.iter().find(|(n, ..)| *n == qualified) else { return Ok(()) };
    let (wanted, other) = if bsc { (fork.or(*lm_eval), *lm_eval) } else { (*lm_eval, *fork) };
    if wanted == Some(digest.as_str()) {
        return Ok(());
    }
    let set = if bsc { "BSC's fork's" } else { "lm-eval 0.4.13's" };
    let hint = match other {
        Some(other) if other == digest && bsc => "; it is lm-eval's: run without --recipes bsc",
        Some(other) if other == digest => "; it is BSC's fork's: pass --recipes bsc",
        _ => "; ibex runs only the bodies it mirrors in Rust, so this task cannot run as written",
    };
    Err(format!("{qualified} is defined otherwise than {set} (the body ibex runs){hint}"))
}

/// [`check_body`] on the module `function` (`module.name`) names in `dir`, the folder of the task file holding the
/// tag; a module ibex cannot read (the shipped tasks carry none) is not checked.
pub fn check_module(dir: &std::path::Path, function: &str, qualified: &str, bsc: bool) -> Result<(), String> {
    let Some((module, _)) = function.rsplit_once('.') else { return Ok(()) };
    match std::fs::read_to_string(dir.join(format!("{module}.py"))) {
        Ok(source) => check_body(qualified, &source, bsc),
        Err(_) => Ok(()),
    }
}

/// A `doc_to_text`, `doc_to_target` or `doc_to_choice` hook: the document's fields in, the value lm-eval's function
/// returns out (text, an index, a list of choices); errors say what the row lacks.
pub type DocFunction = fn(&Map<String, Value>) -> Result<Value, String>;

/// Every `doc_to_*` hook ibex has, by qualified name.
pub const DOC_FUNCTIONS: &[(&str, DocFunction)] = &[
    ("basque_bench/utils.xcopa_doc_to_text", xcopa_text),
    ("basque_bench/utils.xcopa_doc_to_choice", xcopa_choices),
    ("eus_trivia/utils.doc_to_text", eus_question),
    ("eus_trivia/utils.doc_to_choice", eus_letters),
    ("eus_reading/utils.doc_to_text_context", eus_passage_question),
    ("eus_reading/utils.doc_to_choice", eus_letters),
];

/// The `doc_to_*` hook registered as `qualified`.
pub fn doc_function(qualified: &str) -> Option<DocFunction> {
    DOC_FUNCTIONS.iter().find(|(name, _)| *name == qualified).map(|(_, f)| *f)
}

/// A metric's `aggregation: !function` hooks ibex has, by qualified name: lm-eval's corpus-level functions over every
/// document's item.
pub const AGGREGATIONS: &[(&str, Aggregation)] = &[(
    "portuguese_bench/assin2_utils.macro_f1",
    Aggregation::Corpus { name: "macro_f1", function: ibex_core::metrics::macro_f1, stderr: None },
)];

/// The aggregation hook registered as `qualified`.
pub fn aggregation(qualified: &str) -> Option<Aggregation> {
    AGGREGATIONS.iter().find(|(name, _)| *name == qualified).map(|(_, a)| *a)
}

/// basque_bench's `xcopa_doc_to_text`: the stripped premise, then " Izan ere," (cause) or " Beraz," (effect).
fn xcopa_text(doc: &Map<String, Value>) -> Result<Value, String> {
    let connector = match text(doc, 0, "question")?.as_str() {
        "cause" => " Izan ere,",
        "effect" => " Beraz,",
        other => return Err(format!("field `question`: `{other}` is neither cause nor effect")),
    };
    Ok(Value::from(format!("{}{connector}", strip(&text(doc, 0, "premise")?))))
}

/// basque_bench's `xcopa_doc_to_choice`: both choices lowercased at their first character.
fn xcopa_choices(doc: &Map<String, Value>) -> Result<Value, String> {
    let lower = |field: &str| -> Result<Value, String> {
        let choice = text(doc, 0, field)?;
        let mut chars = choice.chars();
        let first = chars.next().ok_or_else(|| format!("field `{field}`: empty"))?;
        Ok(Value::from(first.to_lowercase().chain(chars).collect::<String>()))
    };
    Ok(Value::Array(vec![lower("choice1")?, lower("choice2")?]))
}

/// The letters of an EusTrivia / EusReading question's candidates (`A`, `B`, … one per candidate, two to four).
fn candidates(doc: &Map<String, Value>) -> Result<(Vec<String>, Vec<&'static str>), String> {
    let list = match doc.get("candidates") {
        Some(Value::Array(items)) => items.iter().map(python_str).collect::<Vec<_>>(),
        Some(other) => return Err(format!("field `candidates`: expected a list, found {other}")),
        None => return Err("field `candidates`: missing".into()),
    };
    if !(2..=4).contains(&list.len()) {
        return Err(format!("field `candidates`: {} candidates; the hook takes two to four", list.len()));
    }
    let letters = ["A", "B", "C", "D"][..list.len()].to_vec();
    Ok((list, letters))
}

/// The candidates as lines `A: …`.
fn lettered(candidates: &[String], letters: &[&str]) -> String {
    letters.iter().zip(candidates).map(|(l, c)| format!("{l}: {c}")).collect::<Vec<_>>().join("\n")
}

/// eus_trivia's `doc_to_text`: the question, the lettered candidates, then "Erantzuna:".
fn eus_question(doc: &Map<String, Value>) -> Result<Value, String> {
    let (list, letters) = candidates(doc)?;
    let question = python_str(doc.get("question").ok_or("field `question`: missing")?);
    Ok(Value::from(format!("Galdera: {question}\n{}\nErantzuna:", lettered(&list, &letters))))
}

/// eus_reading's `doc_to_text_context`: the passage, then the question as eus_trivia writes it.
fn eus_passage_question(doc: &Map<String, Value>) -> Result<Value, String> {
    let (list, letters) = candidates(doc)?;
    let context = python_str(doc.get("context").ok_or("field `context`: missing")?);
    let question = python_str(doc.get("question").ok_or("field `question`: missing")?);
    Ok(Value::from(format!("Pasartea: {context}\n\nGaldera: {question}\n{}\nErantzuna:", lettered(&list, &letters))))
}

/// eus_trivia's and eus_reading's `doc_to_choice`: one letter per candidate.
fn eus_letters(doc: &Map<String, Value>) -> Result<Value, String> {
    Ok(Value::from(candidates(doc)?.1))
}

/// eus_exams' `process_docs`: the rows whose `answer` is 0–3 and whose candidates are not all empty.
fn eus_exams_answered(rows: Rows) -> Result<Rows, String> {
    let answered =
        |row: &Map<String, Value>| row.get("answer").and_then(Value::as_i64).is_some_and(|a| (0..4).contains(&a));
    let blank = Value::from(vec![""; 4]);
    Ok(rows.into_iter().filter(|row| answered(row) && row.get("candidates") != Some(&blank)).collect())
}

/// A `generate_until` task's `process_results` hook: the document's fields and the generated text (after the
/// `take_first` filter) in, each metric's value out, in the order of the dict lm-eval's function returns. Errors name
/// the field that does not have the shape the function reads.
#[derive(Clone, Copy, Debug)]
pub struct ProcessResults {
    /// The metrics the function returns, in its dict's order.
    pub metrics: &'static [&'static str],
    /// The function.
    pub function: ResultsFn,
}

/// The document's fields and the generation in, the metric values out (in [`ProcessResults::metrics`]' order).
pub type ResultsFn = fn(&Map<String, Value>, &str) -> Result<Vec<f64>, String>;

/// Every `process_results` hook ibex has, by qualified name.
pub const PROCESS_RESULTS: &[(&str, ProcessResults)] = &[
    ("catalan_bench/utils.process_results_qa", ProcessResults { metrics: &["f1", "exact_match"], function: qa_list }),
    ("xquad/utils.process_results_qa", ProcessResults { metrics: &["f1", "exact_match"], function: qa_struct }),
    ("squad_en/utils.process_results_squad", ProcessResults { metrics: &["f1", "exact_match"], function: squad_v1 }),
];

/// The `process_results` hook registered as `qualified`.
pub fn process_results(qualified: &str) -> Option<ProcessResults> {
    PROCESS_RESULTS.iter().find(|(name, _)| *name == qualified).map(|(_, f)| *f)
}

/// SQuAD's F1 and exact match of `prediction` against one reference (`squad_metrics.compute_f1`, `compute_exact`).
fn squad_pair(reference: &str, prediction: &str) -> Vec<f64> {
    vec![crate::squad::f1(reference, prediction), crate::squad::exact_match(reference, prediction)]
}

/// catalan_bench's `process_results_qa`: the reference is `doc["answers"][0]["text"]` (a list of answer structs,
/// as projecte-aina's datasets store them).
fn qa_list(doc: &Map<String, Value>, prediction: &str) -> Result<Vec<f64>, String> {
    match doc.get("answers").and_then(|a| a.get(0)).and_then(|a| a.get("text")).and_then(Value::as_str) {
        Some(reference) => Ok(squad_pair(reference, prediction)),
        None => Err(answers_shape(doc, "a list of {text, answer_start} whose first entry has a `text`")),
    }
}

/// xquad's `process_results_qa`: the reference is `doc["answers"]["text"][0]` (a struct of lists, as google/xquad
/// and SQuAD store them).
fn qa_struct(doc: &Map<String, Value>, prediction: &str) -> Result<Vec<f64>, String> {
    match doc.get("answers").and_then(|a| a.get("text")).and_then(|t| t.get(0)).and_then(Value::as_str) {
        Some(reference) => Ok(squad_pair(reference, prediction)),
        None => Err(answers_shape(doc, "{text: [...], answer_start: [...]} with at least one text")),
    }
}

/// ibex's own SQuAD v1.1 scoring (`squad_en`): the official script's best F1 and best exact match over every gold
/// answer in `doc["answers"]["text"]`, where lm-eval's xquad tasks take the first only.
fn squad_v1(doc: &Map<String, Value>, prediction: &str) -> Result<Vec<f64>, String> {
    let texts = doc.get("answers").and_then(|a| a.get("text")).and_then(Value::as_array);
    let references: Vec<&str> = texts.map(|t| t.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if references.is_empty() {
        return Err(answers_shape(doc, "{text: [...], answer_start: [...]} with at least one text"));
    }
    let best = |metric: fn(&str, &str) -> f64| references.iter().map(|r| metric(r, prediction)).fold(0.0, f64::max);
    Ok(vec![best(crate::squad::f1), best(crate::squad::exact_match)])
}

fn answers_shape(doc: &Map<String, Value>, expected: &str) -> String {
    match doc.get("answers") {
        Some(found) => format!("field `answers`: expected {expected}, found {found}"),
        None => "field `answers`: missing".to_owned(),
    }
}

/// Python's `str.strip()`.
fn strip(text: &str) -> String {
    text.trim_matches(is_space).to_owned()
}

/// The text in `field` of row `index`.
fn text(row: &Map<String, Value>, index: usize, field: &str) -> Result<String, String> {
    match row.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("row {index}, field `{field}`: expected text, found {other}")),
        None => Err(format!("row {index}, field `{field}`: missing")),
    }
}

/// `process_doc_nli`'s edits of one pair: both detokenized and stripped, the first without one final `.`, `,`,
/// `!` or `?`, the second lowercased at its start and ending with `.`.
fn nli_pair(rows: Rows, first: &str, second: &str) -> Result<Rows, String> {
    rows.into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let premise = strip(&general_detokenize(&text(&row, i, first)?));
            let premise = premise.strip_suffix(['.', ',', '!', '?']).unwrap_or(&premise).to_owned();
            let hypothesis = lowercase_first_letter(&strip(&general_detokenize(&text(&row, i, second)?)));
            let hypothesis = if hypothesis.ends_with('.') { hypothesis } else { format!("{hypothesis}.") };
            row.insert(first.to_owned(), Value::String(premise));
            row.insert(second.to_owned(), Value::String(hypothesis));
            Ok(row)
        })
        .collect()
}

/// catalan_bench's and spanish_bench's `process_doc_nli` (`premise`, `hypothesis`).
fn nli_premise_hypothesis(rows: Rows) -> Result<Rows, String> {
    nli_pair(rows, "premise", "hypothesis")
}

/// galician_bench's `process_doc_nli`: the same edits on `sentence1`/`sentence2`, and `gold_label` mapped from
/// its name to 0, 1, 2.
fn nli_galician(rows: Rows) -> Result<Rows, String> {
    label_ids(nli_pair(rows, "sentence1", "sentence2")?)
}

/// galician_bench's label map: `gold_label` from its name (entailment, neutral, contradiction) to 0, 1, 2.
fn label_ids(rows: Rows) -> Result<Rows, String> {
    rows.into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let label = match text(&row, i, "gold_label")?.as_str() {
                "entailment" => 0,
                "neutral" => 1,
                "contradiction" => 2,
                other => return Err(format!("row {i}, field `gold_label`: `{other}` is not an NLI label")),
            };
            row.insert("gold_label".into(), Value::from(label));
            Ok(row)
        })
        .collect()
}

/// The paraphrase hooks: rows whose two sentences are both present and non-empty are kept (the others dropped),
/// the sentences detokenized and stripped when `detokenize`, the first without one final `.`, `,` or `;`, the
/// second lowercased at its start.
fn paraphrases(rows: Rows, first: &str, second: &str, detokenize: bool) -> Result<Rows, String> {
    let present = |row: &Map<String, Value>, field: &str| {
        !matches!(row.get(field), None | Some(Value::Null)) && row.get(field) != Some(&Value::String(String::new()))
    };
    rows.into_iter()
        .filter(|row| present(row, first) && present(row, second))
        .enumerate()
        .map(|(i, mut row)| {
            let (mut a, mut b) = (text(&row, i, first)?, text(&row, i, second)?);
            if detokenize {
                a = strip(&general_detokenize(&a));
                b = strip(&general_detokenize(&b));
            }
            let a = a.strip_suffix(['.', ',', ';']).map(str::to_owned).unwrap_or(a);
            row.insert(first.to_owned(), Value::String(a));
            row.insert(second.to_owned(), Value::String(lowercase_first_letter(&b)));
            Ok(row)
        })
        .collect()
}

/// catalan_bench's and spanish_bench's `process_docs_paraphrases`, galician_bench's `process_docs_paws`.
fn paraphrases_sentences(rows: Rows) -> Result<Rows, String> {
    paraphrases(rows, "sentence1", "sentence2", true)
}

/// galician_bench's `process_docs_paraphrases` (`Frase`, `Paráfrase`).
fn paraphrases_frase(rows: Rows) -> Result<Rows, String> {
    paraphrases(rows, "Frase", "Paráfrase", true)
}

/// basque_bench's `paws_process_docs`: no detokenization.
fn paws_basque(rows: Rows) -> Result<Rows, String> {
    paraphrases(rows, "sentence1", "sentence2", false)
}

/// `process_docs_copa_ca` / `_es`: both choices lowercased at their start.
fn copa_choices(rows: Rows) -> Result<Rows, String> {
    rows.into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            for field in ["choice1", "choice2"] {
                let choice = lowercase_first_letter(&text(&row, i, field)?);
                row.insert(field.to_owned(), Value::String(choice));
            }
            Ok(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(values: &[Value]) -> Rows {
        values.iter().map(|v| v.as_object().unwrap().clone()).collect()
    }

    #[test]
    fn every_hook_is_registered_once() {
        for (i, (name, _)) in PROCESS_DOCS.iter().enumerate() {
            assert!(PROCESS_DOCS[..i].iter().all(|(n, _)| n != name), "{name}");
            assert!(process_docs(name, false).is_some());
        }
        assert!(process_docs("catalan_bench/utils.nothing", true).is_none());
        // BSC's body under --recipes bsc, lm-eval's otherwise; hooks BSC did not change are lm-eval's in both.
        let row = || rows(&[json!({"premise": "el gat.", "hypothesis": "Dorm", "sentence1": "a,", "sentence2": "B"})]);
        let premise = |hook: ProcessDocs| hook(row()).unwrap()[0]["premise"].clone();
        let nli = "catalan_bench/utils.process_doc_nli";
        assert_eq!(premise(process_docs(nli, true).unwrap()), "El gat");
        assert_eq!(premise(process_docs(nli, false).unwrap()), "el gat");
        let paws = "catalan_bench/utils.process_docs_paraphrases";
        assert_eq!(process_docs(paws, true).unwrap()(row()), process_docs(paws, false).unwrap()(row()));
    }

    /// Expected rows written by hand from the fork's `process_doc_nli` (b67372f7, catalan_bench/utils.py): filter,
    /// then detokenize, strip, `rstrip(".")`, capitalise the premise, one final period on the hypothesis.
    #[test]
    fn bsc_nli_filters_and_normalises_as_the_fork() {
        let got = bsc_nli_premise_hypothesis(rows(&[
            json!({"premise": "el gat dorm al sofà ..", "hypothesis": "L' animal descansa..", "label": 0}),
            json!({"premise": "Què fas?", "hypothesis": "res.", "label": 1}),
            json!({"premise": "Avui plou: molt", "hypothesis": "plou.", "label": 1}),
            json!({"premise": "Tres punts... i prou", "hypothesis": "prou.", "label": 2}),
            json!({"premise": "   ", "hypothesis": "buit.", "label": 2}),
            json!({"premise": "Falta la hipòtesi", "label": 2}),
            json!({"premise": "...", "hypothesis": "x", "label": 0}),
            json!({"premise": ".", "hypothesis": "Només punts", "label": 0}),
            json!({"premise": "   la casa és blanca .  ", "hypothesis": "  És gran", "label": 1}),
        ]))
        .unwrap();
        assert_eq!(
            got,
            rows(&[
                json!({"premise": "El gat dorm al sofà", "hypothesis": "l' animal descansa.", "label": 0}),
                json!({"premise": "La casa és blanca", "hypothesis": "és gran.", "label": 1}),
            ])
        );
        let gl = bsc_nli_galician(rows(&[
            json!({"sentence1": "a casa é branca.", "sentence2": "É grande", "gold_label": "neutral"}),
            json!({"sentence1": "Que fas?", "sentence2": "nada", "gold_label": "neutral"}),
        ]))
        .unwrap();
        assert_eq!(gl, rows(&[json!({"sentence1": "A casa é branca", "sentence2": "é grande.", "gold_label": 1})]));
    }

    #[test]
    fn a_python_body_other_than_the_mirrored_one_is_refused() {
        let module =
            "import re\n\ndef helper(x):\n    return x\n\n\ndef process_docs_copa_ca(dataset):\n    # edited\n\n    \
                      return dataset  \n\nclass Other:\n    pass\n";
        assert_eq!(
            python_body(module, "process_docs_copa_ca").unwrap(),
            "def process_docs_copa_ca(dataset):\n    return dataset"
        );
        assert_eq!(python_body(module, "absent"), None);
        let err = check_body("catalan_bench/utils.process_docs_copa_ca", module, false).unwrap_err();
        assert!(err.ends_with("so this task cannot run as written"), "{err}");
        // A module that imports the function (as the test fixtures' utils.py do) is not checked.
        let imports = "from lm_eval.tasks.catalan_bench.utils import process_docs_copa_ca\n";
        assert!(check_body("catalan_bench/utils.process_docs_copa_ca", imports, false).is_ok());
    }

    #[test]
    fn basque_prompt_hooks_write_lm_evals_text() {
        let doc =
            rows(&[json!({"premise": " Euria ari zuen. ", "question": "effect", "choice1": "Aterkia hartu nuen.",
                                "choice2": "Éguzkia atera zen."})]);
        assert_eq!(xcopa_text(&doc[0]).unwrap(), "Euria ari zuen. Beraz,");
        assert_eq!(xcopa_choices(&doc[0]).unwrap(), json!(["aterkia hartu nuen.", "éguzkia atera zen."]));
        let doc = rows(&[json!({"question": "Zenbat?", "context": "Testua.", "candidates": ["bat", "bi", "hiru"]})]);
        assert_eq!(eus_question(&doc[0]).unwrap(), "Galdera: Zenbat?\nA: bat\nB: bi\nC: hiru\nErantzuna:");
        assert_eq!(
            eus_passage_question(&doc[0]).unwrap(),
            "Pasartea: Testua.\n\nGaldera: Zenbat?\nA: bat\nB: bi\nC: hiru\nErantzuna:"
        );
        assert_eq!(eus_letters(&doc[0]).unwrap(), json!(["A", "B", "C"]));
        let one = rows(&[json!({"question": "?", "candidates": ["bat"]})]);
        assert_eq!(eus_letters(&one[0]).unwrap_err(), "field `candidates`: 1 candidates; the hook takes two to four");
        let exams = rows(&[
            json!({"answer": 2, "candidates": ["a", "b", "c", "d"]}),
            json!({"answer": -1, "candidates": ["a", "b", "c", "d"]}),
            json!({"answer": 0, "candidates": ["", "", "", ""]}),
        ]);
        assert_eq!(eus_exams_answered(exams.clone()).unwrap(), exams[..1]);
        for (name, _) in DOC_FUNCTIONS {
            assert!(doc_function(name).is_some());
        }
    }

    #[test]
    fn qa_hooks_read_the_answers_where_their_benchmark_keeps_them() {
        let list = rows(&[json!({"answers": [{"text": "the Blue house", "answer_start": 3}, {"text": "x"}]})]);
        assert_eq!(qa_list(&list[0], "blue house").unwrap(), [1.0, 1.0]);
        assert!(qa_struct(&list[0], "blue").unwrap_err().starts_with("field `answers`: expected {text: [...]"));
        let structs = rows(&[json!({"answers": {"text": ["red door", "a door"], "answer_start": [0, 4]}})]);
        assert_eq!(qa_struct(&structs[0], "door").unwrap(), [2.0 * 1.0 * 0.5 / 1.5, 0.0]);
        // squad_en takes the best over every gold answer: "door" equals "a door" once articles go.
        assert_eq!(squad_v1(&structs[0], "door").unwrap(), [1.0, 1.0]);
        assert_eq!(qa_list(&structs[0], "door").unwrap_err(), "field `answers`: expected a list of {text, answer_start} whose first entry has a `text`, found {\"text\":[\"red door\",\"a door\"],\"answer_start\":[0,4]}");
        for (name, hook) in PROCESS_RESULTS {
            assert_eq!(process_results(name).unwrap().metrics, hook.metrics);
        }
    }

    #[test]
    fn basque_paws_keeps_tokens_as_they_are_and_drops_empty_pairs() {
        // basque_bench's paws_process_docs: no detokenization, no strip; `;` also dropped from the first sentence.
        let got = paws_basque(rows(&[
            json!({"sentence1": "Etxea ( handia ) ;", "sentence2": "Etxe Handia", "label": 1}),
            json!({"sentence1": "", "sentence2": "Bai", "label": 0}),
            json!({"sentence1": "Ez", "sentence2": null, "label": 0}),
        ]))
        .unwrap();
        assert_eq!(got, rows(&[json!({"sentence1": "Etxea ( handia ) ", "sentence2": "etxe Handia", "label": 1})]));
    }

    #[test]
    fn galician_paraphrases_read_frase_and_parafrase() {
        let got =
            paraphrases_frase(rows(&[json!({"Frase": " Chove moito , ", "Paráfrase": "Cae auga", "Avaliación": 1})]))
                .unwrap();
        assert_eq!(got, rows(&[json!({"Frase": "Chove moito", "Paráfrase": "cae auga", "Avaliación": 1})]));
    }

    #[test]
    fn copa_lowercases_both_choices_and_names_a_missing_field() {
        let got = copa_choices(rows(&[json!({"choice1": "Ella va riure.", "choice2": "Ébria.", "label": 0})])).unwrap();
        assert_eq!(got, rows(&[json!({"choice1": "ella va riure.", "choice2": "ébria.", "label": 0})]));
        assert_eq!(copa_choices(rows(&[json!({"choice1": "x"})])).unwrap_err(), "row 0, field `choice2`: missing");
    }
}
