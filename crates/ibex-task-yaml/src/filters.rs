//! lm-eval's `filter_list`: named pipelines that turn a generation into the answer a task scores
//! (`lm_eval/filters/`: `FilterEnsemble` in `api/filter.py`, the filters in `selection.py`, `extraction.py` and
//! `transformation.py`). Each pipeline is scored and reported on its own, under its name (`exact_match,strict-match`).
//!
//! A filter sees each request's list of responses (one per repeat; ibex runs one) and the pipeline must end with
//! `take_first`, which leaves the single answer: lm-eval hands any other result to the metrics as a list, and a list
//! filter after `take_first` walks the answer's characters, neither of which gives a score worth reporting.

use crate::task::python_regex;
use ibex_core::python::is_space;
use serde_json::Value as Json;

/// One step of a pipeline, before the final `take_first`.
#[derive(Debug)]
enum Step {
    /// `regex` (`RegexFilter`): the `group_select`-th of Python's `re.findall` matches (of several groups, its
    /// first non-empty group), stripped; `fallback` when nothing matches.
    Regex { regex: fancy_regex::Regex, group_select: i64, fallback: String },
    /// `remove_whitespace` (`WhitespaceFilter`): Python's `str.strip()`.
    RemoveWhitespace,
    /// `lowercase`: Python's `str.lower()`.
    Lowercase,
    /// `uppercase`: Python's `str.upper()`.
    Uppercase,
    /// `majority_vote` over one response, or `take_first_k` with k = 1: the response itself.
    Identity,
}

/// A named pipeline (`FilterEnsemble`).
#[derive(Debug)]
pub(crate) struct FilterEnsemble {
    /// Its name: the second half of the results keys it scores.
    pub(crate) name: String,
    steps: Vec<Step>,
}

impl FilterEnsemble {
    /// lm-eval's default when a task names no filters: `none`, a lone `take_first`.
    pub(crate) fn none() -> Self {
        FilterEnsemble { name: ibex_core::NO_FILTER.to_owned(), steps: Vec::new() }
    }

    /// The answer the pipeline makes of a generation.
    pub(crate) fn apply(&self, generation: &str) -> String {
        let mut text = generation.to_owned();
        for step in &self.steps {
            text = match step {
                Step::Regex { regex, group_select, fallback } => extract(regex, *group_select, fallback, &text),
                Step::RemoveWhitespace => python_strip(&text).to_owned(),
                Step::Lowercase => text.to_lowercase(),
                Step::Uppercase => text.to_uppercase(),
                Step::Identity => text,
            };
        }
        text
    }
}

/// Python's `str.strip()`.
fn python_strip(text: &str) -> &str {
    text.trim_matches(is_space)
}

/// Python's `re.findall`: whole matches without groups, the group with one, every group (unmatched ones empty)
/// with more. Matches are found as CPython's `sre` finds them: an empty match may follow a non-empty one where it
/// ends, and after an empty match the next one starts a character later (fancy-regex alone skips the former).
fn findall(regex: &fancy_regex::Regex, text: &str) -> Vec<Vec<String>> {
    let groups = regex.captures_len() - 1;
    let mut found = Vec::new();
    let (mut pos, mut after_empty) = (0, false);
    while pos <= text.len() {
        let Ok(Some(mut captures)) = regex.captures_from_pos(text, pos) else { break };
        let mut whole = captures.get(0).map_or(pos..pos, |m| m.range());
        if after_empty && whole.is_empty() && whole.start == pos {
            let Some(next) = text[pos..].chars().next().map(|c| pos + c.len_utf8()) else { break };
            let Ok(Some(later)) = regex.captures_from_pos(text, next) else { break };
            captures = later;
            whole = captures.get(0).map_or(next..next, |m| m.range());
        }
        let texts = |range: std::ops::RangeInclusive<usize>| -> Vec<String> {
            range.map(|i| captures.get(i).map_or(String::new(), |m| m.as_str().to_owned())).collect()
        };
        found.push(if groups == 0 { texts(0..=0) } else { texts(1..=groups) });
        after_empty = whole.is_empty();
        pos = whole.end;
    }
    found
}

/// `RegexFilter.apply` on one response.
fn extract(regex: &fancy_regex::Regex, group_select: i64, fallback: &str, text: &str) -> String {
    let groups = regex.captures_len() - 1;
    let found = findall(regex, text);
    let len = found.len() as i64;
    let index = if group_select < 0 { len + group_select } else { group_select };
    let Some(chosen) = usize::try_from(index).ok().and_then(|i| found.get(i)) else {
        return fallback.to_owned();
    };
    let picked = match chosen.as_slice() {
        [one] if groups <= 1 => one.as_str(),
        several => several.iter().find(|g| !g.is_empty()).map_or(fallback, String::as_str),
    };
    python_strip(picked).to_owned()
}

