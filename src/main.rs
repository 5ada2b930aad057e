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
    /// Comma-separated task names (see `ibex tasks`).
    #[arg(long, value_delimiter = ',', required = true)]
    tasks: Vec<String>,
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
    /// The run as the runner takes it: defaults filled in.
    fn into_config(self) -> RunConfig {
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
        RunConfig {
            model: self.model,
            revision: self.revision,
            tasks: self.tasks,
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
        }
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
            let config = args.into_config();
            let results = ibex_runner::run(&config)?;
            println!("{}", results_table(&results));
            println!("results written to {}", config.output.join("results.json").display());
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
