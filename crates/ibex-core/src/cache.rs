//! `--cache DIR` (lm-eval's `--use_cache`): every answer a model gave, kept across runs and tasks, keyed by the
//! model's identity (checkpoint, weights, dtype, device kind) and the request's token ids, so a request any earlier
//! run scored is never computed again. One append-only JSON-lines file per identity in `DIR`; each batch's new
//! answers are flushed before the next batch starts, so a killed run keeps what it computed.

use crate::{ModelError, StopCriteria, TokenModel, TokenRequest, TokenScore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The cache cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("response cache {path}: {message}; pass another --cache folder, or delete this file")]
pub struct CacheError {
    /// The cache file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// One cached answer, as a line of the cache file.
#[derive(Serialize, Deserialize)]
struct Line {
    /// SHA-256 of the request (see [`score_key`], [`generation_key`]).
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<(f64, bool)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<Vec<u32>>,
}

/// A [`TokenModel`] that answers from the cache what it can and asks the model the rest.
pub struct CachedModel<M> {
    model: M,
    path: PathBuf,
    file: std::fs::File,
    scores: HashMap<String, TokenScore>,
    generations: HashMap<String, Vec<u32>>,
}

impl<M: TokenModel> CachedModel<M> {
    /// Opens (or starts) the cache of the model named by `identity` (any JSON that changes whenever answers may:
    /// checkpoint commit, weight files, dtype, device kind) in folder `dir`.
    pub fn open(model: M, dir: &Path, identity: &serde_json::Value) -> Result<Self, CacheError> {
        let identity = identity.to_string();
        let digest = hex(&Sha256::digest(identity.as_bytes()));
        let path = dir.join(format!("cache_{}.jsonl", &digest[..16]));
        let error = |message: String| CacheError { path: path.clone(), message };
        std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        let mut scores = HashMap::new();
        let mut generations = HashMap::new();
        if path.exists() {
            let reader = std::io::BufReader::new(std::fs::File::open(&path).map_err(|e| error(e.to_string()))?);
            let mut lines = reader.lines();
            let header = lines.next().transpose().map_err(|e| error(e.to_string()))?;
            if header.as_deref() != Some(identity.as_str()) {
                return Err(error("its first line names another model than this run's".into()));
            }
            for line in lines {
                let line = line.map_err(|e| error(e.to_string()))?;
                // A kill can leave the last line half-written; it is recomputed.
                let Ok(line) = serde_json::from_str::<Line>(&line) else { continue };
                if let Some((logprob, is_greedy)) = line.score {
                    scores.insert(line.key, TokenScore { logprob, is_greedy });
                } else if let Some(tokens) = line.tokens {
                    generations.insert(line.key, tokens);
                }
            }
        }
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| error(e.to_string()))?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            writeln!(file, "{identity}").map_err(|e| error(e.to_string()))?;
        } else if !ends_with_newline(&path).map_err(|e| error(e.to_string()))? {
            // End the half-written line a kill left, so the next answer starts a line of its own.
            writeln!(file).map_err(|e| error(e.to_string()))?;
        }
        Ok(Self { model, path, file, scores, generations })
    }

    /// Answers the cache holds.
    pub fn len(&self) -> usize {
        self.scores.len() + self.generations.len()
    }

    /// Whether the cache holds no answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append(&mut self, lines: &[Line]) -> Result<(), ModelError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for line in lines {
            text.push_str(&serde_json::to_string(line).expect("cache lines serialize"));
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| ModelError::Sink(format!("{}: {e}", self.path.display())))
    }
}

/// The cache key of a scoring request: its context and continuation token ids.
fn score_key(request: &TokenRequest) -> String {
    let text = serde_json::to_string(&("score", &request.context, &request.continuation)).expect("ids serialize");
    hex(&Sha256::digest(text.as_bytes()))
}

/// The cache key of a generation: the prompt's ids, the budget and the stop criteria.
fn generation_key(prompt: &[u32], max_new_tokens: usize, stop: &StopCriteria) -> String {
    let text = serde_json::to_string(&("generate", prompt, max_new_tokens, stop.identity())).expect("ids serialize");
    hex(&Sha256::digest(text.as_bytes()))
}

