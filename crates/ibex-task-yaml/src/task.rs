//! A task defined by lm-eval task YAML: lm-eval 0.4.13's `ConfigurableTask` (`lm_eval/api/task.py`) for the output
//! types `multiple_choice`, `loglikelihood` and `generate_until`: `doc_to_text`, `doc_to_target` and
//! `doc_to_choice` as a column name, a Jinja template, a literal list or an integer; `description`; the delimiters;
//! a generation's filters; the metrics as its `process_results` computes them, or as a `!function` hook ibex has in
//! Rust computes them.

use crate::config::Value as ConfigValue;
use crate::filters::FilterEnsemble;
use crate::functions::ProcessResults;
use crate::literal::literal_eval;
use ibex_core::metrics::Metric;
use ibex_core::prompt::Output;
use ibex_core::python::python_str;
use ibex_core::{Doc, Response, SampleScore, Task, TaskError, TaskHeader, NO_FILTER};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How one of `doc_to_text`, `doc_to_target`, `doc_to_choice` is given.
#[derive(Clone, Debug)]
pub(crate) enum Spec {
    /// A column of the document when one has that name, else a Jinja template (registered under the key's name).
    Text(String),
    /// A fixed integer.
    Int(i64),
    /// A fixed list (choices, or several targets).
    List(Vec<Value>),
    /// A `!function` hook ibex has in Rust: the document's value, as a column's.
    Function(crate::functions::DocFunction),
}

impl Spec {
    /// The spec a config value gives; `key` names it in errors.
    pub(crate) fn from_config(key: &str, value: &ConfigValue) -> Result<Self, TaskError> {
        match value {
            ConfigValue::Plain(Value::String(s)) => Ok(Spec::Text(s.clone())),
            ConfigValue::Plain(Value::Number(n)) if n.is_i64() => Ok(Spec::Int(n.as_i64().expect("checked"))),
            ConfigValue::Plain(Value::Array(items)) => Ok(Spec::List(items.clone())),
            // lm-eval takes a dict's values, in order.
            ConfigValue::Plain(Value::Object(map)) => Ok(Spec::List(map.values().cloned().collect())),
            ConfigValue::Function { name, folder, dir, at } => {
                let qualified = format!("{folder}/{name}");
                // The prompt hooks ibex has are the same in lm-eval and BSC's fork.
                crate::functions::check_module(dir, name, &qualified, false).map_err(TaskError::spec)?;
                crate::functions::doc_function(&qualified).map(Spec::Function).ok_or_else(|| {
                    let known: Vec<&str> = crate::functions::DOC_FUNCTIONS.iter().map(|(n, _)| *n).collect();
                    TaskError::spec(format!(
                        "`{key}: !function {name}` ({qualified}, at {at}) has no Rust implementation in ibex, which \
                         runs no Python; write it as a Jinja template, or use one ibex has: {}",
                        known.join(", ")
                    ))
                })
            }
            other => {
                Err(TaskError::spec(format!("`{key}` is {other:?}; give a column, a template, a list or an integer")))
            }
        }
    }
}

/// What `doc_to_target` gives: lm-eval's `int | str | list`.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    Index(i64),
    Text(String),
    List(Vec<Value>),
}

impl Target {
    fn to_value(&self) -> Value {
        match self {
            Target::Index(i) => Value::from(*i),
            Target::Text(s) => Value::String(s.clone()),
            Target::List(items) => Value::Array(items.clone()),
        }
    }
}

/// A document's prompt parts, rendered.
struct Rendered {
    text: String,
    target: Target,
    choices: Vec<String>,
    /// The key the target came from (`doc_to_target`, or `fewshot_config.doc_to_target` for an example), for errors.
    target_key: &'static str,
}

/// What a task asks of the model (lm-eval's `output_type`) and how it scores the answer.
pub(crate) enum OutputType {
    /// `multiple_choice`: a log-likelihood per choice.
    MultipleChoice,
    /// `loglikelihood`: the log-likelihood of the target after the prompt (`perplexity`, and `acc` when it is the
    /// greedy continuation).
    Loglikelihood,
    /// `generate_until`: one greedy generation.
    GenerateUntil {
        /// `generation_kwargs.until`.
        until: Vec<String>,
        /// `generation_kwargs.max_gen_toks`.
        max_gen_toks: Option<usize>,
        /// `generation_kwargs` as lm-eval completes and logs them.
        generation_kwargs: Map<String, Value>,
        /// How the generation is scored.
        scoring: Scoring,
        /// The pipelines that turn the generation into scored answers, each reported on its own (`filter_list`;
        /// lm-eval's `none` without one).
        filters: Vec<FilterEnsemble>,
    },
}

