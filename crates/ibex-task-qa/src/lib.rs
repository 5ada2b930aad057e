//! The extractive question-answering family (SQuAD, XQuAD, CatalanQA): a prompt built from a context and a question,
//! a greedy answer generated until a stop string, scored with SQuAD's exact match and F1 ([`squad`]).
//!
//! lm-eval's xquad and catalan_bench tasks compare with the first gold answer only; the official SQuAD v1.1 metric
//! takes the best over every gold answer. A task file's `[recipe]` ([`QaRecipe`]) says which (`gold = "first"` or `"all"`), so each task keeps the
//! definition its published numbers used.

pub mod squad;

use ibex_core::prompt::Output;
use ibex_core::{
    parse_task_file, text_field, Doc, Metric, Response, SampleScore, Task, TaskError, TaskFamily, TaskHeader, Template,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use toml::Spanned;

/// The family task files name as `family = "qa"`.
pub struct Qa;

impl TaskFamily for Qa {
    fn name(&self) -> &'static str {
        "qa"
    }

    fn load(&self, text: &str) -> Result<Arc<dyn Task>, TaskError> {
        let (header, recipe) = parse_task_file(text)?;
        Ok(Arc::new(QaTask::new(header, recipe)?))
    }
}

/// Which gold answers a prediction is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gold {
    /// The first gold answer, as lm-eval's xquad and catalan_bench tasks.
    First,
    /// The best over all gold answers, as the official SQuAD v1.1 evaluation.
    All,
}

/// The `[recipe]` of a QA task file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaRecipe {
    /// The prompt over `{context}` and `{question}` (lm-eval's `doc_to_text`).
    pub prompt: Spanned<String>,
    /// Stop strings (lm-eval's `generation_kwargs.until`).
    pub until: Vec<String>,
    /// The most tokens to generate (lm-eval's `generation_kwargs.max_gen_toks`); the run's `--max-gen-toks` when unset.
    #[serde(default)]
    pub max_gen_toks: Option<usize>,
    /// Which gold answers count.
    pub gold: Gold,
    /// Data column names, when not `context`, `question`, `answers`.
    #[serde(default)]
    pub fields: Fields,
}

/// Data column names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// The passage.
    pub context: String,
    /// The question.
    pub question: String,
    /// The gold answers: `{"text": [...]}` (SQuAD, XQuAD), `[{"text": ...}]` (projecte-aina) or `[...]`.
    pub answers: String,
}

impl Default for Fields {
    fn default() -> Self {
        Self { context: "context".into(), question: "question".into(), answers: "answers".into() }
    }
}

/// A validated QA task.
#[derive(Clone, Debug)]
pub struct QaTask {
    header: TaskHeader,
    recipe: QaRecipe,
    prompt: Template,
}

impl QaTask {
    /// Validates a recipe: known template variables.
    pub fn new(header: TaskHeader, recipe: QaRecipe) -> Result<Self, TaskError> {
        if recipe.max_gen_toks == Some(0) {
            return Err(TaskError::spec("`max_gen_toks` is 0; a generation needs at least one token"));
        }
        let prompt = Template::parse(recipe.prompt.get_ref(), &["context", "question"])
            .map_err(|e| e.at(recipe.prompt.span()))?;
        Ok(Self { header, recipe, prompt })
    }

    fn gold_answers(&self, doc: &Doc) -> Vec<String> {
        doc.fields.get(&self.recipe.fields.answers).map(answer_texts).unwrap_or_default()
    }
}

/// The answer texts of an `answers` value in any of the hub's shapes.
fn answer_texts(value: &Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("text").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    match value {
        Value::Object(o) => match o.get("text") {
            Some(Value::Array(texts)) => texts.iter().filter_map(text).collect(),
            Some(Value::String(single)) => vec![single.clone()],
            _ => Vec::new(),
        },
        Value::Array(items) => items.iter().filter_map(text).collect(),
        Value::String(single) => vec![single.clone()],
        _ => Vec::new(),
    }
}

impl Task for QaTask {
    fn header(&self) -> &TaskHeader {
        &self.header
    }

    fn doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError> {
        let names = &self.recipe.fields;
        text_field(row, fields, &names.context)?;
        text_field(row, fields, &names.question)?;
        let answers = fields.get(&names.answers).ok_or_else(|| TaskError::row(row, &names.answers, "missing"))?;
        if answer_texts(answers).is_empty() {
            return Err(TaskError::row(
                row,
                &names.answers,
                format!("no answer text in {answers}; expected {{\"text\": [...]}}, [{{\"text\": ...}}] or [\"...\"]"),
            ));
        }
        Ok(Doc { id: row, fields: fields.clone() })
    }