/// Whether the file's last byte is a line feed.
fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<M: TokenModel> TokenModel for CachedModel<M> {
    fn max_length(&self) -> usize {
        self.model.max_length()
    }

    fn replicas(&self) -> usize {
        self.model.replicas()
    }

    fn score(&mut self, batch: &[Vec<TokenRequest>]) -> Result<Vec<Vec<TokenScore>>, ModelError> {
        Ok(self.score_batches(&[batch.to_vec()])?.remove(0))
    }

    /// Scores only the requests the cache lacks (each row keeps its other misses together, each batch its rows),
    /// then records them.
    fn score_batches(&mut self, batches: &[Vec<Vec<TokenRequest>>]) -> Result<Vec<Vec<Vec<TokenScore>>>, ModelError> {
        let model = &mut self.model;
        let (answers, lines) = through_cache(
            batches,
            score_key,
            &mut self.scores,
            |asked| model.score_batches(asked),
            |key, score| Line { key, score: Some((score.logprob, score.is_greedy)), tokens: None },
        )?;
        self.append(&lines)?;
        Ok(answers)
    }

    fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        max_new_tokens: usize,
        stop: &StopCriteria,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        Ok(self.generate_batches(&[prompts.to_vec()], max_new_tokens, stop)?.remove(0))
    }

    /// Generates only for the prompts the cache lacks, then records them.
    fn generate_batches(
        &mut self,
        batches: &[Vec<Vec<u32>>],
        max_new_tokens: usize,
        stop: &StopCriteria,
    ) -> Result<Vec<Vec<Vec<u32>>>, ModelError> {
        // Each prompt is a row of its own: generations share nothing.
        let rows: Vec<Vec<Vec<Vec<u32>>>> =
            batches.iter().map(|batch| batch.iter().map(|prompt| vec![prompt.clone()]).collect()).collect();
        let model = &mut self.model;
        let (answers, lines) = through_cache(
            &rows,
            |prompt| generation_key(prompt, max_new_tokens, stop),
            &mut self.generations,
            |asked| {
                let prompts: Vec<Vec<Vec<u32>>> =
                    asked.iter().map(|batch| batch.iter().map(|row| row[0].clone()).collect()).collect();
                let generated = model.generate_batches(&prompts, max_new_tokens, stop)?;
                Ok(generated.into_iter().map(|batch| batch.into_iter().map(|g| vec![g]).collect()).collect())
            },
            |key, tokens| Line { key, score: None, tokens: Some(tokens.clone()) },
        )?;
        let answers = answers.into_iter().map(|batch| batch.into_iter().flatten().collect()).collect();
        self.append(&lines)?;
        Ok(answers)
    }
}

/// Answers `batches` (each a list of rows of requests) from `cached` where it can and asks `ask` for the rest (a
/// row's misses kept together as one row, a batch's rows as one batch), adding the new answers to `cached`; returns
/// every answer in the shape of `batches`, and the new ones as lines for the cache file.
#[allow(clippy::type_complexity)]
fn through_cache<R: Clone, A: Clone>(
    batches: &[Vec<Vec<R>>],
    key: impl Fn(&R) -> String,
    cached: &mut HashMap<String, A>,
    ask: impl FnOnce(&[Vec<Vec<R>>]) -> Result<Vec<Vec<Vec<A>>>, ModelError>,
    line: impl Fn(String, &A) -> Line,
) -> Result<(Vec<Vec<Vec<A>>>, Vec<Line>), ModelError> {
    let keys: Vec<Vec<Vec<String>>> =
        batches.iter().map(|batch| batch.iter().map(|row| row.iter().map(&key).collect()).collect()).collect();
    // The requests the cache lacks, as (batch, row, item) triples, and the same requests shaped as batches of rows.
    let mut missed: Vec<(usize, usize, usize)> = Vec::new();
    let mut asked: Vec<Vec<Vec<R>>> = Vec::new();
    for (b, batch) in keys.iter().enumerate() {
        let mut asked_rows = Vec::new();
        for (r, row) in batch.iter().enumerate() {
            let misses: Vec<usize> = (0..row.len()).filter(|&i| !cached.contains_key(&row[i])).collect();
            if !misses.is_empty() {
                missed.extend(misses.iter().map(|&i| (b, r, i)));
                asked_rows.push(misses.iter().map(|&i| batches[b][r][i].clone()).collect());
            }
        }
        if !asked_rows.is_empty() {
            asked.push(asked_rows);
        }
    }
    let mut lines = Vec::new();
    if !asked.is_empty() {
        let answers = ask(&asked)?.into_iter().flatten().flatten();
        for (&(b, r, i), answer) in missed.iter().zip(answers) {
            lines.push(line(keys[b][r][i].clone(), &answer));
            cached.insert(keys[b][r][i].clone(), answer);
        }
    }
    let answers = keys
        .iter()
        .map(|batch| batch.iter().map(|row| row.iter().map(|key| cached[key].clone()).collect()).collect())
        .collect();
    Ok((answers, lines))
}
