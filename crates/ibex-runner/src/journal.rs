//! The run's journal (`journal.jsonl` in the output folder): every finished batch's answers, appended and synced to
//! disk before the next batch starts, so a run killed at any point (a Slurm time limit, a pre-emption) resumes where
//! it stopped: a rerun with the same output folder and settings sends the model only what the journal lacks, and
//! writes the results an uninterrupted run writes.
//!
//! The first line names the run (a fingerprint of everything that decides its answers); each other line is one
//! answer: `{"task", "doc", "request", "loglikelihood", "is_greedy"}` or `{"task", "doc", "request", "generation"}`.

use crate::RunError;
use ibex_core::{Response, TokenScore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The journal's file name in the output folder.
pub const JOURNAL: &str = "journal.jsonl";

#[derive(Serialize, Deserialize)]
struct Header {
    journal: u32,
    fingerprint: String,
    /// The run's date id (`2026-11-30T16-21-44.240137`, as lm-eval names its files), kept so a resumed run writes
    /// the files the first attempt began.
    #[serde(default)]
    date_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    task: String,
    doc: usize,
    request: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    loglikelihood: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    is_greedy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    generation: Option<String>,
}

/// The fingerprint a journal's text starts with: its header line, whole and readable.
fn header(text: &str) -> Option<Header> {
    let first = text.split_inclusive('\n').next()?.strip_suffix('\n')?;
    serde_json::from_str::<Header>(first).ok()
}

fn header_fingerprint(text: &str) -> Option<String> {
    header(text).map(|h| h.fingerprint)
}

/// Fails when `journal` (the text of `output`'s journal) belongs to another run and `overwrite` is not set.
fn refuse_other_run(output: &Path, journal: &str, fingerprint: &str, overwrite: bool) -> Result<(), RunError> {
    match header_fingerprint(journal) {
        Some(theirs) if theirs != fingerprint && !overwrite => Err(RunError::Plan(format!(
            "{} holds a run with other settings ({}); pass --overwrite to start over, or another --output",
            output.display(),
            output.join(JOURNAL).display()
        ))),
        _ => Ok(()),
    }
}

/// Fails when `output` holds the journal of another run and `overwrite` is not set.
pub(crate) fn check_output(output: &Path, fingerprint: &str, overwrite: bool) -> Result<(), RunError> {
    let journal = std::fs::read_to_string(output.join(JOURNAL)).unwrap_or_default();
    refuse_other_run(output, &journal, fingerprint, overwrite)
}

/// The answers of a run so far, and the file that keeps them.
pub(crate) struct Journal {
    file: BufWriter<File>,
    path: PathBuf,
    answered: HashMap<(String, usize, usize), Response>,
    date_id: String,
}

impl Journal {
    /// Opens the journal of `output` for the run named `fingerprint`, reading what it already holds. A journal of
    /// another run is an error unless `overwrite`, which starts it anew. A last line cut short by a kill is dropped.
    /// `date_id` names a new run's files; a resumed run keeps its first attempt's.
    pub(crate) fn open(output: &Path, fingerprint: &str, overwrite: bool, date_id: String) -> Result<Self, RunError> {
        let path = output.join(JOURNAL);
        let write_error = |source| RunError::Write { path: path.clone(), source };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(write_error(source)),
        };
        refuse_other_run(output, &text, fingerprint, overwrite)?;
        let mut answered = HashMap::new();
        let mut kept = 0;
        let mut date_id = date_id;
        let mut lines = text.split_inclusive('\n');
        let first = lines.next().unwrap_or_default();
        // This run's journal is read on; another run's (with --overwrite) or a torn header starts anew.
        if header_fingerprint(&text).as_deref() == Some(fingerprint) {
            kept = first.len();
            if let Some(earlier) = header(&text).and_then(|h| h.date_id) {
                date_id = earlier;
            }
            for line in lines {
                let Some(entry) = line.strip_suffix('\n').and_then(|l| serde_json::from_str::<Line>(l).ok()) else {
                    break;
                };
                let response = match (entry.loglikelihood, entry.is_greedy, entry.generation) {
                    (Some(logprob), Some(is_greedy), None) => {
                        Response::Loglikelihood(TokenScore { logprob, is_greedy })
                    }
                    (None, None, Some(text)) => Response::Generation(text),
                    _ => break,
                };
                answered.insert((entry.task, entry.doc, entry.request), response);
                kept += line.len();
            }
        }
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(&path).map_err(write_error)?;
        // Keep the whole lines of this run's journal; anything else (another run's, a torn last line) goes.
        file.set_len(kept as u64).map_err(write_error)?;
        let mut journal = Self { file: BufWriter::new(file), path: path.clone(), answered, date_id };
        if kept == 0 {
            let header =
                Header { journal: 1, fingerprint: fingerprint.to_owned(), date_id: Some(journal.date_id.clone()) };
            journal.append(&[serde_json::to_string(&header).expect("headers serialize")]).map_err(write_error)?;
        } else {
            use std::io::Seek;
            journal.file.seek(std::io::SeekFrom::End(0)).map_err(write_error)?;
        }
        Ok(journal)
    }

    /// The date id the run's files are named with.
    pub(crate) fn date_id(&self) -> &str {
        &self.date_id
    }

    /// The answer the journal holds for request `request` of document `doc` of `task`.
    pub(crate) fn answered(&self, task: &str, doc: usize, request: usize) -> Option<&Response> {
        self.answered.get(&(task.to_owned(), doc, request))
    }

    /// Appends a batch's answers and syncs them to disk.
    pub(crate) fn record(&mut self, task: &str, answers: &[(usize, usize, Response)]) -> Result<(), String> {
        let lines: Vec<String> = answers
            .iter()
            .map(|(doc, request, response)| {
                let (loglikelihood, is_greedy, generation) = match response {
                    Response::Loglikelihood(score) => (Some(score.logprob), Some(score.is_greedy), None),
                    Response::Generation(text) => (None, None, Some(text.clone())),
                };
                let line =
                    Line { task: task.to_owned(), doc: *doc, request: *request, loglikelihood, is_greedy, generation };
                serde_json::to_string(&line).expect("journal lines serialize")
            })
            .collect();
        self.append(&lines).map_err(|e| format!("{}: {e}", self.path.display()))?;
        for (doc, request, response) in answers {
            self.answered.insert((task.to_owned(), *doc, *request), response.clone());
        }
        Ok(())
    }

    fn append(&mut self, lines: &[String]) -> std::io::Result<()> {
        for line in lines {
            writeln!(self.file, "{line}")?;
        }
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}
