//! The prompt of a document, as lm-eval 0.4.13 assembles it: a system turn, few-shot question/answer turns, the
//! document's question, rendered as plain text or through the tokenizer's chat template; then the requests the
//! document's output type makes of that context.
//!
//! Mirrors `ConfigurableTask.fewshot_context`, `build_qa_turn` and `construct_requests` (lm_eval/api/task.py) and
//! `Message`, `maybe_delimit`, `multiturn_to_singleturn` (lm_eval/api/utils.py).

use crate::{Doc, GenerateRequest, LoglikelihoodRequest, Request, Task};
use serde::Serialize;
use std::sync::Arc;

/// Who speaks a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt: `--system-instruction` (and a task's description).
    System,
    /// A question: a few-shot example's or the document's.
    User,
    /// A few-shot example's answer.
    Assistant,
}

/// One turn as a chat template receives it (`{"role": …, "content": …}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// The speaker.
    pub role: Role,
    /// The text, without the delimiters plain-text prompts put after it.
    pub content: String,
}

/// lm-eval's `Message`: a turn plus the delimiter that follows it when the prompt is plain text.
#[derive(Clone, Debug)]
struct Message {
    role: Role,
    content: String,
    delimiter: String,
}

impl Message {
    fn new(role: Role, content: impl Into<String>, delimiter: impl Into<String>) -> Self {
        Self { role, content: content.into(), delimiter: delimiter.into() }
    }

    fn to_text(&self) -> String {
        format!("{}{}", self.content, self.delimiter)
    }

    fn to_chat(&self) -> ChatMessage {
        ChatMessage { role: self.role, content: self.content.clone() }
    }
}

/// What a document asks of the model after its context: lm-eval's `output_type` with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `multiple_choice`: one log-likelihood request per choice, the choice after the target delimiter.
    MultipleChoice(Vec<String>),
    /// `loglikelihood`: one log-likelihood request, the given continuation (the document's target, with no
    /// delimiter) after the context.
    Loglikelihood(String),
    /// `generate_until`: greedy generation from the context.
    GenerateUntil {
        /// Stop strings.
        until: Vec<String>,
        /// The task's generation budget, if it sets one.
        max_gen_toks: Option<usize>,
        /// The task's `generation_kwargs` as lm-eval completes and logs them.
        generation_kwargs: serde_json::Map<String, serde_json::Value>,
    },
}

/// Renders a conversation with a chat template, as lm-eval's `HFLM.apply_chat_template` calls transformers'
/// `tokenizer.apply_chat_template(…, tokenize=False, add_generation_prompt=True)`.
pub trait ApplyChatTemplate: Send + Sync {
    /// The rendered prompt, ending with the opened assistant turn. Errors name what in the template failed.
    fn apply(&self, messages: &[ChatMessage]) -> Result<String, String>;
}

/// How a document's turns become its context string.
#[derive(Clone, Default)]
pub struct PromptFormat {
    /// lm-eval's `--system_instruction`: the first turn (plain text: put before everything, with no delimiter).
    pub system_instruction: Option<String>,
    /// lm-eval's `--apply_chat_template`; `None` joins the turns as plain text.
    pub chat: Option<ChatFormat>,
}

/// A chat template and how few-shot examples go into it.
#[derive(Clone)]
pub struct ChatFormat {
    /// The renderer.
    pub template: Arc<dyn ApplyChatTemplate>,
    /// lm-eval's `--fewshot_as_multiturn`: each example a user turn and an assistant turn; else all examples and the
    /// question in one user turn.
    pub fewshot_as_multiturn: bool,
}

/// The context of `doc` after the few-shot examples `shots`: lm-eval's `fewshot_context`. A chat template's error
/// comes back as its message.
pub fn fewshot_context(task: &dyn Task, doc: &Doc, shots: &[Doc], format: &PromptFormat) -> Result<String, String> {
    let header = task.header();
    let mut messages = Vec::new();
    let system = maybe_delimit(
        format.system_instruction.as_deref().unwrap_or_default(),
        &task.description(doc),
        &header.fewshot_delimiter,
    );
    if !system.is_empty() {
        messages.push(Message::new(Role::System, system, ""));
    }
    for shot in shots {
        let answer = task.shot_target(shot);
        messages.extend(qa_turn(
            task.shot_text(shot),
            Some(answer),
            &header.shots.target_delimiter,
            &header.shots.fewshot_delimiter,
        ));
    }
    messages.extend(qa_turn(task.doc_to_text(doc), None, &header.target_delimiter, ""));
    match &format.chat {
        None => Ok(messages.iter().map(Message::to_text).collect()),
        Some(chat) => {
            let turns = if chat.fewshot_as_multiturn {
                messages.iter().map(Message::to_chat).collect::<Vec<_>>()
            } else {
                multiturn_to_singleturn(messages)
            };
            chat.template.apply(&turns)
        }
    }
}

