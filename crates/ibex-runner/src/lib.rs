//! Runs a [`Plan`] against any [`LanguageModel`]. Data flows one way: flags → [`Plan`] (tasks, data, documents,
//! requests, all resolved before a weight loads) → the model (text in, answers out) → scores → results. The runner
//! never names a backend: the binary builds the model and hands it over.
//!
//! Each finished task is written to disk at once (its sample log, then the results file with every task so far), in
//! lm-eval's files and layout, so a long run never loses finished work.

mod configs;
mod error;
mod fewshot;
mod files;
mod journal;
mod merge;
mod plan;
mod registry;
mod report;
mod samples;
mod schedule;

pub use configs::{model_recipe, suite_tasks, ModelRecipe};
pub use error::RunError;
pub use ibex_task_yaml::Recipes;
pub use journal::journal_file_name;
pub use merge::merge;
pub use plan::{ChatSettings, DataOverride, Plan, PlannedTask, RunSettings, SplitSource};
pub use registry::{Entry, Group, Registry, RegistryError};
pub use report::{check_tables, fetched_table, placement_table, plan_tables, results_table};

use ibex_core::metrics::{group_aggregate, metric_key, stderr_key, Aggregate};
use ibex_core::results::{
    results_file_name, samples_file_name, ModelRecord, ResultEntry, RunResults, SampleCounts, TaskRecord,
};
use ibex_core::{LanguageModel, Metric, SampleScore};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Runs every task of `plan` on `model`, writing as it goes into `plan.output`: a sample log per finished task and
/// `results_<date>.json` with every task so far. `record` describes the model as it was loaded
/// ([`Plan::model_record`], with its parameter count).
pub fn run(plan: &Plan, model: &mut dyn LanguageModel, record: ModelRecord) -> Result<RunResults, RunError> {
    let start = Instant::now();
    std::fs::create_dir_all(&plan.output).map_err(|source| RunError::Write { path: plan.output.clone(), source })?;
    let mut journal = journal::Journal::open(&plan.output, &plan.fingerprint(), plan.overwrite, files::now())?;
    let date = journal.date().clone();
    let results_path = plan.output.join(results_file_name(&date.id));
    let mut results = files::empty_results(plan, record, date.unix);
    let mut aggregates: BTreeMap<String, TaskAggregates> = BTreeMap::new();
    for task in &plan.tasks {
        let name = task.name().to_owned();
        let (task_start, tokens_before, computed_before) =
            (Instant::now(), model.tokens_processed(), model.tokens_computed());
        let responses = schedule::answer(task, model, &mut journal)?;
        let (seconds, tokens) = (task_start.elapsed().as_secs_f64(), model.tokens_processed() - tokens_before);
        let tokens_computed = model.tokens_computed() - computed_before;
        let scores: Vec<Vec<SampleScore>> =
            task.docs.iter().zip(&responses).map(|(doc, resps)| task.entry.task.score(doc, resps)).collect();
        if plan.log_samples {
            let path = plan.output.join(samples_file_name(&name, &date.id));
            let records = samples::write_samples(&path, task, &responses, &scores)?;
            results.task_hashes.insert(name.clone(), samples::task_hash(&records));
        }
        let scored: Vec<DocScores> = task
            .docs
            .iter()
            .zip(&scores)
            .flat_map(|(doc, scores)| scores.iter().map(|s| (doc.id, s.filter.as_str(), &s.metrics)))
            .collect();
        let filters = task.entry.task.filters();
        let task_aggregates = aggregate_task(&name, task.entry.task.metrics(), &filters, &scored)?;
        results.results.insert(name.clone(), result_entry(&name, &task_aggregates, task.docs.len()));
        results.configs.insert(name.clone(), files::task_config(task, task.num_fewshot));
        results.n_shot.insert(name.clone(), task.num_fewshot);
        results.versions.insert(name.clone(), task.entry.task.version());
        results.n_samples.insert(name.clone(), SampleCounts { original: task.split_rows, effective: task.docs.len() });
        results.ibex.tasks.insert(
            name.clone(),
            TaskRecord {
                task_file: task.entry.source.clone(),
                task_file_sha256: task.entry.sha256.clone(),
                split: task.eval.split.clone(),
                data_file: task.eval.describe(),
                dataset: task.eval.dataset.clone(),
                n: task.docs.len(),
                seconds,
                tokens,
                tokens_computed,
            },
        );
        let directions = task.entry.task.metrics().iter().map(|m| (m.name.to_owned(), m.higher_is_better)).collect();
        results.higher_is_better.insert(name.clone(), directions);
        aggregates.insert(name, (task.docs.len(), task_aggregates));
        results.config.batch_sizes = model.batch_sizes();
        set_time(&mut results, start.elapsed().as_secs_f64());
        write_json(&results_path, &results)?;
    }
    aggregate_groups(&plan.groups, &aggregates, &mut results)?;
    set_time(&mut results, start.elapsed().as_secs_f64());
    results.ibex.complete = true;
    write_json(&results_path, &results)?;
    Ok(results)
}