/// How a generation is scored.
pub(crate) enum Scoring {
    /// A `process_results: !function` hook ibex has in Rust.
    Hook(ProcessResults),
    /// lm-eval's `exact_match` (`exact_match_hf_evaluate`) against the target, with the metric's options.
    ExactMatch(ExactMatch),
}

/// The options of lm-eval's `exact_match_hf_evaluate` (`lm_eval/api/metrics.py`), given in the metric's
/// `metric_list` entry.
#[derive(Default)]
pub(crate) struct ExactMatch {
    /// `regexes_to_ignore`: each match removed from both strings, in order (Python's `re` syntax; see
    /// [`python_regex`]).
    pub(crate) regexes_to_ignore: Vec<fancy_regex::Regex>,
    /// `ignore_case`: both strings lowercased.
    pub(crate) ignore_case: bool,
    /// `ignore_punctuation`: Python's `string.punctuation` (ASCII) removed.
    pub(crate) ignore_punctuation: bool,
    /// `ignore_numbers`: ASCII digits removed.
    pub(crate) ignore_numbers: bool,
}

impl ExactMatch {
    fn normalize(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for regex in &self.regexes_to_ignore {
            text = regex.replace_all(&text, "").into_owned();
        }
        if self.ignore_case {
            text = text.to_lowercase();
        }
        text.chars()
            .filter(|c| !(self.ignore_punctuation && c.is_ascii_punctuation()))
            .filter(|c| !(self.ignore_numbers && c.is_ascii_digit()))
            .collect()
    }

    /// Whether `prediction` equals `reference` once both are normalised.
    pub(crate) fn matches(&self, reference: &str, prediction: &str) -> bool {
        self.normalize(reference) == self.normalize(prediction)
    }
}

/// A pattern of Python's `re` as fancy-regex reads it: an unescaped `$` outside a class matches, as Python's does, at
/// the end or before a final newline (`(?=\n?\z)`), and `\Z` only at the very end (`\z`). Errors carry the parser's
/// message.
pub(crate) fn python_regex(pattern: &str) -> Result<fancy_regex::Regex, String> {
    let mut out = String::with_capacity(pattern.len());
    let (mut escaped, mut in_class) = (false, false);
    for c in pattern.chars() {
        match c {
            'Z' if escaped && !in_class => {
                escaped = false;
                out.push('z');
            }
            _ if escaped => {
                escaped = false;
                out.push(c);
            }
            '\\' => {
                escaped = true;
                out.push(c);
            }
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            '$' if !in_class => out.push_str(r"(?=\n?\z)"),
            other => out.push(other),
        }
    }
    fancy_regex::Regex::new(&out).map_err(|e| e.to_string())
}

/// A task read from lm-eval task YAML.
pub struct YamlTask {
    pub(crate) header: TaskHeader,
    pub(crate) env: Environment<'static>,
    pub(crate) process_docs: Option<crate::functions::ProcessDocs>,
    pub(crate) doc_to_text: Spec,
    pub(crate) doc_to_target: Spec,
    /// Required for `multiple_choice`; for `generate_until` it turns an index target into the choice's text.
    pub(crate) doc_to_choice: Option<Spec>,
    pub(crate) output_type: OutputType,
    pub(crate) has_description: bool,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) version: Value,
    pub(crate) num_fewshot: Option<usize>,
    /// How few-shot examples are shown, where `fewshot_config` says otherwise than the task.
    pub(crate) shots: ShotSpecs,
}

/// `fewshot_config`'s own `doc_to_text`, `doc_to_target`, `doc_to_choice` (each the task's when `None`) and
/// `samples`.
#[derive(Default)]
pub(crate) struct ShotSpecs {
    pub(crate) doc_to_text: Option<Spec>,
    pub(crate) doc_to_target: Option<Spec>,
    pub(crate) doc_to_choice: Option<Spec>,
    pub(crate) samples: Option<Vec<Map<String, Value>>>,
}

/// The templates' names in the task's environment: the task's, then `fewshot_config`'s.
pub(crate) const TEMPLATES: [&str; 7] = [
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "description",
    "fewshot_config.doc_to_text",
    "fewshot_config.doc_to_target",
    "fewshot_config.doc_to_choice",
];

