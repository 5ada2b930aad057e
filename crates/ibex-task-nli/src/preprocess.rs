//! Named preprocessing steps: the pieces of lm-eval's `process_doc_nli` (catalan, spanish and galician benches),
//! each applied to one field. A closed set, so a task file cannot run code; a new step is a change with a test.

use ibex_core::python::{general_detokenize, lowercase_first_letter};
use ibex_core::TaskError;

/// Which sentence a step edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The premise.
    Premise,
    /// The hypothesis.
    Hypothesis,
}

/// One preprocessing step, written `name:field` in a task file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// lm-eval's `general_detokenize`: glues `n't`, brackets, quotes and `' . ,` to their neighbours.
    Detokenize(Target),
    /// Python's `str.strip()`.
    Strip(Target),
    /// Drops one final `.`, `,`, `!` or `?`.
    StripFinalPunct(Target),
    /// Lowercases the first character.
    LowercaseFirst(Target),
    /// Appends `.` unless the text ends with one.
    EnsureFinalPeriod(Target),
}

impl Step {
    /// Parses `detokenize:premise` and the like.
    pub fn parse(text: &str) -> Result<Self, TaskError> {
        let unknown = || {
            TaskError::spec(format!(
                "unknown preprocessing step `{text}`; steps are detokenize, strip, strip_final_punct, lowercase_first \
                 and ensure_final_period, each followed by `:premise` or `:hypothesis`"
            ))
        };
        let (name, field) = text.split_once(':').ok_or_else(unknown)?;
        let target = match field {
            "premise" => Target::Premise,
            "hypothesis" => Target::Hypothesis,
            _ => return Err(unknown()),
        };
        Ok(match name {
            "detokenize" => Step::Detokenize(target),
            "strip" => Step::Strip(target),
            "strip_final_punct" => Step::StripFinalPunct(target),
            "lowercase_first" => Step::LowercaseFirst(target),
            "ensure_final_period" => Step::EnsureFinalPeriod(target),
            _ => return Err(unknown()),
        })
    }

    /// Applies the step to its field.
    pub fn apply(&self, premise: &mut String, hypothesis: &mut String) {
        let (target, edit): (Target, fn(&str) -> String) = match *self {
            Step::Detokenize(t) => (t, general_detokenize),
            Step::Strip(t) => (t, |s| s.trim_matches(ibex_core::python::is_space).to_owned()),
            Step::StripFinalPunct(t) => (t, |s| s.strip_suffix(['.', ',', '!', '?']).unwrap_or(s).to_owned()),
            Step::LowercaseFirst(t) => (t, lowercase_first_letter),
            Step::EnsureFinalPeriod(t) => (t, |s| if s.ends_with('.') { s.to_owned() } else { format!("{s}.") }),
        };
        let field = match target {
            Target::Premise => premise,
            Target::Hypothesis => hypothesis,
        };
        *field = edit(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nli_recipe_matches_process_doc_nli() {
        let steps = [
            "detokenize:premise",
            "strip:premise",
            "detokenize:hypothesis",
            "strip:hypothesis",
            "strip_final_punct:premise",
            "lowercase_first:hypothesis",
            "ensure_final_period:hypothesis",
        ];
        let mut premise = " Els nens van jugar fins que va ploure , ".to_owned();
        let mut hypothesis = "Va ploure més tard".to_owned();
        for step in steps {
            Step::parse(step).unwrap().apply(&mut premise, &mut hypothesis);
        }
        assert_eq!(premise, "Els nens van jugar fins que va ploure");
        assert_eq!(hypothesis, "va ploure més tard.");
    }

    #[test]
    fn unknown_steps_are_rejected() {
        assert!(Step::parse("detokenize").is_err());
        assert!(Step::parse("uppercase:premise").is_err());
        assert!(Step::parse("strip:label").is_err());
    }
}
