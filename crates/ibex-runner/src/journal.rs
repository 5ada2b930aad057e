//! The run's journal (`journal_<fingerprint>.jsonl` beside the run's files): every finished batch's answers,
//! appended and synced to disk before the next batch starts, so a run killed at any point (a Slurm time limit, a
//! pre-emption) resumes where it stopped: a rerun with the same output folder and settings finds its journal by the
//! fingerprint of those settings, sends the model only what the journal lacks, and completes the files the first
//! attempt began. Runs with other settings keep their own journals, so any number of runs share an output folder,
//! as lm-eval's dated files do.
//!
//! The first line names the run (the full fingerprint and the run's date); each other line is one answer:
//! `{"task", "doc", "request", "loglikelihood", "is_greedy"}` or `{"task", "doc", "request", "generation"}`.

use crate::RunError;
use ibex_core::{Response, TokenScore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The journal's file name for the run with `fingerprint` (hex): `journal_<first 16 digits>.jsonl`.
pub fn journal_file_name(fingerprint: &str) -> String {
    format!("journal_{}.jsonl", &fingerprint[..fingerprint.len().min(16)])
}

/// When a run started: the id its files are named with (`2026-11-30T16-21-44.240137`, as lm-eval names them) and
/// the Unix time (lm-eval's `date`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunDate {
    pub(crate) id: String,
    pub(crate) unix: f64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    journal: u32,
    fingerprint: String,
    date: RunDate,
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

/// A journal's header line, whole and readable.
fn header(text: &str) -> Option<Header> {
    let first = text.split_inclusive('\n').next()?.strip_suffix('\n')?;
    serde_json::from_str::<Header>(first).ok()
}

/// The answers of a run so far, and the file that keeps them.
pub(crate) struct Journal {
    file: BufWriter<File>,
    path: PathBuf,
    answered: HashMap<(String, usize, usize), Response>,
    date: RunDate,
}

impl Journal {
    /// Opens the journal in `output` of the run named `fingerprint`, reading what it already holds, unless
    /// `overwrite`, which starts it anew. A last line cut short by a kill is dropped. `date` dates a new run; a
    /// resumed run keeps its first attempt's.
    pub(crate) fn open(output: &Path, fingerprint: &str, overwrite: bool, date: RunDate) -> Result<Self, RunError> {
        let path = output.join(journal_file_name(fingerprint));
        let write_error = |source| RunError::Write { path: path.clone(), source };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(write_error(source)),
        };
        let mut answered = HashMap::new();
        let mut kept = 0;
        let mut date = date;
        let mut lines = text.split_inclusive('\n');
        let first = lines.next().unwrap_or_default();
        // This run's journal is read on; with --overwrite, or after a torn header, it starts anew.
        if let Some(earlier) = header(&text).filter(|h| h.fingerprint == fingerprint && !overwrite) {
            kept = first.len();
            date = earlier.date;
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
        let mut journal = Self { file: BufWriter::new(file), path: path.clone(), answered, date };
        if kept == 0 {
            let header = Header { journal: 1, fingerprint: fingerprint.to_owned(), date: journal.date.clone() };
            journal.append(&[serde_json::to_string(&header).expect("headers serialize")]).map_err(write_error)?;
        } else {
            use std::io::Seek;
            journal.file.seek(std::io::SeekFrom::End(0)).map_err(write_error)?;
        }
        Ok(journal)
    }

    /// When the run (its first attempt) started.
    pub(crate) fn date(&self) -> &RunDate {
        &self.date
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