impl YamlTask {
    /// lm-eval's `utils.apply_template`: the template registered as `key`, rendered with the document's fields.
    /// Errors are (field, message): a field the template reads that the row lacks is named as missing, any other
    /// failure is the template's.
    fn render(&self, key: &str, doc: &Map<String, Value>) -> Result<String, (String, String)> {
        let template = self.env.get_template(key).map_err(|e| (key.to_owned(), e.to_string()))?;
        template.render(minijinja::Value::from_serialize(doc)).map_err(|e| {
            let globals: Vec<&str> = self.env.globals().map(|(name, _)| name).collect();
            let mut missing: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !doc.contains_key(v) && !globals.contains(&v.as_str()))
                .collect();
            missing.sort();
            match missing.first() {
                Some(field) => (field.clone(), format!("missing (`{key}` reads it)")),
                None => (key.to_owned(), describe(&e)),
            }
        })
    }

    /// What `spec` gives for `key`: a value (a column's, a hook's, a literal) as `Ok`, or a template's text as
    /// `Err`.
    fn resolve(
        &self,
        key: &str,
        spec: &Spec,
        doc: &Map<String, Value>,
    ) -> Result<Result<Value, String>, (String, String)> {
        match spec {
            Spec::Text(column) => match doc.get(column) {
                Some(value) => Ok(Ok(value.clone())),
                None => self.render(key, doc).map(Err),
            },
            Spec::Int(i) => Ok(Ok(Value::from(*i))),
            Spec::List(items) => Ok(Ok(Value::Array(items.clone()))),
            Spec::Function(function) => function(doc).map(Ok).map_err(|message| (key.to_owned(), message)),
        }
    }

    /// The document's prompt parts, as the evaluated document (`shot` false) or as a few-shot example (`shot`
    /// true: `fewshot_config`'s templates where it has them).
    fn rendered(&self, doc: &Map<String, Value>, shot: bool) -> Result<Rendered, (String, String)> {
        fn fail(key: &'static str) -> impl Fn(String) -> (String, String) {
            move |message| (key.to_owned(), message)
        }
        fn pick<'s>(
            shot: bool,
            own: (&'static str, Option<&'s Spec>),
            of_shots: (&'static str, Option<&'s Spec>),
        ) -> Option<(&'static str, &'s Spec)> {
            match of_shots {
                (key, Some(spec)) if shot => Some((key, spec)),
                _ => own.1.map(|spec| (own.0, spec)),
            }
        }
        let shots = &self.shots;
        let (text_key, text_spec) = pick(
            shot,
            ("doc_to_text", Some(&self.doc_to_text)),
            ("fewshot_config.doc_to_text", shots.doc_to_text.as_ref()),
        )
        .expect("a task has doc_to_text");
        let (target_key, target_spec) = pick(
            shot,
            ("doc_to_target", Some(&self.doc_to_target)),
            ("fewshot_config.doc_to_target", shots.doc_to_target.as_ref()),
        )
        .expect("a task has doc_to_target");
        let choice = pick(
            shot,
            ("doc_to_choice", self.doc_to_choice.as_ref()),
            ("fewshot_config.doc_to_choice", shots.doc_to_choice.as_ref()),
        );
        // lm-eval reads a number as a choice index only when the task has choices (`doc_to_choice`).
        let indexes = self.doc_to_choice.is_some();
        let text = match self.resolve(text_key, text_spec, doc)? {
            Ok(Value::Number(_)) if indexes => {
                return Err(fail(text_key)("a multiple-input task (an integer), which ibex does not run yet".into()))
            }
            Ok(value) => python_str(&value),
            Err(text) if indexes && is_digits(&text) => {
                return Err(fail(text_key)(
                    "renders a number: a choice index (lm-eval's multiple inputs), which ibex does not run yet".into(),
                ))
            }
            Err(text) => text,
        };
        let choices: Vec<Value> = match choice {
            None => Vec::new(),
            Some((key, Spec::Int(_))) => return Err(fail(key)("an integer is not a list of choices".into())),
            Some((key, spec)) => match self.resolve(key, spec, doc)? {
                Ok(Value::Array(items)) => items,
                Ok(other) => return Err(fail(key)(format!("the column holds {other}, not a list"))),
                Err(text) => match literal_eval(&text).map_err(fail(key))? {
                    Value::Array(items) => items,
                    other => return Err(fail(key)(format!("renders {other}, not a list"))),
                },
            },
        };
        let choices: Vec<String> = choices.iter().map(python_str).collect();
        let target = match self.resolve(target_key, target_spec, doc)? {
            Ok(Value::Number(n)) if n.is_i64() => Target::Index(n.as_i64().expect("checked")),
            // Python's bool is an int: True indexes choice 1; without choices lm-eval casts it to text.
            Ok(Value::Bool(b)) if indexes => Target::Index(i64::from(b)),
            Ok(Value::Bool(b)) => Target::Text(if b { "True" } else { "False" }.into()),
            Ok(Value::String(s)) => Target::Text(s),
            Ok(Value::Array(items)) => Target::List(items),
            Ok(other) => return Err(fail(target_key)(format!("the column holds {other}"))),
            Err(text) if indexes && is_digits(&text) => {
                Target::Index(text.parse().map_err(|_| fail(target_key)(format!("`{text}` is too large an index")))?)
            }
            Err(text) if text.len() >= 2 && text.starts_with('[') && text.ends_with(']') => match literal_eval(&text) {
                Ok(Value::Array(items)) => Target::List(items),
                _ => Target::Text(text),
            },
            Err(text) => Target::Text(text),
        };
        Ok(Rendered { text, target, choices, target_key })
    }

    fn parts(&self, doc: &Doc) -> Rendered {
        self.rendered(&doc.fields, false).unwrap_or_else(|_| unreachable!("the document rendered when it was built"))
    }

    fn shot_parts(&self, shot: &Doc) -> Rendered {
        self.rendered(&shot.fields, true).unwrap_or_else(|_| unreachable!("the example rendered when it was built"))
    }

    /// lm-eval's `build_qa_turn` answer: the choice an index names (the index itself without choices), a list's
    /// first entry, or the text.
    fn answer(parts: Rendered) -> String {
        match parts.target {
            Target::Index(i) if parts.choices.is_empty() => i.to_string(),
            Target::Index(i) => {
                python_index(i, parts.choices.len()).map(|i| parts.choices[i].clone()).unwrap_or_default()
            }
            Target::List(items) => items.first().map(python_str).unwrap_or_default(),
            Target::Text(text) => text,
        }
    }

    /// A target index must name a choice: Python counts a negative index from the end and fails past it. (A
    /// generation without choices shows the index itself.)
    fn check_index(row: usize, parts: &Rendered) -> Result<(), TaskError> {
        match parts.target {
            Target::Index(i) if !parts.choices.is_empty() && python_index(i, parts.choices.len()).is_none() => {
                let message = format!("index {i} is outside the {} choices", parts.choices.len());
                Err(TaskError::row(row, parts.target_key, message))
            }
            _ => Ok(()),
        }
    }

    /// The gold choices' indices; an index outside the choices matches nothing (lm-eval's -100).
    fn gold(target: &Target, choices: &[String]) -> Vec<Option<usize>> {
        let index = |value: &Value| match value {
            Value::Number(n) => n.as_u64().map(|i| i as usize).filter(|&i| i < choices.len()),
            Value::String(s) => choices.iter().position(|c| c == s),
            _ => None,
        };
        match target {
            Target::List(items) => items.iter().map(index).collect(),
            other => vec![index(&other.to_value())],
        }
    }
}