    fn doc_to_text(&self, doc: &Doc) -> String {
        let text = |column: &str| doc.fields.get(column).and_then(Value::as_str).unwrap_or_default();
        let names = &self.recipe.fields;
        let (context, question) = (text(&names.context), text(&names.question));
        self.prompt.render(|name| if name == "context" { context } else { question })
    }

    /// The first gold answer, as lm-eval's xquad tasks show in few-shot examples.
    fn doc_to_target(&self, doc: &Doc) -> String {
        self.gold_answers(doc).into_iter().next().unwrap_or_default()
    }

    fn output(&self, _doc: &Doc) -> Output {
        Output::GenerateUntil { until: self.recipe.until.clone(), max_gen_toks: self.recipe.max_gen_toks }
    }

    fn score(&self, doc: &Doc, responses: &[Response]) -> SampleScore {
        let prediction = responses.first().and_then(Response::generation).unwrap_or_default();
        let answers = self.gold_answers(doc);
        let golds = match self.recipe.gold {
            Gold::First => &answers[..answers.len().min(1)],
            Gold::All => &answers[..],
        };
        let best = |metric: fn(&str, &str) -> f64| golds.iter().map(|g| metric(g, prediction)).fold(0.0, f64::max);
        SampleScore {
            target: Value::from(answers.first().cloned().unwrap_or_default()),
            metrics: BTreeMap::from([
                ("exact_match".to_owned(), Value::from(best(squad::exact_match))),
                ("f1".to_owned(), Value::from(best(squad::f1))),
            ]),
        }
    }

    fn metrics(&self) -> &[Metric] {
        &[Metric::F1, Metric::EXACT_MATCH]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibex_core::prompt::{construct_requests, fewshot_context, PromptFormat};
    use ibex_core::{GenerateRequest, Request};

    fn task(file: &str, gold: &str) -> QaTask {
        let text = std::fs::read_to_string(format!("{}/../../tasks/qa/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let (header, mut recipe): (TaskHeader, QaRecipe) = parse_task_file(&text).unwrap();
        recipe.gold = if gold == "all" { Gold::All } else { Gold::First };
        QaTask::new(header, recipe).unwrap()
    }

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn answers_arrive_in_every_hub_shape() {
        let task = task("xquad_en.toml", "first");
        for answers in [
            serde_json::json!({"text": ["blue", "navy"], "answer_start": [4, 9]}),
            serde_json::json!([{"text": "blue", "answer_start": 4}, {"text": "navy", "answer_start": 9}]),
            serde_json::json!(["blue", "navy"]),
        ] {
            let doc =
                task.doc(0, &row(serde_json::json!({"context": "C", "question": "Q", "answers": answers}))).unwrap();
            assert_eq!(task.gold_answers(&doc), ["blue", "navy"]);
        }
        let bad = task.doc(3, &row(serde_json::json!({"context": "C", "question": "Q", "answers": {"text": []}})));
        assert!(bad.unwrap_err().to_string().starts_with("row 3, field `answers`: no answer text"));
    }

    #[test]
    fn first_gold_or_best_gold_as_the_task_says() {
        let doc_fields =
            row(serde_json::json!({"context": "C", "question": "Q", "answers": {"text": ["blue", "navy blue"]}}));
        let prediction = [Response::Generation(" navy blue".into())];
        let first = task("xquad_en.toml", "first");
        let doc = first.doc(0, &doc_fields).unwrap();
        assert_eq!(first.score(&doc, &prediction).metrics["exact_match"], 0.0);
        assert_eq!(first.score(&doc, &prediction).target, "blue");
        let all = task("xquad_en.toml", "all");
        assert_eq!(all.score(&doc, &prediction).metrics["exact_match"], 1.0);
    }

    #[test]
    fn prompt_and_fewshot_example_follow_lm_eval() {
        let task = task("xquad_en.toml", "first");
        let doc = |answer: &str| {
            let fields = serde_json::json!({"context": "C.", "question": "Q?", "answers": {"text": [answer]}});
            task.doc(0, &row(fields)).unwrap()
        };
        let format = PromptFormat::default();
        let context = fewshot_context(&task, &doc("A"), &[doc("A")], &format).unwrap();
        assert_eq!(
            construct_requests(&task, &doc("A"), &context, &format),
            [Request::Generate(GenerateRequest {
                context: "Context: C.\n\nQuestion: Q?\n\nAnswer: A\n\nContext: C.\n\nQuestion: Q?\n\nAnswer:".into(),
                until: vec!["\n".into()],
                max_gen_toks: None
            })]
        );
    }
}
