//! Typed metrics and every lm-eval rule for turning per-sample scores into a task's and a group's numbers
//! (`lm_eval/api/metrics.py`), and the one place lm-eval's result keys (`acc,none`, `acc_stderr,none`) are written
//! and read.

use serde_json::Value;

/// Every document's item in, one number out (an error names an item of the wrong shape).
pub type CorpusFn = fn(&[Value]) -> Result<f64, String>;

/// How per-sample items become a task's value.
#[derive(Clone, Copy, Debug)]
pub enum Aggregation {
    /// lm-eval's `mean`, with `mean_stderr` (sample standard deviation over √n): items are numbers.
    Mean,
    /// A corpus-level metric (lm-eval's `matthews_corrcoef`, `f1`, `bleu`): the function sees every item at once.
    Corpus {
        /// lm-eval's name for the aggregation (`matthews_corrcoef`).
        name: &'static str,
        /// The function.
        function: CorpusFn,
        /// Its standard error as lm-eval estimates it (by bootstrap, for the aggregations its `stderr_for_metric`
        /// lists); `None` where lm-eval reports "N/A".
        stderr: Option<CorpusFn>,
    },
}

/// A metric a task reports: lm-eval's `metric_list` entry.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// lm-eval's metric name (`acc`, `exact_match`).
    pub name: &'static str,
    /// lm-eval's `higher_is_better`.
    pub higher_is_better: bool,
    /// How items aggregate.
    pub aggregation: Aggregation,
}

impl Metric {
    /// Accuracy: 1 when the most likely choice is the gold one.
    pub const ACC: Metric = Metric { name: "acc", higher_is_better: true, aggregation: Aggregation::Mean };
    /// Accuracy of the most likely choice per character of the choice (lm-eval's `acc_norm`).
    pub const ACC_NORM: Metric = Metric { name: "acc_norm", higher_is_better: true, aggregation: Aggregation::Mean };
    /// SQuAD's exact match, in [0, 1].
    pub const EXACT_MATCH: Metric =
        Metric { name: "exact_match", higher_is_better: true, aggregation: Aggregation::Mean };
    /// SQuAD's token F1, in [0, 1].
    pub const F1: Metric = Metric { name: "f1", higher_is_better: true, aggregation: Aggregation::Mean };
    /// Accuracy of the most likely choice per byte of the choice in UTF-8 (lm-eval's `acc_bytes`).
    pub const ACC_BYTES: Metric = Metric { name: "acc_bytes", higher_is_better: true, aggregation: Aggregation::Mean };
    /// A multiple-choice task's `f1`: scikit-learn's binary F1 of class 1 over `[gold, prediction]` items (lm-eval's
    /// `f1` aggregation, `f1_score(golds, preds)`).
    pub const F1_CHOICE: Metric = Metric {
        name: "f1",
        higher_is_better: true,
        aggregation: Aggregation::Corpus { name: "f1", function: binary_f1, stderr: Some(binary_f1_stderr) },
    };
    /// Matthews correlation over `[gold, prediction]` items (lm-eval's `mcc`, as scikit-learn's `matthews_corrcoef`).
    pub const MCC: Metric = Metric {
        name: "mcc",
        higher_is_better: true,
        aggregation: Aggregation::Corpus {
            name: "matthews_corrcoef",
            function: matthews_corrcoef,
            stderr: Some(matthews_corrcoef_stderr),
        },
    };

    /// lm-eval's `perplexity` of a `loglikelihood` task: `exp(-mean)` of the documents' log-likelihoods (natural
    /// log), lower is better; its standard error is lm-eval's bootstrap.
    pub const PERPLEXITY: Metric = Metric {
        name: "perplexity",
        higher_is_better: false,
        aggregation: Aggregation::Corpus { name: "perplexity", function: perplexity, stderr: Some(perplexity_stderr) },
    };

    /// Whether the metric is a proportion (shown as a percentage) rather than a quantity such as perplexity.
    pub fn is_proportion(name: &str) -> bool {
        !name.ends_with("perplexity") && name != "bits_per_byte"
    }

    /// Aggregates one task's items: the value and, for means of two or more items, the standard error.
    pub fn aggregate(&self, items: &[Value]) -> Result<Aggregate, String> {
        match self.aggregation {
            Aggregation::Mean => {
                let values = items
                    .iter()
                    .map(|item| item.as_f64().ok_or_else(|| format!("`{}` item {item} is not a number", self.name)))
                    .collect::<Result<Vec<f64>, String>>()?;
                Ok(mean_stderr(&values))
            }
            Aggregation::Corpus { function, stderr, .. } => {
                // lm-eval bootstraps only when there are at least two items.
                let stderr = match stderr.filter(|_| items.len() > 1) {
                    Some(stderr) => Some(stderr(items)?),
                    None => None,
                };
                Ok(Aggregate { value: function(items)?, stderr })
            }
        }
    }

