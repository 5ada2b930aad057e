//! What a person reads: the plan of a dry run, and the table printed at the end of a run.

use crate::{Plan, PlannedTask, Registry, SplitSource};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use ibex_core::metrics::{parse_metric_key, stderr_key};
use ibex_core::placement::{Placement, ACTIVATION_RESERVE_PERCENT};
use ibex_core::results::RunResults;
use ibex_core::{human_bytes, BatchSize, MaxMemory, SpecialTokenRule};
use ibex_hub::Origin;
use std::path::Path;

/// One row per task, metric and filter (named beside the metric unless it is `none`): value and stderr (as
/// percentages for proportions, as they are for perplexity), the number of documents, and each task's wall time and
/// model throughput (groups have neither).
pub fn results_table(results: &RunResults) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "task",
        "metric",
        "value",
        "± stderr",
        "n",
        "time (s)",
        "tokens/s",
    ]);
    for (task, entry) in &results.results {
        let metrics = &entry.metrics;
        let record = results.ibex.tasks.get(task);
        let seconds = record.map_or(String::new(), |r| format!("{:.1}", r.seconds));
        let rate = record.map_or(String::new(), |r| format!("{:.0}", r.tokens as f64 / r.seconds.max(1e-9)));
        for (key, value) in metrics {
            let Some((metric, filter)) = parse_metric_key(key) else { continue };
            let stderr = metrics.get(&stderr_key(metric, filter)).and_then(|v| v.as_f64());
            let percent = |v: f64| match ibex_core::Metric::is_proportion(metric) {
                true => format!("{:.2}%", v * 100.0),
                false if v.abs() < 1e6 => format!("{v:.4}"),
                false => format!("{v:.4e}"),
            };
            let label = match filter {
                ibex_core::NO_FILTER => metric.to_owned(),
                filter => format!("{metric} ({filter})"),
            };
            table.add_row([
                Cell::new(task),
                Cell::new(label),
                Cell::new(value.as_f64().map_or("-".into(), percent)).set_alignment(CellAlignment::Right),
                Cell::new(stderr.map_or("N/A".into(), percent)).set_alignment(CellAlignment::Right),
                Cell::new(entry.sample_len.map_or(String::new(), |n| n.to_string()))
                    .set_alignment(CellAlignment::Right),
                Cell::new(&seconds).set_alignment(CellAlignment::Right),
                Cell::new(&rate).set_alignment(CellAlignment::Right),
            ]);
        }
    }
    table
}