impl YamlTask {
    /// lm-eval's `process_results` for `generate_until`: the hook's values, or `exact_match` of the generation
    /// against the target (an index target names a choice; a list target matches when any entry does).
    fn score_generation(
        &self,
        doc: &Doc,
        parts: &Rendered,
        scoring: &Scoring,
        filter: &FilterEnsemble,
        responses: &[Response],
    ) -> SampleScore {
        let prediction = filter.apply(responses.first().and_then(Response::generation).unwrap_or_default());
        let prediction = prediction.as_str();
        let values: Vec<(&str, f64)> = match scoring {
            Scoring::Hook(hook) => {
                let values = (hook.function)(&doc.fields, prediction)
                    .unwrap_or_else(|_| unreachable!("the hook read the document when it was built"));
                hook.metrics.iter().copied().zip(values).collect()
            }
            Scoring::ExactMatch(options) => {
                let references: Vec<String> = match &parts.target {
                    Target::Index(i) if !parts.choices.is_empty() => {
                        python_index(*i, parts.choices.len()).map(|i| parts.choices[i].clone()).into_iter().collect()
                    }
                    Target::Index(i) => vec![i.to_string()],
                    Target::Text(text) => vec![text.clone()],
                    Target::List(items) => items.iter().map(python_str).collect(),
                };
                let hit = references.iter().any(|reference| options.matches(reference, prediction));
                vec![("exact_match", f64::from(u8::from(hit)))]
            }
        };
        let metrics = self
            .metrics
            .iter()
            .filter_map(|m| {
                values.iter().find(|(name, _)| *name == m.name).map(|(_, v)| (m.name.to_owned(), Value::from(*v)))
            })
            .collect();
        SampleScore {
            filter: filter.name.clone(),
            filtered_resps: vec![Response::Generation(prediction.to_owned())],
            target: parts.target.to_value(),
            metrics,
        }
    }
}

