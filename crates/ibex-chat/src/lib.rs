//! Chat templates as transformers reads and renders them, for lm-eval's `--apply_chat_template`.
//!
//! Reading mirrors `PreTrainedTokenizerBase.from_pretrained` (transformers 4.57, tokenization_utils_base.py):
//! chat_template.jinja when the checkpoint has it, else tokenizer_config.json's `chat_template` (a string, or a list
//! of `{name, template}`). Choosing one mirrors lm-eval's `TemplateLM.chat_template` (lm_eval/api/model.py).
//! Rendering mirrors `render_jinja_template` and `_compile_jinja_template` (transformers/utils/chat_template_utils.py):
//! Jinja with `trim_blocks`, `lstrip_blocks` and loop controls, the globals `raise_exception` and `strftime_now`, a
//! `tojson` filter that writes JSON as Python's `json.dumps` does, Python's string and dict methods (minijinja's
//! pycompat), and the variables `messages`, `tools`, `documents`, `add_generation_prompt` and the tokenizer's
//! special tokens (`bos_token`, …). lm-eval's `HFLM.apply_chat_template` retries without the system turn when the
//! template fails; so does [`ChatTemplate::apply`].

use ibex_core::prompt::{ApplyChatTemplate, ChatMessage, Role};
use ibex_core::TokenizerFiles;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The name of the template lm-eval renders when a tokenizer has several.
const DEFAULT_NAME: &str = "default";
/// The name the compiled template is registered under; errors cite it with a line number.
const TEMPLATE_NAME: &str = "chat_template";

/// A chat template could not be read, chosen or compiled.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The tokenizer has no template.
    #[error(
        "the tokenizer has no chat template (no chat_template.jinja, no `chat_template` in tokenizer_config.json); \
         run without --apply-chat-template, or use a checkpoint that ships one"
    )]
    Missing,
    /// The template asked for cannot be used.
    #[error("{0}")]
    Choice(String),
    /// The template is not valid Jinja, or uses what ibex cannot render.
    #[error("the chat template `{name}` in {file} cannot be compiled: {message}")]
    Syntax {
        /// The template's name.
        name: String,
        /// The file it came from.
        file: String,
        /// minijinja's message, with the line.
        message: String,
    },
}

/// A compiled chat template with the variables transformers gives it.
pub struct ChatTemplate {
    name: String,
    source: String,
    env: Environment<'static>,
    special_tokens: Value,
    /// Set once a conversation rendered only without its system turn (lm-eval warns each time).
    dropped_system: std::sync::atomic::AtomicBool,
}

