//! The table printed at the end of a run.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use ibex_core::results::RunResults;

/// One row per task and metric: value and stderr as percentages, labelled, and the number of documents.
pub fn results_table(results: &RunResults) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(["task", "metric", "value (%)", "± stderr (%)", "n"]);
    for (task, metrics) in &results.results {
        for (key, value) in metrics {
            let Some(metric) = key.strip_suffix(",none").filter(|m| !m.ends_with("_stderr")) else { continue };
            let stderr = metrics.get(&format!("{metric}_stderr,none")).and_then(|v| v.as_f64());
            let percent = |v: f64| format!("{:.2}", v * 100.0);
            table.add_row([
                Cell::new(task),
                Cell::new(metric),
                Cell::new(value.as_f64().map_or("-".into(), percent)).set_alignment(CellAlignment::Right),
                Cell::new(stderr.map_or("N/A".into(), percent)).set_alignment(CellAlignment::Right),
                Cell::new(metrics.get("n").map_or(String::new(), |n| n.to_string()))
                    .set_alignment(CellAlignment::Right),
            ]);
        }
    }
    table
}