/// The evaluation's wall time, in lm-eval's string and ibex's number.
fn set_time(results: &mut RunResults, seconds: f64) {
    results.total_evaluation_time_seconds = ibex_core::python::float_repr(seconds);
    results.ibex.seconds = seconds;
}

/// A metric's value under a filter: lm-eval's `(metric, filter)` key.
type Scored = ((String, String), Aggregate);

/// A finished task's document count and metrics, kept for its groups.
type TaskAggregates = (usize, Vec<Scored>);

/// One document's per-sample items under one filter: (document id, filter, metric → item).
type DocScores<'s> = (usize, &'s str, &'s BTreeMap<String, Value>);

/// Each of a task's metrics under each of its filters (in the task's order) over its documents' scores (in document
/// order); a metric a document lacks, or a filter no document was scored under, is an error naming them.
fn aggregate_task(
    task: &str,
    metrics: &[Metric],
    filters: &[String],
    scores: &[DocScores],
) -> Result<Vec<Scored>, RunError> {
    let metric_error = |message: String| RunError::Metric { task: task.to_owned(), message };
    if filters.is_empty() {
        return Err(metric_error("the task names no filter to score under".into()));
    }
    let mut aggregates = Vec::new();
    for filter in filters {
        let under: Vec<&DocScores> = scores.iter().filter(|(_, f, _)| f == filter).collect();
        if under.is_empty() {
            return Err(metric_error(format!("no document was scored under filter `{filter}`")));
        }
        for metric in metrics {
            let items = under
                .iter()
                .map(|(doc, _, score)| {
                    score
                        .get(metric.name)
                        .cloned()
                        .ok_or_else(|| metric_error(format!("document {doc} has no `{}` score", metric.name)))
                })
                .collect::<Result<Vec<Value>, _>>()?;
            let aggregate = metric.aggregate(&items).map_err(metric_error)?;
            aggregates.push(((metric.name.to_owned(), filter.clone()), aggregate));
        }
    }
    Ok(aggregates)
}