impl ChatTemplate {
    /// Reads the tokenizer's templates and picks the one lm-eval renders for `--apply_chat_template [name]`: the
    /// only template, or the one named `default` when there are several. lm-eval 0.4.13 records `name` but renders
    /// the default template whatever it is, so another name is refused rather than silently ignored.
    pub fn load(tokenizer: &TokenizerFiles, jinja_file: Option<&Path>, name: Option<&str>) -> Result<Self, ChatError> {
        let settings = tokenizer
            .settings()
            .map_err(|e| ChatError::Read { path: "tokenizer settings".into(), message: e.to_string() })?;
        let origin = jinja_file.map_or("tokenizer_config.json".to_owned(), |p| p.display().to_string());
        let templates = match jinja_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ChatError::Read { path: path.display().to_string(), message: e.to_string() })?;
                Templates::Single(text)
            }
            None => config_templates(settings.get("chat_template"))?,
        };
        let (chosen, source) = match templates {
            Templates::None => return Err(ChatError::Missing),
            Templates::Single(text) => (DEFAULT_NAME.to_owned(), text),
            // transformers' `get_chat_template` takes the one named `default`, however many there are.
            Templates::Named(named) => {
                let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
                let default = named.iter().find(|(n, _)| n == DEFAULT_NAME).ok_or_else(|| {
                    ChatError::Choice(format!(
                        "the tokenizer's chat templates are named {}; none is named `default`, the one lm-eval renders",
                        names.join(", ")
                    ))
                })?;
                (DEFAULT_NAME.to_owned(), default.1.clone())
            }
        };
        if let Some(name) = name.filter(|n| *n != chosen) {
            return Err(ChatError::Choice(format!(
                "--apply-chat-template {name}: lm-eval 0.4.13 renders the tokenizer's `{chosen}` template whatever \
                 name it is given, so ibex renders that one too; drop the name"
            )));
        }
        let special_tokens = tokenizer
            .special_tokens_map()
            .map_err(|e| ChatError::Read { path: "tokenizer settings".into(), message: e.to_string() })?;
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, generation_blocks_as_if(&source)).map_err(|e| ChatError::Syntax {
            name: chosen.clone(),
            file: origin.clone(),
            message: describe(&e),
        })?;
        Ok(Self {
            name: chosen,
            source,
            env,
            special_tokens: Value::from_serialize(&special_tokens),
            dropped_system: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The chosen template's name (`default` for a single template), as lm-eval records it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's text (lm-eval's `chat_template` in results).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether some conversation rendered only once its system turn was removed (the system instruction then is not
    /// in that prompt, as in lm-eval, which logs a warning).
    pub fn dropped_system_turn(&self) -> bool {
        self.dropped_system.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// SHA-256 of the template's text, hex (lm-eval's `chat_template_sha`).
    pub fn sha256(&self) -> String {
        format!("{:x}", Sha256::digest(self.source.as_bytes()))
    }

    /// Renders `messages` with the assistant turn opened (`add_generation_prompt=True`).
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, Error> {
        let template = self.env.get_template(TEMPLATE_NAME)?;
        let mut context = serde_json::Map::new();
        context.insert("messages".into(), serde_json::to_value(messages).unwrap_or_default());
        context.insert("tools".into(), serde_json::Value::Null);
        context.insert("documents".into(), serde_json::Value::Null);
        context.insert("add_generation_prompt".into(), serde_json::Value::Bool(true));
        let context = minijinja::context! { ..Value::from_serialize(&context), ..self.special_tokens.clone() };
        template.render(context)
    }
}

impl ApplyChatTemplate for ChatTemplate {
    /// As lm-eval's `HFLM.apply_chat_template`: a template that fails is tried again without the system turn (many
    /// templates refuse one); the error names the construct when that fails too.
    fn apply(&self, messages: &[ChatMessage]) -> Result<String, String> {
        match self.render(messages) {
            Ok(text) => Ok(text),
            Err(first) => {
                let without_system: Vec<ChatMessage> =
                    messages.iter().filter(|m| m.role != Role::System).cloned().collect();
                let rendered = self.render(&without_system);
                if rendered.is_ok() && without_system.len() < messages.len() {
                    self.dropped_system.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                rendered.map_err(|second| {
                    let retried = if without_system.len() < messages.len() {
                        format!("; without the system turn: {}", describe(&second))
                    } else {
                        String::new()
                    };
                    format!("chat template `{}` failed: {}{retried}", self.name, describe(&first))
                })
            }
        }
    }
}

/// A tokenizer's chat templates.
enum Templates {
    /// None at all.
    None,
    /// One template (a string, or chat_template.jinja).
    Single(String),
    /// Named templates (a list of `{name, template}`).
    Named(Vec<(String, String)>),
}

/// tokenizer_config.json's `chat_template`: absent, one string, or a list of `{name, template}`.
fn config_templates(value: Option<&serde_json::Value>) -> Result<Templates, ChatError> {
    let malformed = || ChatError::Read {
        path: "tokenizer_config.json".into(),
        message: "`chat_template` is neither a string, a list of {\"name\", \"template\"} nor a name → template map"
            .into(),
    };
    match value {
        None | Some(serde_json::Value::Null) => Ok(Templates::None),
        Some(serde_json::Value::String(text)) => Ok(Templates::Single(text.clone())),
        Some(serde_json::Value::Array(entries)) => entries
            .iter()
            .map(|entry| {
                let field = |key: &str| entry.get(key).and_then(|v| v.as_str()).map(str::to_owned);
                field("name").zip(field("template")).ok_or_else(malformed)
            })
            .collect::<Result<_, _>>()
            .map(Templates::Named),
        // The form a tokenizer holds in memory, which some configs carry too.
        Some(serde_json::Value::Object(named)) => named
            .iter()
            .map(|(name, template)| Ok((name.clone(), template.as_str().ok_or_else(malformed)?.to_owned())))
            .collect::<Result<_, _>>()
            .map(Templates::Named),
        Some(_) => Err(malformed()),
    }
}

/// minijinja's message and the template line, on one line.
fn describe(error: &Error) -> String {
    let mut text = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// transformers' `{% generation %}…{% endgeneration %}` (its `AssistantTracker` extension, which renders the block
/// as it is) as `{% if true %}…{% endif %}`, whitespace control kept.
fn generation_blocks_as_if(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(length) = rest[start..].find("%}") else { break };
        let tag = &rest[start..start + length + 2];
        let inner = &tag[2..tag.len() - 2];
        let (open, close) = (inner.starts_with(['-', '+']), inner.ends_with(['-', '+']));
        let word = inner.trim_matches(['-', '+']).trim();
        out.push_str(&rest[..start]);
        match word {
            "generation" | "endgeneration" => {
                let statement = if word == "generation" { "if true" } else { "endif" };
                let marker = |present: bool, at: usize| if present { &inner[at..at + 1] } else { "" };
                out.push_str(&format!(
                    "{{%{} {statement} {}%}}",
                    marker(open, 0),
                    marker(close, inner.len().saturating_sub(1))
                ));
            }
            _ => out.push_str(tag),
        }
        rest = &rest[start + length + 2..];
    }
    out.push_str(rest);
    out
}

/// Values printed as Python prints them (`None`, `True`, `False`), where minijinja would write `none`, `true`.
fn python_formatter(out: &mut minijinja::Output, state: &minijinja::State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        minijinja::value::ValueKind::None => out.write_str("None").map_err(Error::from),
        minijinja::value::ValueKind::Bool => {
            out.write_str(if value.is_true() { "True" } else { "False" }).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// transformers' `raise_exception(message)`: the template refuses its input.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("the template raised: {message}")))
}

/// transformers' `strftime_now(format)`: the local time, formatted as Python's `strftime` does.
fn strftime_now(format: String) -> Result<String, Error> {
    use std::fmt::Write;
    let mut text = String::new();
    write!(text, "{}", chrono::Local::now().format(&format))
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("strftime_now: invalid format {format:?}")))?;
    Ok(text)
}

/// transformers' `tojson` filter: Python's `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, without HTML escaping.
fn tojson(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (_, Some(s)) => Some(s.to_owned()),
            _ => {
                return Err(Error::new(ErrorKind::InvalidOperation, "tojson: indent is neither a number nor a string"))
            }
        },
    };
    let separators = match separators.as_deref() {
        None => None,
        Some([item, key]) => Some((item.clone(), key.clone())),
        Some(_) => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be two strings")),
    };
    let json =
        serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(ibex_core::python_json::dumps(
        &json,
        &ibex_core::python_json::Options {
            ensure_ascii: ensure_ascii.unwrap_or(false),
            indent,
            separators,
            sort_keys: sort_keys.unwrap_or(false),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> ChatTemplate {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tokenizer_config.json");
        let settings = serde_json::json!({"tokenizer_class": "LlamaTokenizer", "chat_template": text});
        std::fs::write(&config, settings.to_string()).unwrap();
        let files = TokenizerFiles { settings: vec![config], ..Default::default() };
        ChatTemplate::load(&files, None, None).unwrap()
    }

    fn user(text: &str) -> ChatMessage {
        ChatMessage { role: Role::User, content: text.into() }
    }

    #[test]
    fn blocks_trim_and_special_tokens_are_variables() {
        let t = template("{{ bos_token }}\n{% for m in messages %}\n  {{ m.role }}:{{ m['content'] }}|\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}");
        assert_eq!(t.render(&[user("hi"), user("yo")]).unwrap(), "<s>\n  user:hi|\n  user:yo|\nA:");
    }

    #[test]
    fn python_methods_and_loop_controls_work() {
        let t = template("{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}{{ m.content.strip().upper() }}{% endfor %}");
        assert_eq!(t.render(&[user("  a b "), user("c")]).unwrap(), "A B");
    }

    #[test]
    fn a_template_that_refuses_the_system_turn_is_retried_without_it() {
        let t = template("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}{% endif %}{{ m.content }}{% endfor %}");
        let system = ChatMessage { role: Role::System, content: "S".into() };
        assert_eq!(t.apply(&[system, user("U")]).unwrap(), "U");
        let t = template("{{ raise_exception('never') }}");
        let err = t.apply(&[user("U")]).unwrap_err();
        assert!(err.contains("the template raised: never"), "{err}");
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let t = template("{{ messages[0] | tojson }} {{ messages | tojson(indent=2) }}");
        let rendered = t.render(&[user("é\"<")]).unwrap();
        assert_eq!(
            rendered,
            "{\"role\": \"user\", \"content\": \"é\\\"<\"} [\n  {\n    \"role\": \"user\",\n    \"content\": \"é\\\"<\"\n  }\n]"
        );
    }

    #[test]
    fn a_template_ibex_cannot_compile_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let jinja = dir.path().join("chat_template.jinja");
        std::fs::write(&jinja, "line one\n{% for m in messages %}{{ m.content }").unwrap();
        let err = ChatTemplate::load(&TokenizerFiles::default(), Some(&jinja), None).err().unwrap().to_string();
        assert!(
            err.starts_with("the chat template `default` in ")
                && err.contains("chat_template.jinja cannot be compiled:"),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn generation_blocks_and_python_values_render_as_transformers_renders_them() {
        let t = template("{%- for m in messages %}{% generation -%} {{ m.content }}|{{ none }}|{{ m.x is defined }} {%- endgeneration %}{% endfor %}");
        assert_eq!(t.render(&[user("a")]).unwrap(), "a|None|False");
    }

    #[test]
    fn several_templates_render_the_default_and_refuse_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tokenizer_config.json");
        let templates = serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]});
        std::fs::write(&config, templates.to_string()).unwrap();
        let files = TokenizerFiles { settings: vec![config], ..Default::default() };
        assert_eq!(ChatTemplate::load(&files, None, None).unwrap().render(&[]).unwrap(), "D");
        let err = ChatTemplate::load(&files, None, Some("tool_use")).err().unwrap().to_string();
        assert!(err.contains("renders the tokenizer's `default` template"), "{err}");
        assert!(matches!(ChatTemplate::load(&TokenizerFiles::default(), None, None), Err(ChatError::Missing)));
        // One named template that is not `default`: transformers refuses it too.
        let only = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "T"}]});
        std::fs::write(dir.path().join("tokenizer_config.json"), only.to_string()).unwrap();
        let err = ChatTemplate::load(&files, None, None).err().unwrap().to_string();
        assert!(err.contains("none is named `default`"), "{err}");
    }
}
