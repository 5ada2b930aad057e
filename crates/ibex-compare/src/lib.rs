//! Compares measured results with published numbers, row by row, and says whether each published number holds.
//!
//! A row is consistent when the published value (or range), widened by half a unit of its last published digit,
//! meets the measured value's 95% interval (± 1.96 standard errors); otherwise the measurement is higher or lower.
//! Values stay fractions internally, as lm-eval reports them, and are shown as percentages, labelled.

pub mod published;
mod render;

pub use published::{load, shipped, PublishedError, PublishedFile, PublishedRow};
pub use render::{markdown, svg, terminal_table};

use ibex_core::metrics::{parse_metric_key, stderr_key};
use ibex_core::results::RunResults;
use serde::Serialize;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.96;

/// Whether a published number holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The published value meets the measured 95% interval.
    Consistent,
    /// The measurement is above the published value.
    Higher,
    /// The measurement is below the published value.
    Lower,
    /// Nothing was published for this row.
    NoPublished,
    /// Published, but this model was not measured.
    NotMeasured,
    /// Measured and published, but not under the same conditions (shots, a `--limit`): no verdict.
    NotComparable,
}

impl Verdict {
    /// As a table shows it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Consistent => "consistent",
            Verdict::Higher => "higher",
            Verdict::Lower => "lower",
            Verdict::NoPublished => "no published value",
            Verdict::NotMeasured => "not measured",
            Verdict::NotComparable => "not comparable",
        }
    }
}

/// The verdict for a measured value and its standard error against a published interval.
pub fn verdict(measured: f64, stderr: Option<f64>, published: Option<(f64, f64)>) -> Verdict {
    let Some((low, high)) = published else { return Verdict::NoPublished };
    let margin = Z95 * stderr.unwrap_or(0.0);
    if measured + margin < low {
        Verdict::Lower
    } else if measured - margin > high {
        Verdict::Higher
    } else {
        Verdict::Consistent
    }
}

/// One line of a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ComparisonRow {
    /// Task or group.
    pub task: String,
    /// The metric, with its filter in parentheses unless that is lm-eval's `none` (`exact_match (flexible-extract)`).
    pub metric: String,
    /// Model id as given to `ibex run`, or as the source names it.
    pub model: String,
    /// Measured value (fraction).
    pub measured: Option<f64>,
    /// Its standard error.
    pub stderr: Option<f64>,
    /// Its 95% interval.
    pub interval: Option<(f64, f64)>,
    /// The published row, if any.
    pub published: Option<PublishedRow>,
    /// Its source's name.
    pub source: Option<String>,
    /// Measured minus published (the middle of a published range), as a fraction.
    pub delta: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// How the run was made (`0-shot`, `3-shot, --limit 4`); for a published row nobody measured, its shots if known.
    pub run: String,
    /// Why measured and published cannot be compared, when they cannot.
    pub mismatch: Option<String>,
    /// What reproducing the published number needs (recipe set, lm-eval version, BOS), from its row.
    pub needs: String,
}

/// Whether ibex ships BSC's own version of `task` (`tasks/bsc/…/<task>.yaml`): only then does the recipe set change
/// what the task computes.
fn bsc_redefines(task: &str) -> bool {
    let file = format!("/{task}.yaml");
    ibex_assets::TASKS.iter().any(|(path, _)| path.starts_with("tasks/bsc/") && path.ends_with(&file))
}