/// Python's `list[i]` position for a list of `len` items: negative counts from the end; `None` past either end.
fn python_index(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let position = if i < 0 { len + i } else { i };
    (0..len).contains(&position).then_some(position as usize)
}

/// Python's `str.isdigit` for the ASCII digits lm-eval's templates print.
fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

/// minijinja's message with the line it points at.
pub(crate) fn describe(error: &minijinja::Error) -> String {
    match error.line() {
        Some(line) => format!("{} (template line {line})", error),
        None => error.to_string(),
    }
}

/// lm-eval's template environment (`lm_eval/utils.py`): strict about undefined names, trailing newlines kept, Python's
/// string methods, and values printed as Python's `str` prints them.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, state, value| match value.kind() {
        minijinja::value::ValueKind::String => minijinja::escape_formatter(out, state, value),
        _ => {
            let json = serde_json::to_value(value)
                .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string()))?;
            out.write_str(&python_str(&json)).map_err(minijinja::Error::from)
        }
    });
    env
}

impl Task for YamlTask {
    fn header(&self) -> &TaskHeader {
        &self.header
    }

    /// The task's `process_docs` hook, when it names one.
    fn process_docs(&self, rows: Vec<Map<String, Value>>) -> Result<Vec<Map<String, Value>>, TaskError> {
        match self.process_docs {
            Some(hook) => hook(rows).map_err(|message| TaskError::spec(format!("process_docs: {message}"))),
            None => Ok(rows),
        }
    }

    /// The processed row, checked by rendering its prompt, target and choices.
    fn doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError> {
        let rendered = self.rendered(fields, false).map_err(|(key, message)| TaskError::row(row, &key, message))?;
        match (&self.output_type, &rendered.target) {
            (OutputType::MultipleChoice, _) if rendered.choices.is_empty() => {
                return Err(TaskError::row(row, "doc_to_choice", "gives no choices"))
            }
            (OutputType::Loglikelihood, Target::Text(_)) => {}
            (OutputType::Loglikelihood, other) => {
                return Err(TaskError::row(
                    row,
                    "doc_to_target",
                    format!("gives {}; a loglikelihood task scores a text continuation", python_str(&other.to_value())),
                ))
            }
            _ => {}
        }
        if let OutputType::GenerateUntil { scoring: Scoring::Hook(hook), .. } = &self.output_type {
            // The hook reads the document's gold answers: a row it cannot read fails here, before any weight loads.
            (hook.function)(fields, "").map_err(|message| TaskError::row(row, "process_results", message))?;
        }
        // A few-shot example shows `choices[target]`, and the evaluated document may be one.
        Self::check_index(row, &rendered)?;
        if self.has_description {
            self.render("description", fields).map_err(|(field, message)| TaskError::row(row, &field, message))?;
        }
        Ok(Doc { id: row, fields: fields.clone() })
    }

    fn doc_to_text(&self, doc: &Doc) -> String {
        self.parts(doc).text
    }

    fn doc_to_target(&self, doc: &Doc) -> String {
        Self::answer(self.parts(doc))
    }

    fn fewshot_samples(&self) -> Option<Vec<Map<String, Value>>> {
        self.shots.samples.clone()
    }

    /// The example, checked by rendering it as it is shown (`fewshot_config`'s templates where it has them).
    fn shot_doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError> {
        let rendered = self.rendered(fields, true).map_err(|(key, message)| TaskError::row(row, &key, message))?;
        Self::check_index(row, &rendered)?;
        Ok(Doc { id: row, fields: fields.clone() })
    }

    fn shot_text(&self, shot: &Doc) -> String {
        self.shot_parts(shot).text
    }

