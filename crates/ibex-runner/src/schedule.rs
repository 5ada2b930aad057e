//! Asks the model for every request of a task, all loglikelihood requests in one call and all generations in
//! another (so the model can order and batch them as it likes), and hands the answers back per document. Progress
//! shows rate and ETA: a bar on a terminal, a plain line every few seconds otherwise (Slurm logs).

use crate::journal::Journal;
use crate::plan::PlannedTask;
use crate::RunError;
use ibex_core::{
    GenerateRequest, LanguageModel, LoglikelihoodRequest, ModelError, Request, RequestState, Response, TokenScore,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Every document's responses, in the order of its requests: those the journal holds, and the rest from the model,
/// each batch recorded in the journal as it finishes.
pub(crate) fn answer(
    task: &PlannedTask,
    model: &mut dyn LanguageModel,
    journal: &mut Journal,
) -> Result<Vec<Vec<Response>>, RunError> {
    let name = task.name();
    let mut responses: Vec<Vec<Option<Response>>> = task.requests.iter().map(|r| vec![None; r.len()]).collect();
    // Which document (position, doc_id) and which of its requests each request sent to the model came from.
    let mut loglikelihood: Vec<LoglikelihoodRequest> = Vec::new();
    let mut loglikelihood_origin: Vec<(usize, usize, usize)> = Vec::new();
    let mut generate: Vec<GenerateRequest> = Vec::new();
    let mut generate_origin: Vec<(usize, usize, usize)> = Vec::new();
    // Loglikelihood answers the journal holds go to the model too, as known: it plans shared work over every request.
    let mut states: Vec<RequestState> = Vec::new();
    for (position, (doc, requests)) in task.docs.iter().zip(&task.requests).enumerate() {
        for (index, request) in requests.iter().enumerate() {
            let answered = journal.answered(name, doc.id, index);
            let known = match answered {
                Some(Response::Loglikelihood(score)) => Some(*score),
                _ => None,
            };
            match (request, answered) {
                (Request::Loglikelihood(r), None | Some(Response::Loglikelihood(_))) => {
                    loglikelihood.push(r.clone());
                    loglikelihood_origin.push((position, doc.id, index));
                    states.push(RequestState { document: position, known });
                }
                (_, Some(answer)) => responses[position][index] = Some(answer.clone()),
                (Request::Generate(r), None) => {
                    generate.push(r.clone());
                    generate_origin.push((position, doc.id, index));
                }
            }
        }
    }
    let model_error = |origin: &[(usize, usize, usize)], source: ModelError| match source {
        ModelError::Request { index, .. } => RunError::Request { task: name.to_owned(), doc: origin[index].1, source },
        source => RunError::Model { task: name.to_owned(), source },
    };
    let total: usize = task.requests.iter().map(Vec::len).sum();
    let unanswered = states.iter().filter(|s| s.known.is_none()).count() + generate.len();
    let mut progress = Progress::new(name, total, total - unanswered);
    if states.iter().any(|s| s.known.is_none()) {
        let mut done = |answered: &[(usize, TokenScore)]| {
            let entries: Vec<(usize, usize, Response)> = answered
                .iter()
                .map(|&(i, score)| {
                    (loglikelihood_origin[i].1, loglikelihood_origin[i].2, Response::Loglikelihood(score))
                })
                .collect();
            journal.record(name, &entries)?;
            progress.advance(answered.len());
            Ok(())
        };
        let scores = model
            .loglikelihood(&loglikelihood, &states, &mut done)
            .map_err(|e| model_error(&loglikelihood_origin, e))?;
        for (&(position, _, index), score) in loglikelihood_origin.iter().zip(scores) {
            responses[position][index] = Some(Response::Loglikelihood(score));
        }
    } else {
        for (&(position, _, index), state) in loglikelihood_origin.iter().zip(&states) {
            responses[position][index] = state.known.map(Response::Loglikelihood);
        }
    }
    if !generate.is_empty() {
        let mut done = |answered: &[(usize, String)]| {
            let entries: Vec<(usize, usize, Response)> = answered
                .iter()
                .map(|(i, text)| (generate_origin[*i].1, generate_origin[*i].2, Response::Generation(text.clone())))
                .collect();
            journal.record(name, &entries)?;
            progress.advance(answered.len());
            Ok(())
        };
        let texts = model.generate_until(&generate, &mut done).map_err(|e| model_error(&generate_origin, e))?;
        for (&(position, _, index), text) in generate_origin.iter().zip(texts) {
            responses[position][index] = Some(Response::Generation(text));
        }
    }
    progress.finish();
    Ok(responses
        .into_iter()
        .map(|doc| doc.into_iter().map(|r| r.expect("the journal or the model answers every request")).collect())
        .collect())
}

/// Progress of one task's requests.
struct Progress {
    bar: Option<ProgressBar>,
    task: String,
    total: usize,
    done: usize,
    /// Answered before this run started: not counted in the rate.
    resumed: usize,
    start: Instant,
    last_line: Instant,
}

impl Progress {
    /// Progress over `total` requests, of which `resumed` were answered by an earlier, interrupted run.
    fn new(task: &str, total: usize, resumed: usize) -> Self {
        if resumed > 0 {
            eprintln!("{task}: resuming, {resumed} of {total} requests answered by an earlier run");
        }
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64).with_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} requests, {per_sec}, ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(task.to_owned());
            bar.set_position(resumed as u64);
            bar.reset_eta();
            bar
        });
        let now = Instant::now();
        Self { bar, task: task.to_owned(), total, done: resumed, resumed, start: now, last_line: now }
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
        let rate = (self.done - self.resumed) as f64 / elapsed;
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
                let scored = self.done - self.resumed;
                let rate = scored as f64 / seconds.max(1e-9);
                eprintln!("{}: {scored} requests in {seconds:.1}s, {rate:.1} requests/s", self.task);
            }
        }
    }
}
