//! `ibex merge`: the folders of `--shard I/N` runs joined into the results file and sample logs of the unsharded
//! run.
//! Sharding keeps every few-shot context and request as the unsharded run builds them, and scores do not depend on
//! batch composition, so metrics recomputed from the joined sample logs in document order equal the unsharded run's
//! to the last bit, groups included.

use crate::{aggregate_groups, aggregate_task, files, result_entry, set_time, write_json};
use crate::{DocScores, Group, Registry, RunError, TaskAggregates};
use ibex_core::results::{read_results, results_file_name, samples_file_name, ModelRecord, RunResults, SampleRecord};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Joins the shard folders `shards` (each the `--output` of an `ibex run --shard I/N`, or its model folder) into
/// `output`: `output/<model_name_sanitized>/results_<date>.json` and one sample log per task, as an unsharded run
/// writes them. `tasks_dirs` are the `--tasks-dir` folders the shards used. Refuses shards of different models,
/// settings, tasks, task files or data, and an incomplete or repeated set.
pub fn merge(output: &Path, shards: &[PathBuf], tasks_dirs: &[PathBuf]) -> Result<(RunResults, PathBuf), RunError> {
    let merge_error = |message: String| RunError::Merge(message);
    let runs = shards
        .iter()
        .map(|dir| {
            let (results, file, date) = read_results(dir)
                .map_err(|e| merge_error(format!("{e}; pass the folders of `ibex run --shard` runs")))?;
            let folder = file.parent().map(Path::to_owned).unwrap_or_default();
            Ok((results, folder, date))
        })
        .collect::<Result<Vec<(RunResults, PathBuf, String)>, RunError>>()?;
    let (first, _, _) = runs.first().ok_or_else(|| merge_error("no shard folders given".into()))?;
    for ((run, _, _), dir) in runs.iter().zip(shards) {
        if !run.ibex.complete {
            return Err(merge_error(format!(
                "{} holds a run that did not finish (it has {}); rerun its command to resume it, then merge",
                dir.display(),
                run.ibex.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let target = output.join(&first.model_name_sanitized);
    for (_, folder, _) in &runs {
        let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
        if same(folder, &target) || same(folder, output) {
            return Err(merge_error(format!(
                "{} is one of the shards' folders; merge into another folder",
                output.display()
            )));
        }
    }
    let not_a_shard = |dir: &Path| merge_error(format!("{} holds no shard (ibex run --shard I/N)", dir.display()));
    let count = first.ibex.model.shard.ok_or_else(|| not_a_shard(&shards[0]))?.count;
    let mut seen = vec![false; count];
    for ((run, _, _), dir) in runs.iter().zip(shards) {
        let shard = run.ibex.model.shard.ok_or_else(|| not_a_shard(dir))?;
        if shard.count != count || shard.index >= count {
            return Err(merge_error(format!(
                "{} is shard {shard}, not one of {count} like {}",
                dir.display(),
                shards[0].display()
            )));
        }
        if std::mem::replace(&mut seen[shard.index], true) {
            return Err(merge_error(format!("shard {shard} is given twice ({})", dir.display())));
        }
        if let Some(difference) = settings_difference(&first.ibex.model, &run.ibex.model) {
            return Err(merge_error(format!("{} ran with other settings: {difference}", dir.display())));
        }
        if run.ibex.tasks.keys().ne(first.ibex.tasks.keys()) || run.group_subtasks != first.group_subtasks {
            return Err(merge_error(format!("{} evaluated other tasks or groups", dir.display())));
        }
        for (task, record) in &run.ibex.tasks {
            let reference = &first.ibex.tasks[task];
            let same = (&record.task_file_sha256, &record.split, &record.dataset, &record.data_file)
                == (&reference.task_file_sha256, &reference.split, &reference.dataset, &reference.data_file);
            if !same {
                return Err(merge_error(format!("{} read another task file or data for {task}", dir.display())));
            }
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(merge_error(format!("shard {missing}/{count} is missing; pass all {count} shard folders")));
    }

    // The shards ran one recipe set (their models and settings agree); the merge reads the same task files.
    let recipes = first.ibex.model.recipes.parse().map_err(merge_error)?;
    let registry = Registry::load(tasks_dirs, recipes)?;
    let folder = target;
    std::fs::create_dir_all(&folder).map_err(|source| RunError::Write { path: folder.clone(), source })?;
    let date_id = files::now().id;
    let mut merged = first.clone();
    merged.results.clear();
    merged.groups.clear();
    merged.higher_is_better.clear();
    merged.ibex.model = ModelRecord { shard: None, ..first.ibex.model.clone() };
    merged.date = runs.iter().map(|(r, _, _)| r.date).fold(f64::INFINITY, f64::min);
    let mut aggregates: BTreeMap<String, TaskAggregates> = BTreeMap::new();
    for (task, record) in &first.ibex.tasks {
        let entry = registry.get(task)?;
        if entry.sha256 != record.task_file_sha256 {
            return Err(merge_error(format!(
                "task file {} changed since the shards ran; merge with the task files they used",
                entry.source
            )));
        }
        let filters = entry.task.filters();
        let (lines, records) = joined_samples(&runs, task, &filters)?;
        let path = folder.join(samples_file_name(task, &date_id));
        let write_error = |source: std::io::Error| RunError::Write { path: path.clone(), source };
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(write_error)?);
        for line in &lines {
            writeln!(out, "{line}").map_err(write_error)?;
        }
        out.flush().map_err(write_error)?;
        let scores: Vec<DocScores> = records.iter().map(|r| (r.doc_id, r.filter.as_str(), &r.scores)).collect();
        let task_aggregates = aggregate_task(task, entry.task.metrics(), &filters, &scores)?;
        // One record per document and filter: the documents are those of the first filter.
        let documents = records.iter().filter(|r| filters.first() == Some(&r.filter)).count();
        merged.results.insert(task.clone(), result_entry(task, &task_aggregates, documents));
        let directions = entry.task.metrics().iter().map(|m| (m.name.to_owned(), m.higher_is_better)).collect();
        merged.higher_is_better.insert(task.clone(), directions);
        if let Some(counts) = merged.n_samples.get_mut(task) {
            counts.effective = documents;
        }
        merged.task_hashes.insert(task.clone(), crate::samples::task_hash(&records));
        let shard_records = runs.iter().map(|(r, _, _)| &r.ibex.tasks[task]);
        let mut task_record = record.clone();
        task_record.n = documents;
        task_record.seconds = shard_records.clone().map(|r| r.seconds).sum();
        task_record.tokens = shard_records.clone().map(|r| r.tokens).sum();
        task_record.tokens_computed = shard_records.map(|r| r.tokens_computed).sum();
        merged.ibex.tasks.insert(task.clone(), task_record);
        aggregates.insert(task.clone(), (documents, task_aggregates));
    }
    // The groups as their task files define them (the shards ran the same files).
    let groups: Vec<Group> = first
        .group_subtasks
        .iter()
        .map(|(group, tasks)| match registry.groups().find(|g| g.group == *group && g.tasks == *tasks) {
            Some(defined) => Ok(defined.clone()),
            None => Err(merge_error(format!(
                "group {group} is not defined as the shards ran it (tasks {}); merge with the task files they used",
                tasks.join(", ")
            ))),
        })
        .collect::<Result<_, _>>()?;
    aggregate_groups(&groups, &aggregates, &mut merged)?;
    set_time(&mut merged, runs.iter().map(|(r, _, _)| r.ibex.seconds).sum());
    merged.ibex.complete = true;
    let path = folder.join(results_file_name(&date_id));
    write_json(&path, &merged)?;
    Ok((merged, path))
}

/// The first setting two shards' records differ in (the device, the batch size and the shard itself may differ:
/// answers do not depend on them).
fn settings_difference(a: &ModelRecord, b: &ModelRecord) -> Option<String> {
    let comparable = |record: &ModelRecord| {
        let same = ModelRecord {
            shard: None,
            device: String::new(),
            batch_size: String::new(),
            max_batch_size: None,
            ..record.clone()
        };
        let mut value = serde_json::to_value(same).expect("records serialize");
        value.as_object_mut().map(std::mem::take).unwrap_or_default()
    };
    let (a, b) = (comparable(a), comparable(b));
    a.iter().find(|(key, value)| b.get(*key) != Some(value)).map(|(key, value)| {
        format!("`{key}` is {} here, {value} in the first shard", b.get(key).unwrap_or(&Value::Null))
    })
}

/// A task's sample-log lines from every shard, filter by filter in the task's order (`filters`), each in document
/// order, with each line's record; a document twice under one filter, or a filter the task lacks, is an error.
fn joined_samples(
    runs: &[(RunResults, PathBuf, String)],
    task: &str,
    filters: &[String],
) -> Result<(Vec<String>, Vec<SampleRecord>), RunError> {
    let mut joined: Vec<(usize, SampleRecord, String)> = Vec::new();
    for (_, folder, date) in runs {
        let path = folder.join(samples_file_name(task, date));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RunError::Merge(format!("cannot read {}: {e}", path.display())))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = || format!("{}, line {}", path.display(), i + 1);
            let record: SampleRecord =
                serde_json::from_str(line).map_err(|e| RunError::Merge(format!("{}: {e}", at())))?;
            let filter = filters
                .iter()
                .position(|f| *f == record.filter)
                .ok_or_else(|| RunError::Merge(format!("{}: task {task} has no filter `{}`", at(), record.filter)))?;
            joined.push((filter, record, line.to_owned()));
        }
    }
    joined.sort_by_key(|(filter, record, _)| (*filter, record.doc_id));
    if let Some(pair) = joined.windows(2).find(|pair| (pair[0].0, pair[0].1.doc_id) == (pair[1].0, pair[1].1.doc_id)) {
        return Err(RunError::Merge(format!("task {task}: document {} is in two shards", pair[0].1.doc_id)));
    }
    Ok(joined.into_iter().map(|(_, record, line)| (line, record)).unzip())
}
