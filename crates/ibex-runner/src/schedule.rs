//! Asks the model for every request of a task, all loglikelihood requests in one call and all generations in
//! another (so the model can order and batch them as it likes), and hands the answers back per document. Progress
//! shows rate and ETA: a bar on a terminal, a plain line every few seconds otherwise (Slurm logs).

use crate::plan::PlannedTask;
use crate::RunError;
use ibex_core::{GenerateRequest, LanguageModel, LoglikelihoodRequest, ModelError, Request, Response};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Every document's responses, in the order of its requests.
pub(crate) fn answer(task: &PlannedTask, model: &mut dyn LanguageModel) -> Result<Vec<Vec<Response>>, RunError> {
    let name = task.name();
    // Which document and which of its requests each flat request came from.
    let mut loglikelihood: Vec<LoglikelihoodRequest> = Vec::new();
    let mut loglikelihood_origin: Vec<(usize, usize)> = Vec::new();
    let mut generate: Vec<GenerateRequest> = Vec::new();
    let mut generate_origin: Vec<(usize, usize)> = Vec::new();
    for (position, requests) in task.requests.iter().enumerate() {
        for (index, request) in requests.iter().enumerate() {
            match request {
                Request::Loglikelihood(r) => {
                    loglikelihood.push(r.clone());
                    loglikelihood_origin.push((position, index));
                }
                Request::Generate(r) => {
                    generate.push(r.clone());
                    generate_origin.push((position, index));
                }
            }
        }
    }
    let model_error = |origin: &[(usize, usize)], source: ModelError| match source {
        ModelError::Request { index, .. } => {
            RunError::Request { task: name.to_owned(), doc: task.docs[origin[index].0].id, source }
        }
        source => RunError::Model { task: name.to_owned(), source },
    };
    let mut progress = Progress::new(name, loglikelihood.len() + generate.len());
    let mut responses: Vec<Vec<Option<Response>>> = task.requests.iter().map(|r| vec![None; r.len()]).collect();
    if !loglikelihood.is_empty() {
        let scores = model
            .loglikelihood(&loglikelihood, &mut |n| progress.advance(n))
            .map_err(|e| model_error(&loglikelihood_origin, e))?;
        for (&(position, index), score) in loglikelihood_origin.iter().zip(scores) {
            responses[position][index] = Some(Response::Loglikelihood(score));
        }
    }
    if !generate.is_empty() {
        let texts = model
            .generate_until(&generate, &mut |n| progress.advance(n))
            .map_err(|e| model_error(&generate_origin, e))?;
        for (&(position, index), text) in generate_origin.iter().zip(texts) {
            responses[position][index] = Some(Response::Generation(text));
        }
    }
    progress.finish();
    Ok(responses
        .into_iter()
        .map(|doc| doc.into_iter().map(|r| r.expect("the model answers every request")).collect())
        .collect())
}

/// Progress of one task's requests.
struct Progress {
    bar: Option<ProgressBar>,
    task: String,
    total: usize,
    done: usize,
    start: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(task: &str, total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64).with_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} requests, {per_sec}, ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(task.to_owned());
            bar
        });
        let now = Instant::now();
        Self { bar, task: task.to_owned(), total, done: 0, start: now, last_line: now }
    }

    fn advance(&mut self, answered: usize) {
        self.done += answered;
        match &self.bar {
            Some(bar) => bar.inc(answered as u64),
            None if self.last_line.elapsed() >= PLAIN_EVERY && self.done < self.total => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// `xnli_en: 1200/15030 requests (8.0%), 85.3 requests/s, ETA 2m42s`.
    fn line(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / elapsed;
        let eta = if rate > 0.0 { ((self.total - self.done) as f64 / rate).round() as u64 } else { 0 };
        format!(
            "{}: {}/{} requests ({:.1}%), {rate:.1} requests/s, ETA {}m{:02}s",
            self.task,
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total.max(1) as f64,
            eta / 60,
            eta % 60
        )
    }

    fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => {
                let seconds = self.start.elapsed().as_secs_f64();
                let rate = self.done as f64 / seconds.max(1e-9);
                eprintln!("{}: {} requests in {seconds:.1}s, {rate:.1} requests/s", self.task, self.done);
            }
        }
    }
}
