//! The cloze natural-language-inference family: XNLI in every language and its Catalan, Basque and Galician
//! relatives. Each task is a task file whose `[recipe]` is an [`NliRecipe`]; the family turns a row into three scored sentences, one per
//! label, and the task's accuracy is how often the gold sentence is the most likely.
//!
//! As in lm-eval, the context is empty and each choice is the whole sentence
//! (`premise + ", right? Yes, " + hypothesis`), prefixed by the task's target delimiter. Everything lm-eval hides in
//! Python (`process_docs`, label maps, field names) is a named field of the task file, so a new language is a file.

mod preprocess;

pub use preprocess::Step;

use ibex_core::prompt::Output;
use ibex_core::{
    parse_task_file, text_field, Doc, Metric, Response, SampleScore, Task, TaskError, TaskFamily, TaskHeader, Template,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use toml::Spanned;

/// The family task files name as `family = "nli"`.
pub struct Nli;

impl TaskFamily for Nli {
    fn name(&self) -> &'static str {
        "nli"
    }

    fn load(&self, text: &str) -> Result<Arc<dyn Task>, TaskError> {
        let (header, recipe) = parse_task_file(text)?;
        Ok(Arc::new(NliTask::new(header, recipe)?))
    }
}

/// The labels in choice order: lm-eval's 0 entailment, 1 neutral, 2 contradiction.
const LABEL_NAMES: [&str; 3] = ["entailment", "neutral", "contradiction"];

/// The `[recipe]` of an NLI task file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NliRecipe {
    /// Data columns holding the premise, hypothesis and label, when they are not named so.
    #[serde(default)]
    pub fields: Fields,
    /// Preprocessing steps, in order (`detokenize:premise`, `lowercase_first:hypothesis`, …).
    #[serde(default)]
    pub preprocess: Vec<Spanned<String>>,
    /// One template per label, in label order, over `{premise}` and `{hypothesis}`.
    pub choices: Vec<Spanned<String>>,
}

/// Data column names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// Column of the premise.
    pub premise: String,
    /// Column of the hypothesis.
    pub hypothesis: String,
    /// Column of the label (an index 0–2, its digit string, or a label name).
    pub label: String,
}

impl Default for Fields {
    fn default() -> Self {
        Self { premise: "premise".into(), hypothesis: "hypothesis".into(), label: "label".into() }
    }
}

/// A validated NLI task.
#[derive(Clone, Debug)]
pub struct NliTask {
    header: TaskHeader,
    fields: Fields,
    steps: Vec<Step>,
    templates: Vec<Template>,
}

impl NliTask {
    /// Validates a recipe: three choices, known template variables, known preprocessing steps.
    pub fn new(header: TaskHeader, recipe: NliRecipe) -> Result<Self, TaskError> {
        if recipe.choices.len() != LABEL_NAMES.len() {
            return Err(TaskError::spec(format!(
                "`choices` has {} templates; NLI needs 3 (entailment, neutral, contradiction)",
                recipe.choices.len()
            )));
        }
        let templates = recipe
            .choices
            .iter()
            .map(|t| Template::parse(t.get_ref(), &["premise", "hypothesis"]).map_err(|e| e.at(t.span())))
            .collect::<Result<_, _>>()?;
        let steps = recipe
            .preprocess
            .iter()
            .map(|s| Step::parse(s.get_ref()).map_err(|e| e.at(s.span())))
            .collect::<Result<_, _>>()?;
        Ok(Self { header, fields: recipe.fields, steps, templates })
    }

    fn label(&self, row: usize, fields: &Map<String, Value>) -> Result<usize, TaskError> {
        let column = &self.fields.label;
        let value = fields.get(column).ok_or_else(|| TaskError::row(row, column, "missing"))?;
        let index = match value {
            Value::Number(n) => n.as_u64().map(|n| n as usize),
            Value::String(s) => s.trim().parse::<usize>().ok().or_else(|| LABEL_NAMES.iter().position(|l| l == s)),
            _ => None,
        };
        index.filter(|&i| i < LABEL_NAMES.len()).ok_or_else(|| {
            TaskError::row(
                row,
                column,
                format!("label {value} is not one of 0, 1, 2 or entailment, neutral, contradiction"),
            )
        })
    }

    /// The three choice sentences of a document, in label order.
    fn choices(&self, doc: &Doc) -> Vec<String> {
        let text = |column: &str| doc.fields[column].as_str().unwrap_or_default().to_owned();
        let (premise, hypothesis) = (text(&self.fields.premise), text(&self.fields.hypothesis));
        self.templates
            .iter()
            .map(|template| template.render(|name| if name == "premise" { &premise } else { &hypothesis }))
            .collect()
    }

    fn gold(&self, doc: &Doc) -> usize {
        doc.fields[&self.fields.label].as_u64().unwrap_or_default() as usize
    }
}

impl Task for NliTask {
    fn header(&self) -> &TaskHeader {
        &self.header
    }

    fn doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError> {
        let mut premise = text_field(row, fields, &self.fields.premise)?;
        let mut hypothesis = text_field(row, fields, &self.fields.hypothesis)?;
        let label = self.label(row, fields)?;
        for step in &self.steps {
            step.apply(&mut premise, &mut hypothesis);
        }
        let mut doc = fields.clone();
        doc.insert(self.fields.premise.clone(), Value::String(premise));
        doc.insert(self.fields.hypothesis.clone(), Value::String(hypothesis));
        doc.insert(self.fields.label.clone(), Value::from(label));
        Ok(Doc { id: row, fields: doc })
    }

