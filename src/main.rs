//! The `ibex` command: parses flags (clap), resolves them into a [`RunConfig`], hands it to the runner, prints the
//! table. A user's mistake ends with one line on stderr and exit code 2, never a backtrace.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use ibex_core::BosPolicy;
use ibex_runner::{results_table, DataOverride, Registry, RunConfig};
use std::path::PathBuf;
use std::process::ExitCode;

/// An evaluation harness for LLMs whose numbers equal lm-evaluation-harness's.
#[derive(Parser)]
#[command(name = "ibex", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a model on tasks.
    Run(Box<RunArgs>),
    /// Compare results folders with published numbers: a table (also written as Markdown), JSON and an SVG chart.
    Compare {
        /// Folders written by `ibex run` (each holding results.json).
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Published-numbers files or folders [default: configs/published].
        #[arg(long)]
        published: Vec<PathBuf>,
        /// Where to write comparison.md, comparison.json and comparison.svg [default: the first results folder].
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List the known tasks.
    Tasks {
        /// Also read task files from this folder (repeatable).
        #[arg(long = "tasks-dir")]
        tasks_dirs: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// A Hugging Face model id (BSC-LT/salamandra-2b) or a local checkpoint folder.
    #[arg(long)]
    model: String,
    /// Hub revision: branch, tag or commit.
    #[arg(long)]
    revision: Option<String>,
    /// Comma-separated task or group names (see `ibex tasks`).
    #[arg(long, value_delimiter = ',', required_unless_present = "suite")]
    tasks: Vec<String>,
    /// A suite: a name in configs/suites (essay, iberian) or a suite file; its tasks run before --tasks.
    #[arg(long)]
    suite: Option<String>,
    /// Also read task files from this folder (repeatable).
    #[arg(long = "tasks-dir")]
    tasks_dirs: Vec<PathBuf>,
    /// Replace a task's data: TASK[:SPLIT]=PATH (jsonl, json, csv, tsv or parquet; repeatable).
    #[arg(long)]
    data: Vec<DataOverride>,
    /// cpu, cuda, cuda:N, or auto (CUDA when built in and a GPU answers).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, bf16 or f16 (f16 on CUDA only).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Requests per forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Evaluate only the first N documents of each task.
    #[arg(long)]
    limit: Option<usize>,
    /// Folder for results.json and sample logs [default: results/<model>].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write samples_<task>.jsonl with every document's requests and scores.
    #[arg(long)]
    log_samples: bool,
    /// Few-shot examples per document, chosen as lm-eval chooses them.
    #[arg(long, default_value_t = 0)]
    num_fewshot: usize,
    /// Seed of the few-shot sampler (lm-eval's fewshot_random_seed).
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Tokens to generate at most, for tasks that do not set it (lm-eval's max_gen_toks).
    #[arg(long, default_value_t = 256)]
    max_gen_toks: usize,
    /// BOS on non-empty strings: auto = the tokenizer's default (lm-eval ≥ 0.4.9.2), false = lm-eval ≤ 0.4.9.
    #[arg(long, value_enum, default_value_t = BosFlag::Auto)]
    add_bos_token: BosFlag,
}

#[derive(Clone, Copy, ValueEnum)]
enum BosFlag {
    Auto,
    True,
    False,
}

impl RunArgs {
    /// The run as the runner takes it: defaults filled in, the suite expanded.
    fn into_config(self) -> Result<RunConfig> {
        let output = self.output.unwrap_or_else(|| {
            let slug: String = self
                .model
                .trim_end_matches('/')
                .chars()
                .map(|c| if c.is_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
                .collect();
            PathBuf::from("results").join(slug.trim_start_matches(['.', '_']))
        });
        let (bos, bos_flag) = match self.add_bos_token {
            BosFlag::Auto => (BosPolicy::Auto, "auto"),
            BosFlag::True => (BosPolicy::Always, "true"),
            BosFlag::False => (BosPolicy::Never, "false"),
        };
        let mut tasks = match &self.suite {
            Some(suite) => ibex_runner::suite_tasks(suite)?,
            None => Vec::new(),
        };
        tasks.extend(self.tasks);
        Ok(RunConfig {
            model: self.model,
            revision: self.revision,
            tasks,
            tasks_dirs: self.tasks_dirs,
            data: self.data,
            device: self.device,
            dtype: self.dtype,
            batch_size: usize::try_from(self.batch_size).unwrap_or(usize::MAX),
            limit: self.limit,
            output,
            log_samples: self.log_samples,
            bos,
            bos_flag: bos_flag.to_owned(),
            num_fewshot: self.num_fewshot,
            fewshot_seed: self.seed,
            max_gen_toks: self.max_gen_toks,
        })
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => {
            let config = args.into_config()?;
            let results = ibex_runner::run(&config)?;
            println!("{}", results_table(&results));
            println!("results written to {}", config.output.join("results.json").display());
        }
        Command::Compare { results, published, output } => {
            let runs = results
                .iter()
                .map(|dir| {
                    let path = dir.join("results.json");
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        anyhow::anyhow!("cannot read {}: {e}; pass folders written by `ibex run`", path.display())
                    })?;
                    serde_json::from_str(&text)
                        .map_err(|e| anyhow::anyhow!("{} is not an ibex results file: {e}", path.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let sources = if published.is_empty() { vec![PathBuf::from("configs/published")] } else { published };
            let mut files = Vec::new();
            for source in &sources {
                if !source.exists() {
                    anyhow::bail!("no published numbers at {}; pass --published FILE_OR_FOLDER", source.display());
                }
                files.extend(ibex_compare::load(source)?);
            }
            let rows = ibex_compare::compare(&runs, &files);
            println!("{}", ibex_compare::terminal_table(&rows));
            let output = output.unwrap_or_else(|| results[0].clone());
            std::fs::create_dir_all(&output)?;
            std::fs::write(output.join("comparison.md"), ibex_compare::markdown(&rows))?;
            std::fs::write(output.join("comparison.json"), serde_json::to_string_pretty(&rows)? + "\n")?;
            std::fs::write(output.join("comparison.svg"), ibex_compare::svg(&rows))?;
            println!("comparison written to {} (.md, .json, .svg)", output.join("comparison").display());
        }
        Command::Tasks { tasks_dirs } => {
            let registry = Registry::load(&tasks_dirs)?;
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            table.set_header(["task", "family", "language", "dataset", "split", "file"]);
            for entry in registry.entries() {
                let data = entry.task.data();
                table.add_row([
                    entry.task.name(),
                    entry.family,
                    &entry.language,
                    &data.dataset,
                    data.eval_split().unwrap_or_default(),
                    &entry.source,
                ]);
            }
            println!("{table}");
            let mut groups = comfy_table::Table::new();
            groups.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            groups.set_header(["group (size-weighted)", "tasks", "file"]);
            for group in registry.groups() {
                groups.add_row([group.group.as_str(), &group.tasks.join(", "), &group.source]);
            }
            println!("{groups}");
        }
    }
    Ok(())
}