    fn shot_target(&self, shot: &Doc) -> String {
        Self::answer(self.shot_parts(shot))
    }

    fn description(&self, doc: &Doc) -> String {
        if !self.has_description {
            return String::new();
        }
        self.render("description", &doc.fields).unwrap_or_else(|_| unreachable!("rendered when the doc was built"))
    }

    fn output(&self, doc: &Doc) -> Output {
        match &self.output_type {
            OutputType::MultipleChoice => Output::MultipleChoice(self.parts(doc).choices),
            OutputType::Loglikelihood => Output::Loglikelihood(self.doc_to_target(doc)),
            OutputType::GenerateUntil { until, max_gen_toks, generation_kwargs, .. } => Output::GenerateUntil {
                until: until.clone(),
                max_gen_toks: *max_gen_toks,
                generation_kwargs: generation_kwargs.clone(),
            },
        }
    }

    /// lm-eval's `process_results`: for `generate_until` under each filter (see `score_generation`); for
    /// `loglikelihood` the log-likelihood itself (`perplexity`, aggregated as `exp(-mean)`) and whether the target is
    /// the greedy continuation (`acc`); for `multiple_choice` the argmax of the log-likelihoods (`acc`), of the
    /// log-likelihoods over each choice's length in characters (`acc_norm`) or UTF-8 bytes (`acc_bytes`), and
    /// `[gold, prediction]` for `mcc` and `f1`; ties go to the first choice, as numpy's argmax.
    fn score(&self, doc: &Doc, responses: &[Response]) -> Vec<SampleScore> {
        let parts = self.parts(doc);
        let unfiltered = |metrics| {
            vec![SampleScore {
                filter: NO_FILTER.to_owned(),
                filtered_resps: responses.to_vec(),
                target: parts.target.to_value(),
                metrics,
            }]
        };
        match &self.output_type {
            OutputType::GenerateUntil { scoring, filters, .. } => {
                return filters
                    .iter()
                    .map(|filter| self.score_generation(doc, &parts, scoring, filter, responses))
                    .collect()
            }
            OutputType::Loglikelihood => {
                let score = match responses.first() {
                    Some(Response::Loglikelihood(score)) => *score,
                    _ => unreachable!("a loglikelihood task's request is answered with a log-likelihood"),
                };
                let metrics = self
                    .metrics
                    .iter()
                    .map(|m| {
                        let item = match m.name {
                            "perplexity" => Value::from(score.logprob),
                            _ => Value::from(u8::from(score.is_greedy)),
                        };
                        (m.name.to_owned(), item)
                    })
                    .collect();
                return unfiltered(metrics);
            }
            OutputType::MultipleChoice => {}
        }
        let lls: Vec<f64> = responses.iter().map(|r| r.loglikelihood().unwrap_or(f64::NEG_INFINITY)).collect();
        let argmax = |values: &[f64]| {
            values
                .iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
                .0
        };
        let predicted = argmax(&lls);
        let normalized: Vec<f64> =
            lls.iter().zip(&parts.choices).map(|(ll, choice)| ll / choice.chars().count() as f64).collect();
        let predicted_norm = argmax(&normalized);
        let per_byte: Vec<f64> = lls.iter().zip(&parts.choices).map(|(ll, choice)| ll / choice.len() as f64).collect();
        let predicted_bytes = argmax(&per_byte);
        let gold = Self::gold(&parts.target, &parts.choices);
        let hit = |p: usize| f64::from(u8::from(gold.contains(&Some(p))));
        let mut metrics = BTreeMap::new();
        for metric in &self.metrics {
            let item = match metric.name {
                "acc" => Value::from(hit(predicted)),
                "acc_norm" => Value::from(hit(predicted_norm)),
                "acc_bytes" => Value::from(hit(predicted_bytes)),
                _ => {
                    let gold = gold.first().copied().flatten().map_or(Value::from(-100), Value::from);
                    Value::Array(vec![gold, Value::from(predicted)])
                }
            };
            metrics.insert(metric.name.to_owned(), item);
        }
        unfiltered(metrics)
    }

    fn filters(&self) -> Vec<String> {
        match &self.output_type {
            OutputType::GenerateUntil { filters, .. } => filters.iter().map(|f| f.name.clone()).collect(),
            _ => vec![NO_FILTER.to_owned()],
        }
    }

    fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    fn version(&self) -> Value {
        self.version.clone()
    }

    fn num_fewshot(&self) -> Option<usize> {
        self.num_fewshot
    }
}
