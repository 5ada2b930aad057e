//! `samples_<task>_<date>.jsonl`: one line per document, key for key and type for type as lm-eval 0.4.13 writes
//! its `--log_samples` file (`EvaluationTracker.save_results_samples`: arguments as `gen_args_<i>`/`arg_<j>`, answers
//! and target as Python's `str` writes them), hashes included, so the two logs compare line by line.

use crate::files::sha256_hex;
use crate::PlannedTask;
use crate::RunError;
use ibex_core::python::{float_repr, python_str};
use ibex_core::results::SampleRecord;
use ibex_core::{GenerateRequest, Request, Response, SampleScore};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;

/// Writes one task's sample log; returns its records.
pub(crate) fn write_samples(
    path: &Path,
    task: &PlannedTask,
    responses: &[Vec<Response>],
    scores: &[SampleScore],
) -> Result<Vec<SampleRecord>, RunError> {
    let (metrics, docs, requests) = (task.entry.task.metrics(), &task.docs, &task.requests);
    let write_error = |source: std::io::Error| RunError::Write { path: path.to_owned(), source };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(write_error)?);
    let mut records = Vec::with_capacity(docs.len());
    for (((doc, doc_requests), doc_responses), score) in docs.iter().zip(requests).zip(responses).zip(scores) {
        let arguments = arguments(doc_requests);
        let answers: Vec<Value> = doc_responses
            .iter()
            .map(|response| match response {
                Response::Loglikelihood(s) => {
                    let greedy = if s.is_greedy { "True" } else { "False" };
                    serde_json::json!([float_repr(s.logprob), greedy])
                }
                Response::Generation(text) => Value::from(text.as_str()),
            })
            .collect();
        let first_context = doc_requests.first().map_or("", Request::context);
        let record = SampleRecord {
            doc_id: doc.id,
            doc: doc.fields.clone(),
            target: python_str(&score.target),
            prompt_hash: sha256_hex(first_context),
            arguments,
            resps: answers.iter().map(|a| Value::Array(vec![a.clone()])).collect(),
            filtered_resps: answers,
            filter: "none".into(),
            metrics: metrics.iter().map(|m| m.name.to_owned()).collect(),
            doc_hash: sha256_hex(&python_json_indent2(&Value::Object(doc.fields.clone()))),
            target_hash: sha256_hex(&python_str(&score.target)),
            scores: score.metrics.clone(),
        };
        // As lm-eval writes it: `json.dumps(sample, ensure_ascii=False)`, separators and float spelling included.
        let value = serde_json::to_value(&record).expect("sample records serialize");
        let line = ibex_core::python_json::dumps(&value, &ibex_core::python_json::Options::default());
        writeln!(out, "{line}").map_err(write_error)?;
        records.push(record);
    }
    out.flush().map_err(write_error)?;
    Ok(records)
}

/// lm-eval's task hash (`EvaluationTracker.save_results_aggregated`): SHA-256 of every document's `doc_hash`,
/// `prompt_hash` and `target_hash`, concatenated in order.
pub(crate) fn task_hash(records: &[SampleRecord]) -> String {
    let joined: String = records.iter().map(|r| format!("{}{}{}", r.doc_hash, r.prompt_hash, r.target_hash)).collect();
    sha256_hex(&joined)
}

/// A document's `arguments`: `gen_args_<i>` → its i-th request's arguments.
pub(crate) fn arguments(requests: &[Request]) -> Map<String, Value> {
    requests.iter().enumerate().map(|(i, request)| (format!("gen_args_{i}"), request_arguments(request))).collect()
}

/// A request's arguments as lm-eval writes them: `{"arg_0": context, "arg_1": continuation or generation_kwargs}`.
fn request_arguments(request: &Request) -> Value {
    match request {
        Request::Loglikelihood(r) => serde_json::json!({"arg_0": r.context, "arg_1": r.continuation}),
        Request::Generate(r) => serde_json::json!({"arg_0": r.context, "arg_1": generation_kwargs(r)}),
    }
}

/// A generation's `generation_kwargs` as lm-eval passes them: the stop strings, greedy decoding, and the budget
/// when the task sets one.
pub(crate) fn generation_kwargs(request: &GenerateRequest) -> Value {
    let mut kwargs = serde_json::json!({"until": request.until, "do_sample": false, "temperature": 0.0});
    if let Some(max) = request.max_gen_toks {
        kwargs["max_gen_toks"] = Value::from(max);
    }
    kwargs
}

/// `json.dumps(value, indent=2, ensure_ascii=False)`, which lm-eval hashes for `doc_hash`.
fn python_json_indent2(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer).expect("JSON values serialize");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}