    /// The aggregation's name in lm-eval's `metric_list` (`mean`, `matthews_corrcoef`).
    pub fn aggregation_name(&self) -> &'static str {
        match self.aggregation {
            Aggregation::Mean => "mean",
            Aggregation::Corpus { name, .. } => name,
        }
    }
}

/// A metric's value over a task, with its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregate {
    /// The metric's value.
    pub value: f64,
    /// Its standard error; `None` where lm-eval reports "N/A".
    pub stderr: Option<f64>,
}

/// Mean and standard error of the mean: `sqrt(Σ(x − μ)² / (n − 1)) / √n`; no stderr below two samples.
pub fn mean_stderr(values: &[f64]) -> Aggregate {
    let n = values.len() as f64;
    let value = values.iter().sum::<f64>() / n;
    let stderr = (values.len() >= 2).then(|| {
        let variance = values.iter().map(|x| (x - value).powi(2)).sum::<f64>() / (n - 1.0);
        variance.sqrt() / n.sqrt()
    });
    Aggregate { value, stderr }
}

/// A group's value from its tasks' `(documents, aggregate)`, as lm-eval's `aggregate_subtask_metrics` computes it:
/// with `weight_by_size`, the size-weighted mean and the pooled standard error (`pooled_sample_stderr`); without, the
/// plain mean of the members' values and `sqrt(Σ se²) / k` (`unweighted_mean_stderr`). The standard error is "N/A"
/// when any member has none.
pub fn group_aggregate(members: &[(usize, Aggregate)], weight_by_size: bool) -> Aggregate {
    let sizes: Vec<f64> = members.iter().map(|(n, _)| *n as f64).collect();
    let weights: Vec<f64> = if weight_by_size { sizes.clone() } else { vec![1.0; sizes.len()] };
    let value = members.iter().zip(&weights).map(|((_, a), w)| a.value * w).sum::<f64>() / weights.iter().sum::<f64>();
    let stderrs: Option<Vec<f64>> = members.iter().map(|(_, a)| a.stderr).collect();
    let stderr = stderrs.map(|stderrs| {
        if !weight_by_size {
            return stderrs.iter().map(|se| se * se).sum::<f64>().sqrt() / stderrs.len() as f64;
        }
        let total: f64 = sizes.iter().sum();
        let pooled_variance = stderrs.iter().zip(&sizes).map(|(se, n)| (n - 1.0) * se * se * n).sum::<f64>()
            / (total - sizes.len() as f64);
        (pooled_variance / total).sqrt()
    });
    Aggregate { value, stderr }
}