/// What `ibex run --dry-run` prints: the run's settings and model files, then one row per task with its data files,
/// documents and requests.
pub fn plan_tables(plan: &Plan) -> String {
    let mut settings = Table::new();
    settings.load_preset(UTF8_FULL_CONDENSED).set_header(["setting", "value"]);
    let files = &plan.model_files;
    let origin = match &files.origin {
        Origin::Hub { repo, commit } => format!("{repo}@{commit}"),
        Origin::Folder(folder) => folder.display().to_string(),
    };
    let mut file_names: Vec<String> =
        files.small_files().filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned())).collect();
    file_names.extend(files.weights.iter().map(|w| w.name.clone()));
    let (bytes, to_download) = plan.weights_on_disk();
    let weights = match to_download {
        0 => format!("{} file(s), {}", files.weights.len(), human_bytes(bytes)),
        n => format!("{} file(s), {n} not downloaded yet (a run downloads them first)", files.weights.len()),
    };
    let from_recipe = |name: &str| match &plan.recipe {
        Some((source, applied)) if applied.contains(&name) => format!(" (from {source})"),
        _ => String::new(),
    };
    let rows = [
        ("model", origin),
        ("files", file_names.join(", ")),
        ("weights", weights),
        ("tokenizer", describe_special_tokens(plan)),
        ("generation stops on", describe_stops(plan)),
        (
            "device",
            match &plan.max_memory {
                MaxMemory::Free => plan.devices.to_string(),
                limits => format!("{} (--max-memory {})", plan.devices, describe_max_memory(limits)),
            },
        ),
        ("dtype", format!("{}{}", plan.dtype, from_recipe("dtype"))),
        ("add_bos_token", format!("{}{}", plan.bos, from_recipe("add_bos_token"))),
        ("recipes", format!("{} (task definitions mirrored)", plan.recipes)),
        (
            "batch size",
            match plan.batch_size {
                BatchSize::Auto { max } => format!("auto (the largest up to {max} that fits)"),
                BatchSize::Fixed(size) => size.to_string(),
            },
        ),
        ("chat template", describe_chat(plan, from_recipe("apply_chat_template"))),
        ("system instruction", plan.prompt.system_instruction.clone().unwrap_or_else(|| "none".into())),
        (
            "few-shot",
            match plan.num_fewshot {
                Some(shots) => format!("{shots} (seed {}; a task file's num_fewshot: 0 keeps 0)", plan.fewshot_seed),
                None => format!("each task file's num_fewshot, else 0 (seed {})", plan.fewshot_seed),
            },
        ),
        ("max_gen_toks", plan.max_gen_toks.to_string()),
        ("limit", plan.limit.map_or("none".into(), |l| l.to_string())),
        ("shard", plan.shard.map_or("none (every document)".into(), |s| s.to_string())),
        ("output", plan.output.display().to_string()),
    ];
    for (name, value) in rows {
        settings.add_row([name.to_owned(), value]);
    }
    let mut tasks = Table::new();
    tasks.load_preset(UTF8_FULL_CONDENSED).set_header(["task", "benchmark", "split", "data", "documents", "requests"]);
    for task in &plan.tasks {
        let mut data = describe_source(&task.eval);
        if let Some(fewshot) = &task.fewshot {
            data.push_str(&format!("\nfew-shot {}: {}", fewshot.split, describe_source(fewshot)));
        }
        tasks.add_row([
            Cell::new(task.name()),
            Cell::new(&task.entry.benchmark),
            Cell::new(&task.eval.split),
            Cell::new(data),
            Cell::new(task.docs.len()).set_alignment(CellAlignment::Right),
            Cell::new(task.request_count()).set_alignment(CellAlignment::Right),
        ]);
    }
    let documents: usize = plan.tasks.iter().map(|t| t.docs.len()).sum();
    let requests: usize = plan.tasks.iter().map(PlannedTask::request_count).sum();
    format!("{settings}\n{tasks}\n{} task(s), {documents} documents, {requests} requests", plan.tasks.len())
}

/// A split's data files as a person wants to read them: `repo@commit/path-in-repo` for hub files, else the paths
/// given.
fn describe_source(source: &SplitSource) -> String {
    let describe = |file: &std::path::PathBuf| {
        let path = file.display().to_string();
        let in_repo = path.split_once("/snapshots/").and_then(|(_, rest)| rest.split_once('/')).map(|(_, file)| file);
        match (&source.dataset, in_repo) {
            (Some(dataset), Some(file)) => format!("{dataset}/{file}"),
            _ => path,
        }
    };
    source.files.iter().map(describe).collect::<Vec<_>>().join(", ")
}

