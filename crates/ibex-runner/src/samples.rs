//! `samples_<task>_<date>.jsonl`: one line per document and filter (filter by filter, in the task's order), key for
//! key and type for type as lm-eval 0.4.13 writes its `--log_samples` file (`EvaluationTracker.save_results_samples`:
//! arguments as `gen_args_<i>`/`arg_<j>`, answers and target as Python's `str` writes them), hashes included, so the
//! two logs compare line by line.

use crate::files::sha256_hex;
use crate::PlannedTask;
use crate::RunError;
use ibex_core::python::{float_repr, python_str};
use ibex_core::results::SampleRecord;
use ibex_core::{GenerateRequest, Request, Response, SampleScore};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;

/// A response as lm-eval's sample logs write it: `[loglikelihood, is_greedy]` as Python's `str`s, or the text.
fn answer(response: &Response) -> Value {
    match response {
        Response::Loglikelihood(s) => {
            let greedy = if s.is_greedy { "True" } else { "False" };
            serde_json::json!([float_repr(s.logprob), greedy])
        }
        Response::Generation(text) => Value::from(text.as_str()),
    }
}

/// Writes one task's sample log from each document's scores (one per filter, in the task's filter order); returns
/// its records in the order written.
pub(crate) fn write_samples(
    path: &Path,
    task: &PlannedTask,
    responses: &[Vec<Response>],
    scores: &[Vec<SampleScore>],
) -> Result<Vec<SampleRecord>, RunError> {
    let (metrics, docs, requests) = (task.entry.task.metrics(), &task.docs, &task.requests);
    let write_error = |source: std::io::Error| RunError::Write { path: path.to_owned(), source };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(write_error)?);
    let mut records = Vec::with_capacity(docs.len());
    let filters = scores.first().map_or(0, Vec::len);
    // lm-eval logs every document under its first filter, then under the next.
    let by_filter = (0..filters).flat_map(|f| {
        docs.iter().zip(requests).zip(responses).zip(scores).map(move |(((d, q), r), s)| (d, q, r, &s[f]))
    });
    for (doc, doc_requests, doc_responses, score) in by_filter {
        let arguments = arguments(doc_requests);
        let first_context = doc_requests.first().map_or("", Request::context);
        let record = SampleRecord {
            doc_id: doc.id,
            doc: doc.fields.clone(),
            target: python_str(&score.target),
            prompt_hash: sha256_hex(first_context),
            arguments,
            resps: doc_responses.iter().map(|a| Value::Array(vec![answer(a)])).collect(),
            filtered_resps: score.filtered_resps.iter().map(answer).collect(),
            filter: score.filter.clone(),
            metrics: metrics.iter().filter(|m| score.metrics.contains_key(m.name)).map(|m| m.name.to_owned()).collect(),
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

/// A generation's `generation_kwargs` as lm-eval passes them with the request.
pub(crate) fn generation_kwargs(request: &GenerateRequest) -> Value {
    Value::Object(request.generation_kwargs.clone())
}

/// `json.dumps(value, indent=2, ensure_ascii=False)`, which lm-eval hashes for `doc_hash`.
fn python_json_indent2(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer).expect("JSON values serialize");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}
