//! Prompt templates of task files: literal text with `{variable}` slots, checked against the variables a family
//! offers when the file loads, so a typo is an error naming it rather than a silently different prompt.

use crate::TaskError;

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Variable(String),
}

impl Template {
    /// Parses `text`, accepting only `{name}` slots whose name is in `variables`.
    pub fn parse(text: &str, variables: &[&str]) -> Result<Self, TaskError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let close =
                rest[open..].find('}').ok_or_else(|| TaskError::spec(format!("unclosed `{{` in template {text:?}")))?;
            let name = &rest[open + 1..open + close];
            if !variables.contains(&name) {
                let known: Vec<String> = variables.iter().map(|v| format!("{{{v}}}")).collect();
                return Err(TaskError::spec(format!(
                    "unknown template variable `{{{name}}}` in {text:?}; use {}",
                    known.join(" or ")
                )));
            }
            pieces.push(Piece::Variable(name.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self { pieces })
    }

    /// Fills the slots with `value(name)`.
    pub fn render<'a>(&'a self, value: impl Fn(&str) -> &'a str) -> String {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.as_str(),
                Piece::Variable(name) => value(name),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_slots_and_rejects_unknown_variables() {
        let template = Template::parse("Context: {context}\n\nQuestion: {question}", &["context", "question"]).unwrap();
        let rendered = template.render(|name| if name == "context" { "C" } else { "Q" });
        assert_eq!(rendered, "Context: C\n\nQuestion: Q");
        let err = Template::parse("{premise}, right? {hypotesis}", &["premise", "hypothesis"]).unwrap_err();
        assert!(err.to_string().contains("unknown template variable `{hypotesis}`"), "{err}");
        assert!(Template::parse("{premise", &["premise"]).is_err());
    }
}
