//! The `ibex` command: parses flags (clap) into [`RunSettings`], resolves them into a [`Plan`] before any weight
//! loads, picks the backend (Candle, on the plan's device and dtype) and hands both to the runner, then prints the
//! table. A user's mistake ends with one line on stderr and exit code 2, never a backtrace.

use anyhow::Result;
use clap::{Parser, Subcommand};
use ibex_candle::{candle_dtype, device_handles, CandleModel};
use ibex_core::cache::CachedModel;
use ibex_core::placement::Placement;
use ibex_core::results::Shard;
use ibex_core::{BatchSize, BosPolicy, DeviceSpec, Devices, Dtype, MaxMemory, TemplateLm, TokenModel};
use ibex_runner::{
    check_tables, fetched_table, placement_table, plan_tables, results_table, ChatSettings, DataOverride, Plan,
    Registry, RunSettings,
};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` that ends the process quietly when stdout is closed (`ibex tasks | head`), as Unix tools do.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            if error.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("error: cannot write to stdout: {error}");
            }
            std::process::exit(if error.kind() == std::io::ErrorKind::BrokenPipe { 0 } else { 1 });
        }
    }};
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// What `ibex run` wrote: its --output folder, the model folder in it, or a results_<date>.json file (the
        /// newest in a folder is read).
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Published-numbers files or folders [default: the shipped configs/published].
        #[arg(long)]
        published: Vec<PathBuf>,
        /// Where to write comparison.md, comparison.json and comparison.svg [default: the first results folder].
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Download everything `ibex run` with the same flags needs into the Hugging Face cache (the checkpoint and its
    /// weights, every task's data files), so an offline compute node can then run with HF_HUB_OFFLINE=1.
    Fetch(Box<RunArgs>),
    /// Join the folders of `ibex run --shard I/N` runs into the results and sample logs of the unsharded run.
    Merge {
        /// Folder for the merged results and sample logs (under <folder>/<model>/, as a run writes them).
        output: PathBuf,
        /// The shard folders, all N of them, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// The --tasks-dir folders the shards used (repeatable).
        #[arg(long = "tasks-dir")]
        tasks_dirs: Vec<PathBuf>,
    },
    /// List the known tasks.
    Tasks {
        /// Also read task files from this folder (repeatable).
        #[arg(long = "tasks-dir")]
        tasks_dirs: Vec<PathBuf>,
        /// Report, for every lm-eval YAML task and group under the --tasks-dir folders, whether ibex loads it (every
        /// key, template and hook one ibex has) or why not, with counts per folder and the commonest reasons.
        #[arg(long, requires = "tasks_dirs")]
        check: bool,
        /// The recipe set to list: lm-eval or bsc (BSC's fork).
        #[arg(long, default_value = "lm-eval")]
        recipes: ibex_runner::Recipes,
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
    /// A suite: a shipped name (essay, iberian) or a suite file; its tasks run before --tasks.
    #[arg(long)]
    suite: Option<String>,
    /// Also read task files from this folder (repeatable).
    #[arg(long = "tasks-dir")]
    tasks_dirs: Vec<PathBuf>,
    /// Whose task definitions to mirror: lm-eval (lm-eval 0.4.13's) or bsc (BSC's fork of lm-eval, whose NLI tasks
    /// filter and normalise documents differently and which BSC's numbers since 2025-04-08 come from).
    #[arg(long, default_value = "lm-eval")]
    recipes: ibex_runner::Recipes,
    /// Replace a task's data: TASK[:SPLIT]=PATH (jsonl, json, csv, tsv or parquet; repeatable).
    #[arg(long)]
    data: Vec<DataOverride>,
    /// cpu, cuda:N, cuda (every visible GPU), a comma-separated list of handles (cuda:0,cuda:1 or cpu,cpu; a device
    /// may be named twice), or auto (every GPU when built with CUDA and one answers, else the CPU). The model is
    /// split over the fewest handles that hold it, layer by layer, and replicated over the rest.
    #[arg(long, default_value = "cpu")]
    device: Devices,
    /// Memory each device handle may use, weights plus a 10% reserve for activations: one size for all (40GiB),
    /// one per --device entry (30GiB,30GiB), or per device (cuda:0=60GiB,cuda:1=60GiB) [default: what each device
    /// has free, shared by its handles].
    #[arg(long, value_name = "SIZES")]
    max_memory: Option<MaxMemory>,
    /// f32, bf16 or f16 (f16 on CUDA only) [default: the model's recipe in configs/models, else f32].
    #[arg(long)]
    dtype: Option<Dtype>,
    /// Rows per forward pass (a row scores one request, or requests that share a prefix, such as a document's
    /// choices, with the prefix computed once), or auto: the largest that fits, tried on the longest rows first and
    /// halved (the batch retried) whenever the device runs out of memory (lm-eval's --batch_size auto).
    #[arg(long, default_value = "8")]
    batch_size: BatchSize,
    /// The first size --batch-size auto tries (lm-eval's --max_batch_size) [default: 64].
    #[arg(long)]
    max_batch_size: Option<NonZeroUsize>,
    /// Evaluate only the first N documents of each task.
    #[arg(long)]
    limit: Option<usize>,
    /// Evaluate only shard I of N of every task's documents (0 <= I < N), for a Slurm array; `ibex merge` joins
    /// the shards' folders into the unsharded run's results. Writes sample logs.
    #[arg(long)]
    shard: Option<Shard>,
    /// Folder for the run's files, laid out as lm-eval's --output_path: <folder>/<model>/results_<date>.json,
    /// samples_<task>_<date>.jsonl and the resume journal [default: results].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write samples_<task>_<date>.jsonl with every document's requests and scores, as lm-eval writes them.
    #[arg(long)]
    log_samples: bool,
    /// Keep every answer in this folder and reuse it across runs and tasks (lm-eval's --use_cache): keyed by the
    /// checkpoint, its weights, dtype, device kind and the request's token ids.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Recompute everything instead of resuming from this run's journal (a rerun with the same settings resumes).
    #[arg(long)]
    overwrite: bool,
    /// Few-shot examples per document, chosen as lm-eval chooses them [default: each task file's num_fewshot, else
    /// 0]; a task file's `num_fewshot: 0` keeps 0, as in lm-eval.
    #[arg(long)]
    num_fewshot: Option<usize>,
    /// Seed of the few-shot sampler (lm-eval's fewshot_random_seed).
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Tokens to generate at most, for tasks that do not set it (lm-eval's max_gen_toks).
    #[arg(long, default_value_t = ibex_core::DEFAULT_MAX_GEN_TOKS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_gen_toks: u64,
    /// BOS on non-empty strings: auto = the tokenizer's default (lm-eval >= 0.4.9.2), false = lm-eval <= 0.4.9
    /// [default: the model's recipe in configs/models, else auto].
    #[arg(long, value_enum)]
    add_bos_token: Option<BosPolicy>,
    /// Build prompts through the tokenizer's chat template, as lm-eval's --apply_chat_template (instruct models)
    /// [default: the model's recipe in configs/models, else off]. A NAME must be the template lm-eval renders.
    #[arg(long, num_args = 0..=1, value_name = "NAME", conflicts_with = "no_chat_template")]
    apply_chat_template: Option<Option<String>>,
    /// Plain-text prompts even where the model's recipe applies its chat template.
    #[arg(long)]
    no_chat_template: bool,
    /// A system turn before every prompt (lm-eval's --system_instruction).
    #[arg(long, value_name = "TEXT")]
    system_instruction: Option<String>,
    /// Few-shot examples as separate user/assistant turns (true) or one user turn (false); lm-eval's
    /// --fewshot_as_multiturn [default: true with a chat template].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = python_bool)]
    fewshot_as_multiturn: Option<bool>,
    /// Resolve and print the plan (tasks, data files, documents, requests, model files), then stop before loading
    /// the model.
    #[arg(long)]
    dry_run: bool,
}

/// A yes/no flag value as lm-eval's command line spells it, in any case: true, 1, yes; false, 0, no.
fn python_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("`{text}` is not true or false")),
    }
}

impl RunArgs {
    fn settings(self) -> RunSettings {
        RunSettings {
            model: self.model,
            revision: self.revision,
            suite: self.suite,
            tasks: self.tasks,
            tasks_dirs: self.tasks_dirs,
            recipes: self.recipes,
            data: self.data,
            devices: self.device,
            max_memory: self.max_memory.unwrap_or_default(),
            dtype: self.dtype,
            batch_size: match (self.batch_size, self.max_batch_size) {
                (BatchSize::Auto { .. }, Some(max)) => BatchSize::Auto { max },
                (size, _) => size,
            },
            limit: self.limit,
            shard: self.shard,
            output: self.output,
            log_samples: self.log_samples,
            overwrite: self.overwrite,
            add_bos_token: self.add_bos_token,
            num_fewshot: self.num_fewshot,
            fewshot_seed: self.seed,
            max_gen_toks: usize::try_from(self.max_gen_toks).unwrap_or(usize::MAX),
            chat: ChatSettings {
                apply_chat_template: match (&self.apply_chat_template, self.no_chat_template) {
                    (_, true) => Some(false),
                    (Some(_), false) => Some(true),
                    (None, false) => None,
                },
                template_name: self.apply_chat_template.flatten(),
                system_instruction: self.system_instruction,
                fewshot_as_multiturn: self.fewshot_as_multiturn,
            },
        }
    }
}

/// Where the Candle backend puts the model: the plan's device handles, measured (or as `--max-memory` says), and
/// the checkpoint's layers laid over them.
fn lay_out(plan: &Plan) -> Result<Placement> {
    let handles = device_handles(&plan.devices)?;
    let config = ibex_candle::read_config(&plan.model_files.config)?;
    Ok(ibex_candle::placement(&config, plan.dtype, &handles, &plan.max_memory)?)
}

/// Loads the model the plan names with the Candle backend, behind lm-eval's text-level interface (through the
/// response cache when there is one), and runs the plan.
fn run_with_candle(plan: &Plan, cache: Option<&Path>) -> Result<ibex_core::results::RunResults> {
    let placement = lay_out(plan)?;
    let weights = ibex_hub::fetch_weights(&plan.model_files)?;
    let model = CandleModel::load(&plan.model_files.config, &weights, candle_dtype(plan.dtype), &placement)?;
    // One device: its name, as lm-eval records it; several: the placement (`cuda:0[0-23]+cuda:1[24-47] | …`).
    let device = match placement.replicas.as_slice() {
        [stages] if stages.len() == 1 => stages[0].device.to_string(),
        _ => {
            eprintln!("model placed as {placement} (--dry-run shows the memory per device)");
            placement.to_string()
        }
    };
    let mut record = plan.model_record(device);
    record.parameters = ibex_candle::parameter_count(&weights)?;
    let Some(dir) = cache else { return run_model(plan, model, record) };
    // Answers depend on the checkpoint, its weights, the dtype and the kind of device, not on the layout.
    let kinds: std::collections::BTreeSet<&str> =
        placement.replicas.iter().flatten().map(|s| if s.device == DeviceSpec::Cpu { "cpu" } else { "cuda" }).collect();
    let weights: Vec<(String, u64)> =
        weights.iter().map(|w| (w.display().to_string(), std::fs::metadata(w).map(|m| m.len()).unwrap_or(0))).collect();
    let identity = serde_json::json!({
        "model": plan.model, "revision": record.revision, "weights": weights, "dtype": plan.dtype.to_string(),
        "devices": kinds,
    });
    let cached = CachedModel::open(model, dir, &identity)?;
    eprintln!("response cache {} holds {} answer(s)", dir.display(), cached.len());
    run_model(plan, cached, record)
}

/// Runs the plan on a token-level model behind lm-eval's text-level interface.
fn run_model<M: TokenModel>(
    plan: &Plan,
    model: M,
    record: ibex_core::results::ModelRecord,
) -> Result<ibex_core::results::RunResults> {
    let mut model = TemplateLm::new(model, &plan.encoder, plan.generation.clone(), plan.batch_size, plan.max_gen_toks);
    Ok(ibex_runner::run(plan, &mut model, record)?)
}

/// Every run the `paths` hold (folders may hold several, as lm-eval's output folders do), newest first, each task of
/// each model kept from its newest run only.
fn read_runs(paths: &[PathBuf]) -> Result<Vec<ibex_core::results::RunResults>> {
    let mut files = Vec::new();
    for path in paths {
        let found = ibex_core::results::find_all_results(path)
            .map_err(|e| anyhow::anyhow!("{e}; pass what `ibex run` wrote (its --output folder or a file)"))?;
        files.extend(found);
    }
    let mut runs = files
        .iter()
        .map(|file| ibex_core::results::read_results(file).map(|(run, _, _)| run).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    runs.sort_by(|a, b| b.date.total_cmp(&a.date));
    let mut seen = std::collections::HashSet::new();
    for run in &mut runs {
        let model = run.ibex.model.model.clone();
        run.results.retain(|task, _| seen.insert((model.clone(), task.clone())));
    }
    Ok(runs)
}

fn main() -> ExitCode {
    serial_candle_ops();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Candle's element-wise pool runs each op on the calling thread unless the user set `CANDLE_NUM_THREADS`: on the
/// CPU the backend scores one batch per core side by side, and that pool would only make those workers queue for
/// each other (it serves one caller at a time) and spin at its barriers; on a GPU it is idle. Candle reads the
/// variable once, at its first op; this runs before any thread starts.
fn serial_candle_ops() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => {
            if args.max_batch_size.is_some() && !matches!(args.batch_size, BatchSize::Auto { .. }) {
                anyhow::bail!("--max-batch-size is the first size --batch-size auto tries; add --batch-size auto");
            }
            let dry_run = args.dry_run;
            let cache = args.cache.clone();
            let plan = Plan::resolve(args.settings())?;
            if let Some((source, applied)) = &plan.recipe {
                eprintln!("{} from {source} (the flags override it)", applied.join(" and "));
            }
            if dry_run {
                let placement = lay_out(&plan)?;
                say!("{}\n{}", plan_tables(&plan), placement_table(&placement));
                let gpus = placement.replicas.iter().flatten().any(|s| matches!(s.device, DeviceSpec::Cuda(_)));
                if gpus && !cfg!(feature = "cuda") {
                    eprintln!(
                        "note: this ibex was built without CUDA; the run itself needs a build with \
                         `cargo build --release --features cuda`"
                    );
                }
                return Ok(());
            }
            let results = run_with_candle(&plan, cache.as_deref())?;
            say!("{}", results_table(&results));
            say!(
                "{} task(s) in {:.1}s; results and sample logs written to {}",
                results.ibex.tasks.len(),
                results.ibex.seconds,
                plan.output.display()
            );
        }
        Command::Fetch(args) => {
            if ibex_hub::offline() {
                anyhow::bail!("ibex fetch downloads from the hub, and HF_HUB_OFFLINE forbids it; unset HF_HUB_OFFLINE");
            }
            let plan = Plan::resolve(args.settings())?;
            let weights = ibex_hub::fetch_weights(&plan.model_files)?;
            say!("{}", fetched_table(&plan, &weights));
        }
        Command::Compare { results, published, output } => {
            let runs = read_runs(&results)?;
            let mut files = if published.is_empty() { ibex_compare::shipped()? } else { Vec::new() };
            for source in &published {
                if !source.exists() {
                    anyhow::bail!("no published numbers at {}; pass --published FILE_OR_FOLDER", source.display());
                }
                files.extend(ibex_compare::load(source)?);
            }
            let rows = ibex_compare::compare(&runs, &files);
            say!("{}", ibex_compare::terminal_table(&rows));
            let given = &results[0];
            let given = if given.is_dir() { given.clone() } else { given.parent().map(Into::into).unwrap_or_default() };
            let output = output.unwrap_or(given);
            let write = |name: &str, text: String| {
                let path = output.join(name);
                std::fs::create_dir_all(&output)
                    .and_then(|()| std::fs::write(&path, text))
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}; --output names a folder", path.display()))
            };
            write("comparison.md", ibex_compare::markdown(&rows))?;
            write("comparison.json", serde_json::to_string_pretty(&rows)? + "\n")?;
            write("comparison.svg", ibex_compare::svg(&rows))?;
            say!("comparison written to {} (.md, .json, .svg)", output.join("comparison").display());
        }
        Command::Merge { output, shards, tasks_dirs } => {
            let (results, path) = ibex_runner::merge(&output, &shards, &tasks_dirs)?;
            say!("{}", results_table(&results));
            say!("{} shard(s) merged into {}", shards.len(), path.display());
        }
        Command::Tasks { tasks_dirs, check, recipes } => {
            let registry = Registry::load(&tasks_dirs, recipes)?;
            if check {
                say!("{}", check_tables(&registry, &tasks_dirs));
                return Ok(());
            }
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            table.set_header(["benchmark", "task", "language", "dataset", "split", "mirrors", "file"]);
            let mut entries: Vec<_> = registry.entries().collect();
            entries.sort_by(|a, b| (&a.benchmark, a.task.name()).cmp(&(&b.benchmark, b.task.name())));
            for entry in entries {
                let data = entry.task.data();
                table.add_row([
                    &entry.benchmark,
                    entry.task.name(),
                    entry.task.language(),
                    &data.dataset,
                    data.eval_split().unwrap_or_default(),
                    entry.mirrors(),
                    &entry.source,
                ]);
            }
            say!("{table}");
            let mut groups = comfy_table::Table::new();
            groups.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            groups.set_header(["group (size-weighted)", "tasks", "file"]);
            for group in registry.groups() {
                groups.add_row([group.group.as_str(), &group.tasks.join(", "), &group.source]);
            }
            say!("{}", wrapped(groups));
            let mut tags = comfy_table::Table::new();
            tags.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            tags.set_header(["tag (selects, no aggregate)", "tasks"]);
            for (tag, tasks) in registry.tags() {
                let names: Vec<&str> = tasks.iter().map(|t| t.as_str()).collect();
                tags.add_row([tag.as_str(), &names.join(", ")]);
            }
            say!("{}", wrapped(tags));
        }
    }
    Ok(())
}

/// A table whose long cells wrap to the terminal's width, or to 120 columns when stdout is not a terminal.
fn wrapped(mut table: comfy_table::Table) -> comfy_table::Table {
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    if table.width().is_none() {
        table.set_width(120);
    }
    table
}