/// `ibex tasks --check`: for each task and group the lm-eval YAML files under `dirs` define, whether ibex loads it
/// (its keys, templates and hooks are all ones ibex has; its data and rows are checked when it runs) or why not; then per benchmark folder (the first folder under a `--tasks-dir`) the counts, and the commonest
/// reasons.
pub fn check_tables(registry: &Registry, dirs: &[std::path::PathBuf]) -> String {
    let under = |source: &str| dirs.iter().find(|d| Path::new(source).starts_with(d));
    // A --tasks-dir that holds task files itself is one benchmark (catalan_bench); one that holds only folders is a
    // tasks tree (lm_eval/tasks), whose first-level folders are the benchmarks.
    let benchmark_dir = |dir: &Path| {
        std::fs::read_dir(dir)
            .is_ok_and(|mut e| e.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))))
    };
    let folder = |source: &str| -> String {
        let Some(dir) = under(source) else { return String::new() };
        let name = || dir.file_name().map_or(dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        let relative = Path::new(source).strip_prefix(dir).unwrap_or(Path::new(source));
        match relative.components().count() {
            0 | 1 => name(),
            _ if benchmark_dir(dir) => name(),
            _ => relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default(),
        }
    };
    // (name, folder, None = runs | Some(reason))
    let mut rows: Vec<(String, String, Option<String>)> = Vec::new();
    for entry in registry.entries().filter(|e| under(&e.source).is_some()) {
        rows.push((entry.task.name().to_owned(), folder(&entry.source), None));
    }
    for group in registry.groups().filter(|g| under(&g.source).is_some()) {
        rows.push((format!("{} (group)", group.group), folder(&group.source), None));
    }
    let cannot_run = registry.unsupported().map(|(name, (source, reason))| (name, source, reason));
    let shadowed = registry.shadowed().iter().map(|(name, source, reason)| (name, source, reason));
    for (name, source, reason) in cannot_run.chain(shadowed).filter(|(_, s, _)| under(s).is_some()) {
        // The hooks ibex has are listed when the task is run by name; here they would drown the table.
        let reason = reason.split("; it has ").next().unwrap_or(reason);
        rows.push((name.clone(), folder(source), Some(reason.to_owned())));
    }
    for (source, reason) in registry.unreadable().iter().filter(|(s, _)| under(s).is_some()) {
        let file = Path::new(source).file_name().map_or(source.clone(), |f| f.to_string_lossy().into_owned());
        rows.push((format!("({file})"), folder(source), Some(format!("unreadable: {reason}"))));
    }
    rows.sort();
    let mut tasks = Table::new();
    tasks.load_preset(UTF8_FULL_CONDENSED).set_header(["task", "folder", "ibex"]);
    for (name, folder, reason) in &rows {
        tasks.add_row([name.as_str(), folder.as_str(), reason.as_deref().unwrap_or("loads")]);
    }
    let mut folders: std::collections::BTreeMap<&str, (usize, usize)> = std::collections::BTreeMap::new();
    let mut reasons: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (name, folder, reason) in &rows {
        let counts = folders.entry(folder.as_str()).or_default();
        match reason {
            None => counts.0 += 1,
            Some(reason) => {
                counts.1 += 1;
                *reasons.entry(reason_kind(name, reason)).or_default() += 1;
            }
        }
    }
    let mut summary = Table::new();
    summary.load_preset(UTF8_FULL_CONDENSED).set_header(["folder", "loads", "cannot run yet"]);
    for (folder, (runs, cannot)) in &folders {
        summary.add_row([
            Cell::new(folder),
            Cell::new(runs).set_alignment(CellAlignment::Right),
            Cell::new(cannot).set_alignment(CellAlignment::Right),
        ]);
    }
    let mut top: Vec<(String, usize)> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut common = Table::new();
    common.load_preset(UTF8_FULL_CONDENSED).set_header(["why not (commonest first)", "tasks"]);
    for (reason, count) in top.iter().take(15) {
        common.add_row([Cell::new(reason), Cell::new(count).set_alignment(CellAlignment::Right)]);
    }
    format!("{tasks}\n{summary}\n{common}")
}

/// A reason without the task's own name, up to its first `;`: what tasks failing alike share.
fn reason_kind(name: &str, reason: &str) -> String {
    let reason = reason.strip_prefix(&format!("task {name}: ")).unwrap_or(reason);
    let reason = reason.split("; ").next().unwrap_or(reason);
    let reason = reason.split(" (").next().unwrap_or(reason);
    reason.replace('`', "")
}

/// `--max-memory` as given, sizes in binary units.
fn describe_max_memory(limits: &MaxMemory) -> String {
    match limits {
        MaxMemory::Free => "free memory".into(),
        MaxMemory::Each(size) => format!("{} each", human_bytes(*size)),
        MaxMemory::Positional(sizes) => sizes.iter().map(|s| human_bytes(*s)).collect::<Vec<_>>().join(", "),
        MaxMemory::PerDevice(pairs) => {
            pairs.iter().map(|(d, s)| format!("{d}={}", human_bytes(*s))).collect::<Vec<_>>().join(", ")
        }
    }
}

