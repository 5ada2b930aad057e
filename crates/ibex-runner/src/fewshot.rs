//! Few-shot examples chosen exactly as lm-eval's `ContextSampler` chooses them: one `random.Random(seed)` per task,
//! `sample(fewshot_docs, k)` once per evaluated document in evaluation order (so document i's shots depend on every
//! draw before it, hence on `--limit`), k + 1 drawn and the evaluated document dropped when the few-shot split is the
//! test split (both unset included: `DataSpec::fewshot_excludes_eval_doc`); or, for tasks that ask for lm-eval's
//! `first_n` sampler, the pool's first k documents. The pool is a split's documents or the task file's own examples
//! (`fewshot_config.samples`).

use crate::RunError;
use ibex_core::{Doc, FewshotSampler, PyRandom, Task};
use ibex_data::Row;
use std::collections::HashMap;

/// The documents few-shot examples are drawn from.
pub(crate) struct FewshotPool<'a> {
    task: &'a dyn Task,
    rows: &'a [Row],
    source: &'a str,
    excludes_eval_doc: bool,
}

impl<'a> FewshotPool<'a> {
    /// The pool of `rows` (split `split`, read from `source`: its files, or the task file); fails when it cannot
    /// give `shots` examples.
    pub(crate) fn new(
        task: &'a dyn Task,
        split: &str,
        rows: &'a [Row],
        source: &'a str,
        shots: usize,
    ) -> Result<Self, RunError> {
        let pool = Self { task, rows, source, excludes_eval_doc: task.data().fewshot_excludes_eval_doc() };
        let needed = shots + usize::from(pool.excludes_eval_doc);
        if pool.rows.len() < needed {
            return Err(RunError::Plan(format!(
                "few-shot split `{split}` of {} ({}) has {} documents; --num-fewshot {shots} needs {needed}",
                task.name(),
                source,
                pool.rows.len(),
            )));
        }
        Ok(pool)
    }

    /// The few-shot examples of every document of `docs`, in order.
    pub(crate) fn shots(&self, docs: &[Doc], shots: usize, seed: u64) -> Result<Vec<Vec<Doc>>, RunError> {
        let mut rng = PyRandom::new(seed);
        let mut built: HashMap<usize, Doc> = HashMap::new();
        let mut contexts = Vec::with_capacity(docs.len());
        for doc in docs {
            if self.task.data().fewshot_sampler == FewshotSampler::FirstN {
                contexts.push(self.first_n(&mut built, doc, shots)?);
                continue;
            }
            let drawn = rng.sample(self.rows.len(), shots + usize::from(self.excludes_eval_doc));
            let mut chosen = Vec::with_capacity(shots);
            for index in drawn {
                let shot = self.doc(&mut built, index)?;
                if !(self.excludes_eval_doc && shot.fields == doc.fields) {
                    chosen.push(shot);
                }
            }
            chosen.truncate(shots);
            if chosen.len() < shots {
                // The pool holds copies of the evaluated document: lm-eval redraws from the pool without them.
                let mut others = Vec::new();
                for index in 0..self.rows.len() {
                    if self.doc(&mut built, index)?.fields != doc.fields {
                        others.push(index);
                    }
                }
                if others.len() < shots {
                    return Err(RunError::Plan(format!(
                        "few-shot pool of {} ({}) has {} documents other than copies of document {}; \
                         --num-fewshot {shots} needs {shots}",
                        self.task.name(),
                        self.source,
                        others.len(),
                        doc.id
                    )));
                }
                chosen = rng
                    .sample(others.len(), shots)
                    .into_iter()
                    .map(|i| self.doc(&mut built, others[i]))
                    .collect::<Result<_, _>>()?;
            }
            contexts.push(chosen);
        }
        Ok(contexts)
    }

    /// lm-eval's `FirstNSampler`: the pool's first `shots` documents in order, the evaluated document left out when
    /// the pool excludes it.
    fn first_n(&self, built: &mut HashMap<usize, Doc>, doc: &Doc, shots: usize) -> Result<Vec<Doc>, RunError> {
        let mut chosen = Vec::with_capacity(shots);
        for index in 0..self.rows.len() {
            if chosen.len() == shots {
                break;
            }
            let shot = self.doc(built, index)?;
            if !(self.excludes_eval_doc && shot.fields == doc.fields) {
                chosen.push(shot);
            }
        }
        if chosen.len() < shots {
            return Err(RunError::Plan(format!(
                "few-shot pool of {} ({}) has {} documents other than document {}; --num-fewshot {shots} needs {shots}",
                self.task.name(),
                self.source,
                chosen.len(),
                doc.id
            )));
        }
        Ok(chosen)
    }

    /// The example of pool row `index` (checked against the templates examples are shown with), built once.
    fn doc(&self, built: &mut HashMap<usize, Doc>, index: usize) -> Result<Doc, RunError> {
        if let Some(doc) = built.get(&index) {
            return Ok(doc.clone());
        }
        let doc = self.task.shot_doc(index, &self.rows[index]).map_err(|source| RunError::Task {
            task: self.task.name().to_owned(),
            file: self.source.to_owned(),
            source,
        })?;
        built.insert(index, doc.clone());
        Ok(doc)
    }
}
