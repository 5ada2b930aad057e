//! Aggregation of per-sample scores, as lm-eval's `mean` and `mean_stderr` (`lm_eval/api/metrics.py`).

/// A metric's value over a task, with its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregate {
    /// The mean of the per-sample values.
    pub value: f64,
    /// Sample standard deviation over √n; `None` below two samples, where lm-eval reports "N/A".
    pub stderr: Option<f64>,
}

/// Mean and standard error of the mean: `sqrt(Σ(x − μ)² / (n − 1)) / √n`.
pub fn mean_stderr(values: &[f64]) -> Aggregate {
    let n = values.len() as f64;
    let value = values.iter().sum::<f64>() / n;
    let stderr = (values.len() >= 2).then(|| {
        let variance = values.iter().map(|x| (x - value).powi(2)).sum::<f64>() / (n - 1.0);
        variance.sqrt() / n.sqrt()
    });
    Aggregate { value, stderr }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
