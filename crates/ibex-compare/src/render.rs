//! A comparison as a person reads it: a terminal table in colour, Markdown, and an SVG chart with the measured 95%
//! interval beside the published value.

use crate::{ComparisonRow, Verdict};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Color, Table};

const HEADER: [&str; 11] = [
    "task",
    "metric",
    "model",
    "measured (%)",
    "95% CI (%)",
    "published (%)",
    "Δ (pp)",
    "verdict",
    "source",
    "published with",
    "run",
];

fn percent(value: f64) -> String {
    format!("{:.2}", value * 100.0)
}

/// The cells of a row, as text.
fn cells(row: &ComparisonRow) -> [String; 11] {
    let measured = match (row.measured, row.stderr) {
        (Some(m), Some(se)) => format!("{} ± {}", percent(m), percent(se)),
        (Some(m), None) => percent(m),
        (None, _) => "—".into(),
    };
    let interval = row.interval.map_or("—".into(), |(low, high)| format!("{}–{}", percent(low), percent(high)));
    let published = row.published.as_ref().map_or("—".into(), |p| {
        let shown = match (p.value, p.range) {
            (_, Some([low, high])) => {
                format!("{:.*}–{:.*}", p.decimals as usize, low * 100.0, p.decimals as usize, high * 100.0)
            }
            (Some(v), None) => format!("{:.*}", p.decimals as usize, v * 100.0),
            (None, None) => "—".into(),
        };
        if p.verified {
            shown
        } else {
            format!("{shown} (unverified)")
        }
    });
    let delta = row.delta.map_or("—".into(), |d| format!("{:+.2}", d * 100.0));
    [
        row.task.clone(),
        row.metric.clone(),
        row.model.clone(),
        measured,
        interval,
        published,
        delta,
        row.verdict.label().to_owned(),
        match (&row.source, row.published.as_ref().and_then(|p| p.reading.as_ref())) {
            (Some(source), Some(reading)) => format!("{source} (read as {reading})"),
            (source, _) => source.clone().unwrap_or_default(),
        },
        row.needs.clone(),
        row.run.clone(),
    ]
}

/// The comparison as a terminal table, verdicts in colour.
pub fn terminal_table(rows: &[ComparisonRow]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(HEADER);
    for row in rows {
        let colour = match row.verdict {
            Verdict::Consistent => Color::Green,
            Verdict::Higher | Verdict::Lower => Color::Red,
            Verdict::NoPublished | Verdict::NotMeasured | Verdict::NotComparable => Color::DarkGrey,
        };
        let texts = cells(row);
        let mut line: Vec<Cell> = texts.iter().map(Cell::new).collect();
        for numeric in 3..7 {
            line[numeric] = Cell::new(&texts[numeric]).set_alignment(CellAlignment::Right);
        }
        line[7] = Cell::new(&texts[7]).fg(colour);
        table.add_row(line);
    }
    table
}

/// The comparison as a Markdown table, with the notes of unverified or annotated published values below it.
pub fn markdown(rows: &[ComparisonRow]) -> String {
    let mut out = format!("| {} |\n|{}|\n", HEADER.join(" | "), ["---"; 11].join("|"));
    for row in rows {
        out.push_str(&format!("| {} |\n", cells(row).join(" | ")));
    }
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            let note = r.published.as_ref().and_then(|p| p.note.clone());
            note.into_iter()
                .chain(r.mismatch.clone())
                .map(|n| format!("- {} / {} / {}: {n}", r.task, r.metric, r.model))
        })
        .collect();
    if !notes.is_empty() {
        out.push_str(&format!("\nNotes:\n{}\n", notes.join("\n")));
    }
    out.push_str("\nMeasured values ± standard error; consistent = the published value, widened by its rounding, meets the 95% interval.\n");
    out
}

/// The comparison as an SVG chart: one line per row, the measured value with its 95% interval (blue) beside the
/// published value or range (orange), on a 0–100% axis.
pub fn svg(rows: &[ComparisonRow]) -> String {
    const LABEL: f64 = 400.0;
    const PLOT: f64 = 520.0;
    const LINE: f64 = 34.0;
    let height = 70.0 + LINE * rows.len() as f64;
    let x = |fraction: f64| LABEL + fraction.clamp(0.0, 1.0) * PLOT;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        w = LABEL + PLOT + 170.0
    );
    for tick in 0..=10 {
        let tx = x(f64::from(tick) / 10.0);
        out.push_str(&format!(
            "<line x1=\"{tx}\" y1=\"30\" x2=\"{tx}\" y2=\"{}\" stroke=\"#e5e5e5\"/><text x=\"{tx}\" y=\"22\" text-anchor=\"middle\" fill=\"#666\">{}%</text>\n",
            height - 30.0,
            tick * 10
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        let y = 50.0 + LINE * i as f64;
        let label = escape(&format!("{} · {} · {}", row.task, row.metric, row.model));
        out.push_str(&format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\n", LABEL - 10.0, y + 4.0));
        if let Some(p) = &row.published {
            match (p.value, p.range) {
                (_, Some([low, high])) => out.push_str(&format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"10\" fill=\"#f28e2b\" opacity=\"0.6\"/>\n",
                    x(low),
                    y - 5.0,
                    (x(high) - x(low)).max(2.0)
                )),
                (Some(v), None) => out.push_str(&format!(
                    "<path d=\"M {0} {1} l 6 6 l -6 6 l -6 -6 z\" fill=\"#f28e2b\"/>\n",
                    x(v),
                    y - 6.0
                )),
                (None, None) => {}
            }
        }
        if let Some(m) = row.measured {
            if let Some((low, high)) = row.interval {
                out.push_str(&format!(
                    "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#4e79a7\" stroke-width=\"2\"/>\n",
                    x(low),
                    x(high)
                ));
            }
            out.push_str(&format!("<circle cx=\"{}\" cy=\"{y}\" r=\"5\" fill=\"#4e79a7\"/>\n", x(m)));
        }
        let colour = match row.verdict {
            Verdict::Consistent => "#2e7d32",
            Verdict::Higher | Verdict::Lower => "#c62828",
            Verdict::NoPublished | Verdict::NotMeasured | Verdict::NotComparable => "#777",
        };
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>\n",
            LABEL + PLOT + 12.0,
            y + 4.0,
            row.verdict.label()
        ));
    }
    out.push_str(&format!(
        "<circle cx=\"{0}\" cy=\"{1}\" r=\"5\" fill=\"#4e79a7\"/><text x=\"{2}\" y=\"{3}\">measured, 95% interval</text>\n\
         <path d=\"M {4} {5} l 6 6 l -6 6 l -6 -6 z\" fill=\"#f28e2b\"/><text x=\"{6}\" y=\"{3}\">published</text>\n</svg>\n",
        LABEL,
        height - 14.0,
        LABEL + 10.0,
        height - 10.0,
        LABEL + 190.0,
        height - 20.0,
        LABEL + 200.0
    ));
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