/// Each group's entry from its tasks' (documents, aggregates), as lm-eval 0.4.13's `Group.aggregate` makes it: per
/// `aggregate_metric_list` entry and filter (its `filter_list`, else every filter a member reports the metric
/// under), the members that report the key, their sizes summed as the key's `sample_count`; a key no member reports
/// is left out. A group without the list gets an entry with its name only and is not among `groups`, as lm-eval's.
/// A group's `n-shot` is its members' when they agree; its `higher_is_better` joins theirs.
fn aggregate_groups(
    groups: &[Group],
    aggregates: &BTreeMap<String, TaskAggregates>,
    results: &mut RunResults,
) -> Result<(), RunError> {
    for group in groups {
        results.group_subtasks.insert(group.group.clone(), group.tasks.clone());
        results.versions.insert(group.group.clone(), group.version.clone());
        let shots: std::collections::BTreeSet<usize> =
            group.tasks.iter().filter_map(|t| results.n_shot.get(t)).copied().collect();
        if let [shots] = shots.into_iter().collect::<Vec<_>>()[..] {
            results.n_shot.insert(group.group.clone(), shots);
        }
        let mut directions = BTreeMap::new();
        for task in &group.tasks {
            for (metric, better) in results.higher_is_better.get(task).into_iter().flatten() {
                directions.entry(metric.clone()).or_insert(*better);
            }
        }
        results.higher_is_better.insert(group.group.clone(), directions);
        let name = group.group.clone();
        if group.metrics.is_empty() {
            let entry = ResultEntry { alias: name.clone(), name: name.clone(), sample_len: None, ..Default::default() };
            results.results.insert(name, entry);
            continue;
        }
        let members: Vec<&TaskAggregates> = group
            .tasks
            .iter()
            .map(|t| {
                aggregates.get(t).ok_or_else(|| RunError::Metric {
                    task: name.clone(),
                    message: format!("member task {t} has no results"),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut grouped: Vec<Scored> = Vec::new();
        let mut sample_count = BTreeMap::new();
        for entry in &group.metrics {
            let filters = entry.filters.clone().unwrap_or_else(|| {
                let found: std::collections::BTreeSet<&String> = members
                    .iter()
                    .flat_map(|(_, scored)| scored.iter().map(|(key, _)| key))
                    .filter(|(metric, _)| *metric == entry.metric)
                    .map(|(_, filter)| filter)
                    .collect();
                found.into_iter().cloned().collect()
            });
            for filter in filters {
                let key = (entry.metric.clone(), filter);
                let per_task: Vec<(usize, Aggregate)> = members
                    .iter()
                    .filter_map(|(n, scored)| scored.iter().find(|(k, _)| *k == key).map(|(_, a)| (*n, *a)))
                    .collect();
                if per_task.is_empty() {
                    continue;
                }
                sample_count.insert(metric_key(&key.0, &key.1), per_task.iter().map(|(n, _)| n).sum());
                grouped.push((key, group_aggregate(&per_task, entry.weight_by_size)));
            }
        }
        let documents = members.iter().map(|(n, _)| n).sum();
        let mut entry = result_entry(&name, &grouped, documents);
        entry.sample_count = Some(sample_count);
        results.results.insert(name.clone(), entry.clone());
        results.groups.insert(name, entry);
    }
    Ok(())
}

/// A `results` entry: each metric and its stderr under lm-eval's keys, the name and the documents.
fn result_entry(name: &str, aggregates: &[Scored], documents: usize) -> ResultEntry {
    let mut metrics = BTreeMap::new();
    for ((metric, filter), aggregate) in aggregates {
        metrics.insert(metric_key(metric, filter), Value::from(aggregate.value));
        metrics.insert(stderr_key(metric, filter), aggregate.stderr.map_or(Value::from("N/A"), Value::from));
    }
    ResultEntry {
        alias: name.to_owned(),
        name: name.to_owned(),
        sample_len: Some(documents),
        metrics,
        sample_count: None,
    }
}

fn write_json(path: &Path, results: &RunResults) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(results).expect("results serialize") + "\n";
    // Write then rename, so an interrupted run leaves the previous complete file rather than half of a new one.
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|source| RunError::Write { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibex_core::prompt::Output;
    use ibex_core::{Doc, Metric, Response, Task, TaskError, TaskHeader};
    use serde_json::{json, Map};
    use std::sync::Arc;

    /// A task that declares accuracy and Matthews correlation, and scores whatever it is told to.
    struct Declares(TaskHeader);

    impl Task for Declares {
        fn header(&self) -> &TaskHeader {
            &self.0
        }
        fn doc(&self, row: usize, fields: &Map<String, Value>) -> Result<Doc, TaskError> {
            Ok(Doc { id: row, fields: fields.clone() })
        }
        fn doc_to_text(&self, _: &Doc) -> String {
            String::new()
        }
        fn doc_to_target(&self, _: &Doc) -> String {
            String::new()
        }
        fn output(&self, _: &Doc) -> Output {
            Output::MultipleChoice(Vec::new())
        }
        fn score(&self, _: &Doc, _: &[Response]) -> Vec<SampleScore> {
            unreachable!("the test scores by hand")
        }
        fn metrics(&self) -> &[Metric] {
            &[Metric::ACC, Metric::MCC]
        }
    }

    fn planned(documents: usize) -> PlannedTask {
        let header = TaskHeader {
            name: "declares".into(),
            language: "en".into(),
            target_delimiter: " ".into(),
            fewshot_delimiter: "\n\n".into(),
            shots: ibex_core::ShotDelimiters { target_delimiter: " ".into(), fewshot_delimiter: "\n\n".into() },
            data: ibex_core::DataSpec {
                dataset: "d".into(),
                config: None,
                revision: None,
                training_split: None,
                validation_split: None,
                test_split: Some("test".into()),
                fewshot_split: None,
                fewshot_sampler: ibex_core::FewshotSampler::Default,
                files: BTreeMap::new(),
            },
        };
        PlannedTask {
            entry: Entry {
                task: Arc::new(Declares(header)),
                benchmark: "x".into(),
                source: "t.yaml".into(),
                sha256: String::new(),
            },
            num_fewshot: 0,
            eval: SplitSource { split: "test".into(), files: vec!["d.jsonl".into()], dataset: None },
            fewshot: None,
            split_rows: documents,
            docs: (0..documents).map(|id| Doc { id, fields: Map::new() }).collect(),
            requests: vec![Vec::new(); documents],
        }
    }

    fn by_doc<'s>(task: &PlannedTask, scores: &'s [SampleScore]) -> Vec<DocScores<'s>> {
        task.docs.iter().zip(scores).map(|(doc, score)| (doc.id, score.filter.as_str(), &score.metrics)).collect()
    }

    fn none() -> Vec<String> {
        vec![ibex_core::NO_FILTER.to_owned()]
    }

    fn score(acc: f64, mcc: Option<Value>) -> SampleScore {
        let mut metrics = BTreeMap::from([("acc".to_owned(), Value::from(acc))]);
        metrics.extend(mcc.map(|item| ("mcc".to_owned(), item)));
        SampleScore { filter: ibex_core::NO_FILTER.into(), filtered_resps: Vec::new(), target: Value::from(0), metrics }
    }

    #[test]
    fn a_metric_missing_from_a_document_is_an_error_naming_both() {
        let task = planned(2);
        let scores = [score(1.0, Some(json!([1, 1]))), score(0.0, None)];
        let err = aggregate_task("declares", task.entry.task.metrics(), &none(), &by_doc(&task, &scores)).unwrap_err();
        assert_eq!(err.to_string(), "task declares: document 1 has no `mcc` score");
        let filters = vec!["strict".to_owned()];
        let err = aggregate_task("declares", task.entry.task.metrics(), &filters, &by_doc(&task, &scores)).unwrap_err();
        assert_eq!(err.to_string(), "task declares: no document was scored under filter `strict`");
    }

    #[test]
    fn corpus_metrics_aggregate_over_every_item_with_lm_evals_bootstrap_stderr() {
        let task = planned(4);
        let pairs = [(1, 1), (0, 0), (1, 0), (0, 0)];
        let scores: Vec<SampleScore> =
            pairs.iter().map(|&(g, p)| score(f64::from(u8::from(g == p)), Some(json!([g, p])))).collect();
        let aggregates =
            aggregate_task("declares", task.entry.task.metrics(), &none(), &by_doc(&task, &scores)).unwrap();
        let entry = result_entry("declares", &aggregates, 4);
        assert_eq!(entry.metrics["acc,none"], 0.75);
        // Confusion [[2, 0], [1, 1]]: (3·4 − (3·2 + 1·2)) / sqrt((16 − 10)(16 − 8)) = 4 / sqrt(48).
        assert!((entry.metrics["mcc,none"].as_f64().unwrap() - 4.0 / 48f64.sqrt()).abs() < 1e-12);
        // lm-eval 0.4.13's bootstrap_stderr(matthews_corrcoef, pairs, 100000) = 0.39717057877982126
        assert!((entry.metrics["mcc_stderr,none"].as_f64().unwrap() - 0.397_170_578_779_821_26).abs() < 1e-12);
        assert_eq!(entry.sample_len, Some(4));
    }
}