/// `[gold, prediction]` items as pairs of class ids (the labels as printed, sorted), with the number of classes.
fn class_pairs(items: &[Value], metric: &str) -> Result<(Vec<(usize, usize)>, usize), String> {
    let labels = items
        .iter()
        .map(|item| match item.as_array().map(Vec::as_slice) {
            Some([gold, predicted]) => Ok((gold.to_string(), predicted.to_string())),
            _ => Err(format!("`{metric}` item {item} is not [gold, prediction]")),
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut classes: Vec<&String> = labels.iter().flat_map(|(g, p)| [g, p]).collect();
    classes.sort();
    classes.dedup();
    let index = |label: &String| classes.binary_search(&label).expect("every label is a class");
    Ok((labels.iter().map(|(g, p)| (index(g), index(p))).collect(), classes.len()))
}

/// Matthews correlation of class-id pairs over `k` classes (scikit-learn's multiclass formula); 0 when undefined.
fn mcc_of(pairs: &[(usize, usize)], k: usize) -> f64 {
    let mut confusion = vec![0.0_f64; k * k];
    for &(gold, predicted) in pairs {
        confusion[gold * k + predicted] += 1.0;
    }
    let true_counts: Vec<f64> = (0..k).map(|i| confusion[i * k..(i + 1) * k].iter().sum()).collect();
    let predicted_counts: Vec<f64> = (0..k).map(|j| (0..k).map(|i| confusion[i * k + j]).sum()).collect();
    let correct: f64 = (0..k).map(|i| confusion[i * k + i]).sum();
    let total = pairs.len() as f64;
    let covariance = correct * total - predicted_counts.iter().zip(&true_counts).map(|(p, t)| p * t).sum::<f64>();
    let predicted_spread = total * total - predicted_counts.iter().map(|p| p * p).sum::<f64>();
    let true_spread = total * total - true_counts.iter().map(|t| t * t).sum::<f64>();
    let denominator = (predicted_spread * true_spread).sqrt();
    if denominator == 0.0 {
        0.0
    } else {
        covariance / denominator
    }
}

/// scikit-learn's `matthews_corrcoef` over `[gold, prediction]` items of any number of classes; 0 when undefined.
pub fn matthews_corrcoef(items: &[Value]) -> Result<f64, String> {
    let (pairs, k) = class_pairs(items, "mcc")?;
    Ok(mcc_of(&pairs, k))
}

/// lm-eval's bootstrap standard error of `matthews_corrcoef`.
pub fn matthews_corrcoef_stderr(items: &[Value]) -> Result<f64, String> {
    let (pairs, k) = class_pairs(items, "mcc")?;
    Ok(bootstrap_stderr(&pairs, |resample| mcc_of(resample, k)))
}

/// scikit-learn's `f1_score(golds, preds, average="macro")` over `[gold, prediction]` items: the unweighted mean over
/// every label seen (gold or predicted) of that label's F1, 0 for a label never predicted nor gold-correct (its
/// `zero_division`). portuguese_bench's `assin2_utils.macro_f1` aggregates `f1` items with it (lm-eval reports no
/// standard error for it).
pub fn macro_f1(items: &[Value]) -> Result<f64, String> {
    let (pairs, k) = class_pairs(items, "f1")?;
    if k == 0 {
        return Ok(0.0);
    }
    let f1 = |label: usize| {
        let tp = pairs.iter().filter(|&&(g, p)| g == label && p == label).count() as f64;
        let predicted = pairs.iter().filter(|&&(_, p)| p == label).count() as f64;
        let gold = pairs.iter().filter(|&&(g, _)| g == label).count() as f64;
        if predicted + gold == 0.0 {
            0.0
        } else {
            2.0 * tp / (predicted + gold)
        }
    };
    Ok((0..k).map(f1).sum::<f64>() / k as f64)
}

/// `[gold, prediction]` items as (gold is 1, prediction is 1); an error for labels other than 0 and 1, as
/// scikit-learn's binary F1 refuses them.
fn binary_pairs(items: &[Value]) -> Result<Vec<(usize, usize)>, String> {
    items
        .iter()
        .map(|item| {
            let pair = item.as_array().map(Vec::as_slice);
            match pair {
                Some([g, p]) => match (g.as_i64(), p.as_i64()) {
                    (Some(g @ (0 | 1)), Some(p @ (0 | 1))) => Ok((g as usize, p as usize)),
                    _ => Err(format!(
                        "`f1` item {item}: binary F1 needs labels 0 and 1 (scikit-learn's average='binary')"
                    )),
                },
                _ => Err(format!("`f1` item {item} is not [gold, prediction]")),
            }
        })
        .collect()
}

/// Binary F1 of class 1 over (gold, prediction) pairs of 0 and 1; 0 when no pair is positive in either.
fn f1_of(pairs: &[(usize, usize)]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for &pair in pairs {
        match pair {
            (1, 1) => tp += 1.0,
            (0, 1) => fp += 1.0,
            (1, 0) => fn_ += 1.0,
            _ => {}
        }
    }
    let denominator = 2.0 * tp + fp + fn_;
    if denominator == 0.0 {
        0.0
    } else {
        2.0 * tp / denominator
    }
}

/// scikit-learn's `f1_score(golds, preds)` (binary, positive class 1) over `[gold, prediction]` items; 0 when no item
/// is positive in either (its `zero_division`); an error for labels other than 0 and 1, as scikit-learn refuses them.
pub fn binary_f1(items: &[Value]) -> Result<f64, String> {
    Ok(f1_of(&binary_pairs(items)?))
}

/// lm-eval's bootstrap standard error of the binary `f1`.
pub fn binary_f1_stderr(items: &[Value]) -> Result<f64, String> {
    Ok(bootstrap_stderr(&binary_pairs(items)?, f1_of))
}

/// Numeric items, or an error naming the metric and the first item that is not a number.
fn numbers(items: &[Value], metric: &str) -> Result<Vec<f64>, String> {
    items.iter().map(|item| item.as_f64().ok_or_else(|| format!("`{metric}` item {item} is not a number"))).collect()
}

/// lm-eval's `perplexity` aggregation: `math.exp(-mean(items))`, the mean summed in order as Python's `sum`.
fn perplexity_of(values: &[f64]) -> f64 {
    (-(values.iter().sum::<f64>() / values.len() as f64)).exp()
}

/// lm-eval's `perplexity` over log-likelihood items.
pub fn perplexity(items: &[Value]) -> Result<f64, String> {
    Ok(perplexity_of(&numbers(items, "perplexity")?))
}

/// lm-eval's bootstrap standard error of `perplexity` (it is in `stderr_for_metric`'s bootstrappable list).
pub fn perplexity_stderr(items: &[Value]) -> Result<f64, String> {
    Ok(bootstrap_stderr(&numbers(items, "perplexity")?, perplexity_of))
}

/// lm-eval's `bootstrap_stderr` (`lm_eval/api/metrics.py`) at its default 100,000 iterations: 100 chunks of 1,000
/// resamples, chunk `i` drawn by `random.Random(i).choices(items, k=len(items))`, then the sample standard deviation
/// of the 100,000 statistics. The draws are CPython's, so the value is lm-eval's up to float rounding. Chunks run on
/// every core and are joined in order.
fn bootstrap_stderr<T: Copy + Send + Sync>(items: &[T], statistic: impl Fn(&[T]) -> f64 + Sync) -> f64 {
    use rayon::prelude::*;
    const ITERATIONS: u64 = 100_000;
    const CHUNK: u64 = 1_000;
    let chunks: Vec<Vec<f64>> = (0..ITERATIONS / CHUNK)
        .into_par_iter()
        .map(|seed| {
            let mut rng = crate::PyRandom::new(seed);
            let mut resample = Vec::with_capacity(items.len());
            (0..CHUNK)
                .map(|_| {
                    resample.clear();
                    resample.extend((0..items.len()).map(|_| items[rng.choice_index(items.len())]));
                    statistic(&resample)
                })
                .collect()
        })
        .collect();
    let values: Vec<f64> = chunks.into_iter().flatten().collect();
    // lm-eval's `sample_stddev`: Python's sequential sums.
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// lm-eval's results key of a metric under a filter: `acc,none`.
pub fn metric_key(metric: &str, filter: &str) -> String {
    format!("{metric},{filter}")
}

/// lm-eval's results key of a metric's standard error: `acc_stderr,none`.
pub fn stderr_key(metric: &str, filter: &str) -> String {
    format!("{metric}_stderr,{filter}")
}

/// The metric and filter of a value key (`acc,none` → `("acc", "none")`); `None` for stderr keys and other entries.
pub fn parse_metric_key(key: &str) -> Option<(&str, &str)> {
    key.split_once(',').filter(|(metric, _)| !metric.ends_with("_stderr"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stderr_matches_lm_eval_formula() {
        // Three of four correct: mean 0.75, sample std sqrt(0.25) = 0.5, stderr 0.5 / 2.
        let aggregate = mean_stderr(&[1.0, 1.0, 0.0, 1.0]);
        assert_eq!(aggregate.value, 0.75);
        assert!((aggregate.stderr.unwrap() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn one_sample_has_no_stderr() {
        assert_eq!(mean_stderr(&[1.0]), Aggregate { value: 1.0, stderr: None });
    }

    #[test]
    fn a_non_numeric_mean_item_is_an_error_not_a_panic() {
        let err = Metric::ACC.aggregate(&[json!(1.0), json!("yes")]).unwrap_err();
        assert_eq!(err, "`acc` item \"yes\" is not a number");
    }

    #[test]
    fn macro_f1_equals_scikit_learns() {
        // sklearn.metrics.f1_score([0, 1, 1, 2, 0], [0, 1, 0, 1, 1], average="macro") = 0.3: label 0 F1 1/2,
        // label 1 2/5, label 2 0 (never predicted).
        let items: Vec<Value> = [(0, 0), (1, 1), (1, 0), (2, 1), (0, 1)].iter().map(|(g, p)| json!([g, p])).collect();
        assert!((macro_f1(&items).unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(macro_f1(&[json!(1)]).unwrap_err(), "`f1` item 1 is not [gold, prediction]");
    }

    #[test]
    fn matthews_corrcoef_equals_scikit_learns() {
        // sklearn.metrics.matthews_corrcoef([1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]) = 0.3333333333333333
        let items: Vec<Value> =
            [(1, 1), (1, 0), (0, 0), (0, 0), (1, 1), (0, 1)].iter().map(|(g, p)| json!([g, p])).collect();
        let mcc = Metric::MCC.aggregate(&items).unwrap();
        assert!((mcc.value - 1.0 / 3.0).abs() < 1e-12, "{mcc:?}");
        // lm-eval 0.4.13's bootstrap_stderr(matthews_corrcoef, items, 100000) = 0.41171055478744356
        assert!((mcc.stderr.unwrap() - 0.411_710_554_787_443_56).abs() < 1e-12, "{mcc:?}");
        // Three classes: matthews_corrcoef([0, 1, 2, 2, 1], [0, 2, 2, 2, 1]) = 0.7349684152591671
        let items: Vec<Value> = [(0, 0), (1, 2), (2, 2), (2, 2), (1, 1)].iter().map(|(g, p)| json!([g, p])).collect();
        assert!((matthews_corrcoef(&items).unwrap() - 0.734_968_415_259_167_1).abs() < 1e-12);
        // A constant prediction leaves it undefined: scikit-learn returns 0.
        assert_eq!(matthews_corrcoef(&[json!([0, 1]), json!([1, 1])]).unwrap(), 0.0);
    }

    #[test]
    fn binary_f1_equals_scikit_learns() {
        // sklearn.metrics.f1_score([1, 0, 1, 1, 0], [1, 1, 0, 1, 0]) = 0.6666666666666666
        let items: Vec<Value> = [(1, 1), (0, 1), (1, 0), (1, 1), (0, 0)].iter().map(|(g, p)| json!([g, p])).collect();
        assert!((binary_f1(&items).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // lm-eval 0.4.13's bootstrap_stderr(f1_score, items, 100000) = 0.25707440309289226
        let f1 = Metric::F1_CHOICE.aggregate(&items).unwrap();
        assert!((f1.stderr.unwrap() - 0.257_074_403_092_892_26).abs() < 1e-12, "{f1:?}");
        // One item: no bootstrap, as lm-eval's "N/A".
        assert_eq!(Metric::F1_CHOICE.aggregate(&items[..1]).unwrap().stderr, None);
        assert_eq!(binary_f1(&[json!([0, 0])]).unwrap(), 0.0);
        assert!(binary_f1(&[json!([2, 0])]).unwrap_err().contains("labels 0 and 1"));
    }

    #[test]
    fn perplexity_and_its_bootstrap_equal_lm_evals() {
        let items: Vec<Value> = [-1.5, -2.25, -0.5, -3.0, -1.0].iter().map(|&ll| json!(ll)).collect();
        let ppl = Metric::PERPLEXITY.aggregate(&items).unwrap();
        // lm-eval 0.4.13: perplexity(items) = 5.206979827179849,
        // bootstrap_stderr(perplexity, items, 100000) = 2.3538103653187283
        assert!((ppl.value - 5.206_979_827_179_849).abs() < 1e-12, "{ppl:?}");
        assert!((ppl.stderr.unwrap() - 2.353_810_365_318_728_3).abs() < 1e-12, "{ppl:?}");
        assert_eq!(perplexity(&[json!("x")]).unwrap_err(), "`perplexity` item \"x\" is not a number");
    }

    #[test]
    fn group_aggregate_weights_by_size_and_pools_stderr() {
        let a = mean_stderr(&[1.0, 0.0, 1.0, 1.0]);
        let b = mean_stderr(&[0.0, 0.0]);
        let group = group_aggregate(&[(4, a), (2, b)], true);
        assert!((group.value - 0.5).abs() < 1e-12);
        // Σ (n−1)·se²·n / (N − k) = (3·(0.25²)·4 + 1·0·2) / 4 = 0.1875; / N = 0.03125.
        assert!((group.stderr.unwrap() - 0.03125_f64.sqrt()).abs() < 1e-12);
        // Unweighted: (0.75 + 0) / 2, and sqrt(0.25² + 0²) / 2.
        let plain = group_aggregate(&[(4, a), (2, b)], false);
        assert!((plain.value - 0.375).abs() < 1e-12);
        assert!((plain.stderr.unwrap() - 0.125).abs() < 1e-12);
    }

    #[test]
    fn result_keys_are_written_and_read_in_one_format() {
        assert_eq!(metric_key("acc", "none"), "acc,none");
        assert_eq!(stderr_key("acc", "none"), "acc_stderr,none");
        assert_eq!(parse_metric_key("exact_match,none"), Some(("exact_match", "none")));
        assert_eq!(parse_metric_key("acc_stderr,none"), None);
        assert_eq!(parse_metric_key("n"), None);
    }
}