/// The task's `filter_list` read as lm-eval's `build_filter_ensemble` builds it; an error says which filter or
/// setting ibex does not run and why.
pub(crate) fn filter_list(value: &Json) -> Result<Vec<FilterEnsemble>, String> {
    let Json::Array(entries) = value else {
        return Err("filter_list is a list of {name: …, filter: [{function: …}, …]}".into());
    };
    entries
        .iter()
        .map(|entry| {
            let name = entry.get("name").and_then(Json::as_str).ok_or("a filter_list entry has no `name`")?;
            let Some(Json::Array(functions)) = entry.get("filter") else {
                return Err(format!("filter `{name}` lists no functions under `filter:`"));
            };
            let mut steps = Vec::new();
            for (i, function) in functions.iter().enumerate() {
                let last = i + 1 == functions.len();
                let kind = match function.get("function") {
                    Some(Json::String(kind)) => kind.as_str(),
                    Some(hook) if hook.get(crate::config::FUNCTION_KEY).is_some() => {
                        return Err(format!(
                            "filter `{name}`: `function: !function {}` (at {}) has no Rust implementation in ibex, \
                             which runs no Python; it has take_first, regex, remove_whitespace, lowercase, uppercase, \
                             majority_vote and take_first_k",
                            hook[crate::config::FUNCTION_KEY].as_str().unwrap_or_default(),
                            hook[crate::config::AT_KEY].as_str().unwrap_or_default()
                        ))
                    }
                    _ => return Err(format!("filter `{name}`: an entry names no `function`")),
                };
                let options = |allowed: &[&str]| match function
                    .as_object()
                    .and_then(|o| o.keys().find(|k| *k != "function" && !allowed.contains(&k.as_str())))
                {
                    Some(key) => Err(format!("filter `{name}`: {kind} takes no `{key}`")),
                    None => Ok(()),
                };
                match (kind, last) {
                    ("take_first", true) => options(&[])?,
                    ("take_first", false) => {
                        return Err(format!(
                            "filter `{name}`: take_first comes last (lm-eval would run the next filter over the \
                             answer's characters)"
                        ))
                    }
                    (_, true) => {
                        return Err(format!(
                            "filter `{name}` does not end with take_first, so lm-eval would score a list of answers"
                        ))
                    }
                    ("regex", false) => {
                        options(&["regex_pattern", "group_select", "fallback"])?;
                        let pattern = match function.get("regex_pattern") {
                            None => r"#### (\-?[0-9\.\,]+)",
                            Some(Json::String(pattern)) => pattern.as_str(),
                            Some(other) => return Err(format!("filter `{name}`: regex_pattern {other} is not text")),
                        };
                        let regex = python_regex(pattern)
                            .map_err(|e| format!("filter `{name}`: `{pattern}` is not a regex ibex reads: {e}"))?;
                        let group_select = match function.get("group_select") {
                            None => 0,
                            Some(Json::Number(n)) if matches!(n.as_i64(), Some(0 | -1)) => n.as_i64().unwrap_or(0),
                            Some(other) => {
                                return Err(format!(
                                    "filter `{name}`: group_select {other} is not run (0 or -1: lm-eval fails on a \
                                     response with fewer matches)"
                                ))
                            }
                        };
                        let fallback = match function.get("fallback") {
                            None => "[invalid]".to_owned(),
                            Some(Json::String(fallback)) => fallback.clone(),
                            Some(other) => return Err(format!("filter `{name}`: fallback {other} is not text")),
                        };
                        steps.push(Step::Regex { regex, group_select, fallback });
                    }
                    ("remove_whitespace", false) => {
                        options(&[])?;
                        steps.push(Step::RemoveWhitespace);
                    }
                    ("lowercase", false) => {
                        options(&[])?;
                        steps.push(Step::Lowercase);
                    }
                    ("uppercase", false) => {
                        options(&[])?;
                        steps.push(Step::Uppercase);
                    }
                    ("majority_vote", false) => {
                        options(&[])?;
                        steps.push(Step::Identity);
                    }
                    ("take_first_k", false) if function.get("k").and_then(Json::as_u64) == Some(1) => {
                        options(&["k"])?;
                        steps.push(Step::Identity);
                    }
                    ("take_first_k", false) => {
                        return Err(format!("filter `{name}`: take_first_k needs k responses; ibex makes one"))
                    }
                    (other, false) => {
                        return Err(format!(
                            "filter `{name}`: `{other}` is not a filter ibex runs (it has take_first, regex, \
                             remove_whitespace, lowercase, uppercase, majority_vote and take_first_k)"
                        ))
                    }
                }
            }
            Ok(FilterEnsemble { name: name.to_owned(), steps })
        })
        .collect::<Result<Vec<_>, String>>()
        .and_then(|ensembles| {
            if ensembles.is_empty() {
                return Err("filter_list names no filters".into());
            }
            // lm-eval keys answers by the filter's name: a second pipeline of one name overwrites the first's.
            match ensembles.iter().enumerate().find(|(i, e)| ensembles[..*i].iter().any(|f| f.name == e.name)) {
                Some((_, twice)) => {
                    Err(format!("filter_list names `{}` twice; give each filter its own name", twice.name))
                }
                None => Ok(ensembles),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(filter: Json) -> FilterEnsemble {
        filter_list(&json!([{"name": "f", "filter": [filter, {"function": "take_first"}]}])).unwrap().remove(0)
    }

    /// Values from Python 3.11's `re.findall` through lm-eval 0.4.13's `RegexFilter`.
    #[test]
    fn regex_filter_selects_as_findall_does() {
        let first = one(json!({"function": "regex", "regex_pattern": "(-?[0-9]+)"}));
        assert_eq!(first.apply("It is 12, not -7."), "12");
        assert_eq!(first.apply("no digits"), "[invalid]");
        let last = one(json!({"function": "regex", "regex_pattern": "(-?[0-9]+)", "group_select": -1}));
        assert_eq!(last.apply("It is 12, not -7."), "-7");
        // Two groups: findall gives tuples; the first non-empty group, stripped.
        let tuple = one(json!({"function": "regex", "regex_pattern": "answer: (\\w+)|result:( \\w+ )"}));
        assert_eq!(tuple.apply("result: nine  then answer: ten"), "nine");
        // No group: the whole match; the default pattern is GSM8K's.
        assert_eq!(one(json!({"function": "regex", "regex_pattern": "[a-z]+!"})).apply("Go now! ok!"), "now!");
        assert_eq!(one(json!({"function": "regex"})).apply("so #### -1,200."), "-1,200.");
        let fallback = one(json!({"function": "regex", "regex_pattern": "x(y)", "fallback": "?"}));
        assert_eq!(fallback.apply("zzz"), "?");
        // Tuples of empty groups fall back, stripped; -1 takes the last tuple's first non-empty group.
        let empty = one(json!({"function": "regex", "regex_pattern": "(x)?(y)?", "fallback": " none "}));
        assert_eq!(empty.apply("zz"), "none");
        let last = one(json!({"function": "regex", "regex_pattern": "(a)|(b)", "group_select": -1}));
        assert_eq!(last.apply("cab"), "b");
    }

    /// CPython: re.findall(r'(\d*)', 'a12b') == ['', '12', '', ''] and re.findall(r'x*', 'axxb') == ['', 'xx', '', ''].
    #[test]
    fn empty_matches_are_found_as_pythons_findall_finds_them() {
        let all = |pattern: &str, text: &str| findall(&python_regex(pattern).unwrap(), text).concat();
        assert_eq!(all(r"(\d*)", "a12b"), ["", "12", "", ""]);
        assert_eq!(all("x*", "axxb"), ["", "xx", "", ""]);
        assert_eq!(all("(a)|(b)", "cab"), ["a", "", "", "b"]);
        let last_digits = one(json!({"function": "regex", "regex_pattern": r"(\d*)", "group_select": -1}));
        assert_eq!(last_digits.apply("a12"), "");
    }

    #[test]
    fn text_filters_run_in_order() {
        let list = json!([{"name": "clean", "filter": [
            {"function": "remove_whitespace"}, {"function": "uppercase"}, {"function": "majority_vote"},
            {"function": "take_first"}]}]);
        assert_eq!(filter_list(&list).unwrap()[0].apply("\u{1f} Ab c\n"), "AB C");
        assert_eq!(one(json!({"function": "lowercase"})).apply("ÀB"), "àb");
        assert_eq!(FilterEnsemble::none().apply(" as is "), " as is ");
    }

    #[test]
    fn pipelines_lm_eval_would_not_score_as_one_answer_are_refused() {
        let refuse = |list: Json| filter_list(&list).unwrap_err();
        let err = refuse(json!([{"name": "a", "filter": [{"function": "lowercase"}]}]));
        assert!(err.contains("filter `a` does not end with take_first"), "{err}");
        let err = refuse(json!([{"name": "b", "filter": [{"function": "take_first"}, {"function": "lowercase"}]}]));
        assert!(err.contains("take_first comes last"), "{err}");
        let err = refuse(json!([{"name": "c", "filter": [{"function": "map"}, {"function": "take_first"}]}]));
        assert!(err.contains("`map` is not a filter ibex runs"), "{err}");
        let err = refuse(json!([{"name": "d", "filter": [
            {"function": "regex", "group_select": 2}, {"function": "take_first"}]}]));
        assert!(err.contains("group_select 2 is not run"), "{err}");
        let hook = json!({"!function": "utils.MultiChoiceRegexFilter", "!folder": "mmlu", "!dir": "/x"});
        let err = refuse(json!([{"name": "e", "filter": [{"function": hook}, {"function": "take_first"}]}]));
        assert!(err.contains("`function: !function utils.MultiChoiceRegexFilter` (at "), "{err}");
        assert!(err.contains(") has no Rust implementation in ibex"), "{err}");
    }
}