    /// Empty: NLI's whole sentence is the choice.
    fn doc_to_text(&self, _doc: &Doc) -> String {
        String::new()
    }

    fn doc_to_target(&self, doc: &Doc) -> String {
        self.choices(doc).swap_remove(self.gold(doc))
    }

    /// The three sentences, one per label: the context is the few-shot examples alone.
    fn output(&self, doc: &Doc) -> Output {
        Output::MultipleChoice(self.choices(doc))
    }

    fn score(&self, doc: &Doc, responses: &[Response]) -> SampleScore {
        let gold = self.gold(doc);
        // Ties go to the first choice, as numpy's argmax in lm-eval.
        let predicted = responses
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, r)| {
                let ll = r.loglikelihood().unwrap_or(f64::NEG_INFINITY);
                if ll > best.1 {
                    (i, ll)
                } else {
                    best
                }
            })
            .0;
        SampleScore {
            target: Value::from(gold),
            metrics: BTreeMap::from([("acc".to_owned(), Value::from(f64::from(u8::from(predicted == gold))))]),
        }
    }

    fn metrics(&self) -> &[Metric] {
        &[Metric::ACC]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibex_core::prompt::{construct_requests, fewshot_context, PromptFormat};
    use ibex_core::{LoglikelihoodRequest, Request};

    fn xnli_en() -> Arc<dyn Task> {
        Nli.load(include_str!("../../../tasks/nli/xnli_en.toml")).unwrap()
    }

    fn row(premise: &str, hypothesis: &str, label: Value) -> Map<String, Value> {
        serde_json::json!({"premise": premise, "hypothesis": hypothesis, "label": label}).as_object().unwrap().clone()
    }

    fn requests(task: &dyn Task, doc: &Doc, shots: &[Doc]) -> Vec<LoglikelihoodRequest> {
        let format = PromptFormat::default();
        let context = fewshot_context(task, doc, shots, &format).unwrap();
        construct_requests(task, doc, &context, &format)
            .into_iter()
            .map(|request| match request {
                Request::Loglikelihood(request) => request,
                Request::Generate(_) => panic!("NLI asks for log-likelihoods"),
            })
            .collect()
    }

    #[test]
    fn xnli_en_requests_are_lm_evals_cloze_sentences() {
        let task = xnli_en();
        let doc = task.doc(0, &row("A cat sat.", "An animal sat.", Value::from(0))).unwrap();
        let requests = requests(task.as_ref(), &doc, &[]);
        assert!(requests.iter().all(|r| r.context.is_empty()));
        assert_eq!(
            requests.into_iter().map(|r| r.continuation).collect::<Vec<_>>(),
            [
                " A cat sat., right? Yes, An animal sat.",
                " A cat sat., right? Also, An animal sat.",
                " A cat sat., right? No, An animal sat."
            ]
        );
    }

    #[test]
    fn a_fewshot_example_is_the_gold_sentence_with_delimiters() {
        let task = xnli_en();
        let shot = task.doc(0, &row("A cat sat.", "An animal sat.", Value::from(2))).unwrap();
        let doc = task.doc(1, &row("B.", "C.", Value::from(0))).unwrap();
        let requests = requests(task.as_ref(), &doc, &[shot.clone(), shot]);
        assert_eq!(requests[0].context, " A cat sat., right? No, An animal sat.\n\n".repeat(2));
    }

    #[test]
    fn labels_accept_indices_digit_strings_and_names() {
        let task = xnli_en();
        for (label, expected) in [(Value::from(2), 2), (Value::from("1"), 1), (Value::from("contradiction"), 2)] {
            assert_eq!(task.doc(0, &row("p", "h", label)).unwrap().fields["label"], expected);
        }
        let err = task.doc(7, &row("p", "h", Value::from(3))).unwrap_err().to_string();
        assert_eq!(err, "row 7, field `label`: label 3 is not one of 0, 1, 2 or entailment, neutral, contradiction");
    }

    #[test]
    fn missing_field_names_the_row_and_field() {
        let task = xnli_en();
        let mut fields = row("p", "h", Value::from(0));
        fields.remove("hypothesis");
        let err = task.doc(4, &fields).unwrap_err().to_string();
        assert!(err.starts_with("row 4, field `hypothesis`: missing"), "{err}");
    }

    #[test]
    fn score_takes_the_most_likely_choice_and_first_on_ties() {
        let task = xnli_en();
        let doc = task.doc(0, &row("p", "h", Value::from(1))).unwrap();
        let ll = |v: f64| Response::Loglikelihood(ibex_core::TokenScore { logprob: v, is_greedy: false });
        assert_eq!(task.score(&doc, &[ll(-3.0), ll(-1.0), ll(-2.0)]).metrics["acc"], 1.0);
        assert_eq!(task.score(&doc, &[ll(-1.0), ll(-1.0), ll(-2.0)]).metrics["acc"], 0.0);
        assert_eq!(task.metrics()[0].name, "acc");
    }
}