/// lm-eval's `maybe_delimit` (`lm_eval/api/utils.py`): the system instruction and the task's description joined,
/// with `delimiter` between them unless whitespace already meets at the join.
fn maybe_delimit(prefix: &str, suffix: &str, delimiter: &str) -> String {
    match (prefix.chars().last(), suffix.chars().next()) {
        (None, _) => suffix.to_owned(),
        (_, None) => prefix.to_owned(),
        (Some(end), Some(start)) if crate::python::is_space(end) || crate::python::is_space(start) => {
            format!("{prefix}{suffix}")
        }
        _ => format!("{prefix}{delimiter}{suffix}"),
    }
}

/// lm-eval's `build_qa_turn` without a generation prefix: the question, followed by the target delimiter when an
/// answer follows; the answer, followed by the few-shot delimiter. An empty answer counts as none (`has_answer`).
fn qa_turn(question: String, answer: Option<String>, target_delimiter: &str, fewshot_delimiter: &str) -> Vec<Message> {
    match answer.filter(|a| !a.is_empty()) {
        Some(answer) => vec![
            Message::new(Role::User, question, target_delimiter),
            Message::new(Role::Assistant, answer, fewshot_delimiter),
        ],
        None => vec![Message::new(Role::User, question, "")],
    }
}

/// lm-eval's `multiturn_to_singleturn` when the last turn is the question: the system turn stays, every other turn
/// is joined as plain text into one user turn.
fn multiturn_to_singleturn(mut messages: Vec<Message>) -> Vec<ChatMessage> {
    let system = (messages.first().map(|m| m.role) == Some(Role::System)).then(|| messages.remove(0));
    if let Some(last) = messages.last_mut() {
        last.delimiter.clear();
    }
    let user = ChatMessage { role: Role::User, content: messages.iter().map(Message::to_text).collect() };
    system.iter().map(Message::to_chat).chain([user]).collect()
}

/// The requests of `doc` after its `context`: lm-eval's `construct_requests`. Under a chat template a choice
/// follows the assistant turn directly: the target delimiter is dropped. A `loglikelihood` continuation never has
/// one (lm-eval passes `(ctx, doc_to_target(doc))`).
pub fn construct_requests(task: &dyn Task, doc: &Doc, context: &str, format: &PromptFormat) -> Vec<Request> {
    match task.output(doc) {
        Output::MultipleChoice(choices) => {
            let delimiter = if format.chat.is_some() { "" } else { task.header().target_delimiter.as_str() };
            choices
                .into_iter()
                .map(|choice| {
                    Request::Loglikelihood(LoglikelihoodRequest {
                        context: context.to_owned(),
                        continuation: format!("{delimiter}{choice}"),
                    })
                })
                .collect()
        }
        Output::Loglikelihood(continuation) => {
            vec![Request::Loglikelihood(LoglikelihoodRequest { context: context.to_owned(), continuation })]
        }
        Output::GenerateUntil { until, max_gen_toks, generation_kwargs } => {
            vec![Request::Generate(GenerateRequest {
                context: context.to_owned(),
                until,
                max_gen_toks,
                generation_kwargs,
            })]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(messages: &[Message]) -> Vec<(Role, String)> {
        multiturn_to_singleturn(messages.to_vec()).into_iter().map(|m| (m.role, m.content)).collect()
    }

    #[test]
    fn single_turn_joins_examples_and_question_but_keeps_the_system_turn() {
        let messages = [
            Message::new(Role::System, "Be brief.", ""),
            Message::new(Role::User, "Q1:", " "),
            Message::new(Role::Assistant, "A1", "\n\n"),
            Message::new(Role::User, "Q2:", ""),
        ];
        assert_eq!(turns(&messages), [(Role::System, "Be brief.".into()), (Role::User, "Q1: A1\n\nQ2:".into())]);
        assert_eq!(turns(&messages[1..]), [(Role::User, "Q1: A1\n\nQ2:".to_owned())]);
    }

    #[test]
    fn an_empty_answer_is_no_answer() {
        let turn = qa_turn("Q".into(), Some(String::new()), " ", "\n\n");
        assert_eq!(turn.len(), 1);
        assert_eq!(turn[0].to_text(), "Q");
        let turn = qa_turn("Q".into(), Some("A".into()), " ", "\n\n");
        assert_eq!(turn.iter().map(Message::to_text).collect::<String>(), "Q A\n\n");
    }
}