/// Why a run cannot reproduce `row` as far as recipes and BOS go, if it cannot: the task file of the wrong recipe set
/// (`task_file`, as the results record it), or the other BOS policy.
fn recipe_mismatch(row: &PublishedRow, task: &str, task_file: Option<&str>, bos: bool) -> Option<String> {
    if let (Some(recipes), Some(file)) = (&row.recipes, task_file) {
        let needs_bsc = recipes == "bsc" && bsc_redefines(task);
        let measured_bsc = file.starts_with("tasks/bsc/");
        if needs_bsc != measured_bsc {
            return Some(if needs_bsc {
                format!("published with BSC's recipe for {task}; measure it with `ibex run --recipes bsc`")
            } else {
                format!("published with lm-eval's recipe for {task}; measured with BSC's (run without --recipes bsc)")
            });
        }
    }
    match row.add_bos_token {
        Some(published) if published != bos => Some(format!(
            "published with BOS {}, measured with BOS {} (`--add-bos-token {published}`)",
            if published { "on" } else { "off" },
            if bos { "on" } else { "off" }
        )),
        _ => None,
    }
}

/// Joins results with published rows on (task, metric, model); published rows no run measured are kept too.
pub fn compare(runs: &[RunResults], published: &[PublishedFile]) -> Vec<ComparisonRow> {
    let mut rows = Vec::new();
    let mut used: Vec<Vec<bool>> = published.iter().map(|file| vec![false; file.rows.len()]).collect();
    for run in runs {
        let model = &run.ibex.model;
        for (task, entry) in &run.results {
            let metrics = &entry.metrics;
            for (key, value) in metrics {
                let Some((metric, filter)) = parse_metric_key(key) else { continue };
                let Some(measured) = value.as_f64() else { continue };
                let stderr = metrics.get(&stderr_key(metric, filter)).and_then(|v| v.as_f64());
                let mut found = None;
                for (f, file) in published.iter().enumerate() {
                    for (r, row) in file.rows.iter().enumerate() {
                        if row.task == *task && row.metric == metric && row.filter == filter && row.model == model.model
                        {
                            used[f][r] = true;
                            found = Some((row.clone(), file.source.name.clone()));
                        }
                    }
                }
                let interval = stderr.map(|se| (measured - Z95 * se, measured + Z95 * se));
                let published_interval = found.as_ref().and_then(|(row, _)| row.interval());
                let delta = found.as_ref().and_then(|(row, _)| midpoint(row)).map(|p| measured - p);
                // The task's own count (a task file may fix it), else the run's flag for older results.
                let shots = run.n_shot.get(task).copied().unwrap_or(model.num_fewshot);
                let chat = model.chat_template_name.is_some();
                // A BOS went before each string when special tokens were on and the tokenizer puts one first.
                let bos = model.add_special_tokens && model.special_tokens.as_ref().is_none_or(|s| !s.first.is_empty());
                let mismatch = found.as_ref().and_then(|(row, _)| match (model.limit, row.shots) {
                    (Some(limit), _) => Some(format!("the run evaluated only the first {limit} documents (--limit)")),
                    (None, Some(published)) if published as usize != shots => {
                        Some(format!("published at {published} shots, measured at {shots}"))
                    }
                    _ if row.apply_chat_template != chat => Some(format!(
                        "published {} the chat template, measured {} it",
                        if row.apply_chat_template { "with" } else { "without" },
                        if chat { "with" } else { "without" }
                    )),
                    _ => {
                        let task_file = run.ibex.tasks.get(task).map(|t| t.task_file.as_str());
                        recipe_mismatch(row, task, task_file, bos)
                    }
                });
                let verdict = match mismatch {
                    Some(_) => Verdict::NotComparable,
                    None => verdict(measured, stderr, published_interval),
                };
                rows.push(ComparisonRow {
                    task: task.clone(),
                    metric: shown_metric(metric, filter),
                    model: model.model.clone(),
                    measured: Some(measured),
                    stderr,
                    interval,
                    verdict,
                    delta,
                    source: found.as_ref().map(|(_, s)| s.clone()),
                    needs: found.as_ref().map_or(String::new(), |(row, _)| row.needs()),
                    published: found.map(|(row, _)| row),
                    run: format!(
                        "{shots}-shot, {} recipes, BOS {}{}{}",
                        model.recipes,
                        if bos { "on" } else { "off" },
                        if chat { ", chat template" } else { "" },
                        model.limit.map_or(String::new(), |limit| format!(", --limit {limit}"))
                    ),
                    mismatch,
                });
            }
        }
    }
    for (file, flags) in published.iter().zip(&used) {
        for (row, _) in file.rows.iter().zip(flags).filter(|(_, used)| !**used) {
            let measured_task = runs.iter().any(|run| run.results.contains_key(&row.task));
            if measured_task {
                rows.push(ComparisonRow {
                    task: row.task.clone(),
                    metric: shown_metric(&row.metric, &row.filter),
                    model: row.model.clone(),
                    measured: None,
                    stderr: None,
                    interval: None,
                    published: Some(row.clone()),
                    source: Some(file.source.name.clone()),
                    delta: None,
                    verdict: Verdict::NotMeasured,
                    run: row.shots.map_or(String::new(), |s| format!("{s}-shot")),
                    mismatch: None,
                    needs: row.needs(),
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.task, &a.metric, &a.model).cmp(&(&b.task, &b.metric, &b.model)));
    rows
}

/// A metric as tables show it: with its filter beside it unless that is lm-eval's `none`.
fn shown_metric(metric: &str, filter: &str) -> String {
    match filter {
        ibex_core::NO_FILTER => metric.to_owned(),
        filter => format!("{metric} ({filter})"),
    }
}

fn midpoint(row: &PublishedRow) -> Option<f64> {
    match (row.value, row.range) {
        (_, Some([low, high])) => Some((low + high) / 2.0),
        (value, None) => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(value: f64, decimals: u32) -> Option<(f64, f64)> {
        PublishedRow {
            task: "t".into(),
            metric: "acc".into(),
            filter: "none".into(),
            model: "m".into(),
            value: Some(value),
            range: None,
            decimals,
            shots: None,
            harness: None,
            apply_chat_template: false,
            recipes: None,
            lm_eval_version: None,
            add_bos_token: None,
            reading: None,
            verified: true,
            note: None,
        }
        .interval()
    }

    #[test]
    fn verdict_edges() {
        // 0.50 ± 1.96·0.01 = [0.4804, 0.5196]; 51.77% published with 2 decimals is [0.517695, 0.517705].
        assert_eq!(verdict(0.50, Some(0.01), point(0.5177, 2)), Verdict::Consistent);
        assert_eq!(verdict(0.49, Some(0.01), point(0.5177, 2)), Verdict::Lower);
        assert_eq!(verdict(0.54, Some(0.01), point(0.5177, 2)), Verdict::Higher);
        // Rounding widens: 66% (0 decimals) stands for [0.655, 0.665].
        assert_eq!(verdict(0.6549, Some(0.0), point(0.66, 0)), Verdict::Lower);
        assert_eq!(verdict(0.6551, Some(0.0), point(0.66, 0)), Verdict::Consistent);
        // Without a stderr the interval is the point itself.
        assert_eq!(verdict(0.70, None, point(0.66, 0)), Verdict::Higher);
        assert_eq!(verdict(0.70, Some(0.02), None), Verdict::NoPublished);
    }

    #[test]
    fn ranges_are_consistent_anywhere_inside_and_rounded_at_both_ends() {
        let range = PublishedRow {
            value: None,
            range: Some([0.93, 0.94]),
            decimals: 0,
            ..serde_json::from_value(
                serde_json::json!({"task": "t", "metric": "f1", "model": "m", "value": 0.0, "decimals": 0}),
            )
            .unwrap()
        }
        .interval();
        assert_eq!(range, Some((0.925, 0.945)));
        assert_eq!(verdict(0.935, Some(0.0), range), Verdict::Consistent);
        assert_eq!(verdict(0.8153, Some(0.004), range), Verdict::Lower);
        assert_eq!(verdict(0.946, Some(0.0), range), Verdict::Higher);
    }
}