/// Where the model's weights go, per replica and device handle, with the memory each handle is expected to hold
/// (weights) against its budget: what `--dry-run` prints after the plan.
pub fn placement_table(placement: &Placement) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(["replica", "device", "layers", "holds", "weights", "budget"]);
    for (replica, stages) in placement.replicas.iter().enumerate() {
        for stage in stages {
            let mut holds = Vec::new();
            if stage.embed {
                holds.push("embeddings");
            }
            holds.push("decoder layers");
            if stage.head {
                holds.push("final norm, LM head");
            }
            let layers = match stage.layers.len() {
                1 => stage.layers.start.to_string(),
                _ => format!("{}-{}", stage.layers.start, stage.layers.end - 1),
            };
            table.add_row([
                Cell::new(replica),
                Cell::new(format!("{} (#{})", stage.device, stage.handle)),
                Cell::new(layers),
                Cell::new(holds.join(", ")),
                Cell::new(human_bytes(stage.bytes)).set_alignment(CellAlignment::Right),
                Cell::new(human_bytes(stage.budget)).set_alignment(CellAlignment::Right),
            ]);
        }
    }
    let span = placement.replicas.first().map_or(0, Vec::len);
    let mut text = match placement.replicas.len() {
        1 => format!("{table}\none copy over {span} device handle(s)"),
        n => format!("{table}\n{n} replicas of {span} device handle(s) each; batches go to them side by side"),
    };
    text.push_str(&format!("; {ACTIVATION_RESERVE_PERCENT}% of each budget is kept for activations"));
    if !placement.unused.is_empty() {
        let unused: Vec<String> = placement.unused.iter().map(ToString::to_string).collect();
        text.push_str(&format!("; unused (too few or too small for another replica): {}", unused.join(", ")));
    }
    text
}

/// The tokenizer class and what "with special tokens" adds under the run's BOS policy.
fn describe_special_tokens(plan: &Plan) -> String {
    if !plan.encoder.adds_special_tokens() {
        return "no special tokens on non-empty strings (add_bos_token false)".into();
    }
    let specials = plan.encoder.special_tokens();
    let ids = |ids: &[u32]| format!("{ids:?}");
    let rule = match specials.rule {
        SpecialTokenRule::RebuiltFromAddBosEos => "rebuilt from add_bos_token/add_eos_token",
        SpecialTokenRule::TokenizerJsonPostProcessor => "tokenizer.json's post-processor",
    };
    format!("{}: {} first, {} last ({rule})", specials.class, ids(&specials.first), ids(&specials.last))
}

/// The end-of-sequence ids generation stops on, and where they came from.
fn describe_stops(plan: &Plan) -> String {
    let generation = &plan.generation;
    if generation.source.is_empty() {
        return "no task generates".into();
    }
    let ids: Vec<String> = generation.eos_token_ids.iter().map(u32::to_string).collect();
    let file = Path::new(&generation.source).file_name().map_or(String::new(), |f| f.to_string_lossy().into_owned());
    format!("ids [{}] ({file}), the tokenizer's EOS text, each task's stop strings", ids.join(", "))
}

/// The chat template applied, by name and digest, and how few-shot examples go into it.
fn describe_chat(plan: &Plan, from_recipe: String) -> String {
    match (&plan.chat_template, &plan.prompt.chat) {
        (Some(template), Some(chat)) => format!(
            "{} (sha256 {}…), few-shot examples as {}{from_recipe}",
            template.name(),
            &template.sha256()[..12],
            if chat.fewshot_as_multiturn { "turns" } else { "one user turn" }
        ),
        _ => format!("none (plain-text prompts){from_recipe}"),
    }
}

/// What `ibex fetch` put in the hub cache: the model's files and every task's data files, each with its size, and
/// the total.
pub fn fetched_table(plan: &Plan, weights: &[std::path::PathBuf]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(["for", "file", "size"]);
    let model_files = plan.model_files.small_files().chain(weights);
    let mut rows: Vec<(String, &std::path::Path)> = model_files.map(|f| (plan.model.clone(), f.as_path())).collect();
    for task in &plan.tasks {
        for source in std::iter::once(&task.eval).chain(task.fewshot.as_ref()) {
            for file in &source.files {
                rows.push((format!("{} ({})", task.name(), source.split), file.as_path()));
            }
        }
    }
    let mut total = 0;
    for (owner, file) in rows {
        let size = std::fs::metadata(file).map_or(0, |m| m.len());
        total += size;
        table.add_row([
            Cell::new(owner),
            Cell::new(file.display()),
            Cell::new(human_bytes(size)).set_alignment(CellAlignment::Right),
        ]);
    }
    format!(
        "{table}\n{} of model and data files on disk; an offline node now runs with HF_HUB_OFFLINE=1",
        human_bytes(total)
    )
}
