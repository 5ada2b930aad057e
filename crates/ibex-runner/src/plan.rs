//! A run resolved once, before any weights load: flags and the model's shipped recipe merged into typed settings,
//! every task's data file found (on disk or in the hub cache) and read, every row turned into a document, every
//! few-shot context drawn and every request built. Any mistake anywhere in the run surfaces here, so a wrong path
//! in the last task never costs a 75 GiB model load.

use crate::configs::{model_recipe, suite_tasks};
use crate::fewshot::FewshotPool;
use crate::registry::{Entry, Group, Registry};
use crate::RunError;
use ibex_chat::ChatTemplate;
use ibex_core::prompt::{construct_requests, fewshot_context, ApplyChatTemplate, ChatFormat, PromptFormat};
use ibex_core::results::{sanitize_model_name, ModelRecord, Shard};
use ibex_core::{
    generation_prompt, scoring_tokens, BatchSize, BosPolicy, DeviceSpec, Devices, Doc, Dtype, Encoder,
    GenerationConfig, MaxMemory, Request, TokenizerFiles,
};
use ibex_hub::{ModelFiles, Origin};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// What the user asked for, parsed but not yet resolved (the binary's flags).
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// A local folder or a Hugging Face model id.
    pub model: String,
    /// Hub revision (branch, tag or commit).
    pub revision: Option<String>,
    /// A suite (shipped name or file); its tasks run before `tasks`.
    pub suite: Option<String>,
    /// Task and group names, in run order.
    pub tasks: Vec<String>,
    /// Extra task-file folders.
    pub tasks_dirs: Vec<PathBuf>,
    /// Whose task definitions to mirror (`--recipes`): lm-eval's, or BSC's fork's.
    pub recipes: ibex_task_yaml::Recipes,
    /// Data files replacing a task's data for a split.
    pub data: Vec<DataOverride>,
    /// The device handles the model is laid over (`--device`).
    pub devices: Devices,
    /// How much memory each handle may use (`--max-memory`).
    pub max_memory: MaxMemory,
    /// The dtype; the model recipe's, else f32, when absent.
    pub dtype: Option<Dtype>,
    /// Requests per forward pass.
    pub batch_size: BatchSize,
    /// Evaluate only the first N documents of each task.
    pub limit: Option<usize>,
    /// Evaluate only this shard of every task's documents (after `limit`); sample logs are then always written,
    /// for `ibex merge`.
    pub shard: Option<Shard>,
    /// lm-eval's `--output_path`: the run's files go to `<output>/<model_name_sanitized>/`; `results` when absent.
    pub output: Option<PathBuf>,
    /// Whether to write `samples_<task>_<date>.jsonl`.
    pub log_samples: bool,
    /// Start this run's journal anew instead of resuming from it.
    pub overwrite: bool,
    /// The BOS policy; the model recipe's, else `auto`, when absent.
    pub add_bos_token: Option<BosPolicy>,
    /// `--num-fewshot`: few-shot examples per document, where a task file does not fix them (lm-eval's rule:
    /// a task's `num_fewshot: 0` always wins; without the flag a task's own `num_fewshot`, else 0).
    pub num_fewshot: Option<usize>,
    /// Seed of the few-shot sampler (lm-eval's default is 1234).
    pub fewshot_seed: u64,
    /// Tokens to generate when a task does not say (lm-eval's model-level `max_gen_toks`).
    pub max_gen_toks: usize,
    /// How prompts of instruct models are built.
    pub chat: ChatSettings,
}

/// lm-eval's instruct-model flags, as given; the model recipe fills what they leave open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatSettings {
    /// `--apply-chat-template` (true) or `--no-chat-template` (false).
    pub apply_chat_template: Option<bool>,
    /// The template name given to `--apply-chat-template NAME`.
    pub template_name: Option<String>,
    /// `--system-instruction TEXT`.
    pub system_instruction: Option<String>,
    /// `--fewshot-as-multiturn BOOL`; lm-eval's default is true under a chat template.
    pub fewshot_as_multiturn: Option<bool>,
}

/// `--data TASK[:SPLIT]=PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataOverride {
    /// The task.
    pub task: String,
    /// The split replaced (the evaluated or the few-shot split); the evaluated split when absent.
    pub split: Option<String>,
    /// The file.
    pub path: PathBuf,
}

impl std::str::FromStr for DataOverride {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (key, path) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not TASK[:SPLIT]=PATH (e.g. xnli_en=/scratch/xnli_en.parquet)"))?;
        let (task, split) = match key.split_once(':') {
            Some((task, split)) => (task, Some(split.to_owned())),
            None => (key, None),
        };
        if task.is_empty() || path.is_empty() {
            return Err(format!("`{text}` is not TASK[:SPLIT]=PATH"));
        }
        Ok(Self { task: task.to_owned(), split, path: PathBuf::from(path) })
    }
}

/// A resolved, validated run.
pub struct Plan {
    /// The `--model` argument.
    pub model: String,
    /// The `--revision` argument.
    pub revision: Option<String>,
    /// The checkpoint's files (hub-resolved or a folder).
    pub model_files: ModelFiles,
    /// The tokenizer as transformers builds it for lm-eval, with the run's BOS policy.
    pub encoder: Encoder,
    /// The checkpoint's generation settings (end-of-sequence ids), read when a task generates.
    pub generation: GenerationConfig,
    /// The shipped model recipe that supplied settings the flags left open, and which ones.
    pub recipe: Option<(String, Vec<&'static str>)>,
    /// Whose task definitions the run mirrors (`--recipes`).
    pub recipes: ibex_task_yaml::Recipes,
    /// The device handles the model is laid over (`--device`).
    pub devices: Devices,
    /// How much memory each handle may use (`--max-memory`).
    pub max_memory: MaxMemory,
    /// The dtype.
    pub dtype: Dtype,
    /// Requests per forward pass.
    pub batch_size: BatchSize,
    /// The BOS policy.
    pub bos: BosPolicy,
    /// `--limit`.
    pub limit: Option<usize>,
    /// `--shard`.
    pub shard: Option<Shard>,
    /// The run's folder, `<--output>/<model_name_sanitized>` as lm-eval lays it out: results, sample logs and the
    /// journal.
    pub output: PathBuf,
    /// The tokenizer's special tokens and the model's window, as lm-eval's results record them.
    pub tokenizer: TokenizerSummary,
    /// Whether to write sample logs.
    pub log_samples: bool,
    /// Whether the run's journal is started anew rather than resumed.
    pub overwrite: bool,
    /// `--num-fewshot`, if given; each task's count is [`PlannedTask::num_fewshot`].
    pub num_fewshot: Option<usize>,
    /// Seed of the few-shot sampler.
    pub fewshot_seed: u64,
    /// The model-level generation budget.
    pub max_gen_toks: usize,
    /// How contexts are built: plain text, or through the chat template.
    pub prompt: PromptFormat,
    /// The chat template applied, if any.
    pub chat_template: Option<Arc<ChatTemplate>>,
    /// The tasks, in run order, with their documents and requests.
    pub tasks: Vec<PlannedTask>,
    /// The groups to aggregate after their tasks.
    pub groups: Vec<Group>,
}

/// The special tokens lm-eval's results name (`[token, str(id)]`, `[null, "None"]` when absent), the end-of-text
/// id, and the model's window.
#[derive(Clone, Debug, Default)]
pub struct TokenizerSummary {
    /// The padding token, as lm-eval's `configure_pad_token` sets it (else the unknown token, else EOS).
    pub pad: [Option<String>; 2],
    /// The end-of-sequence token.
    pub eos: [Option<String>; 2],
    /// The beginning-of-sequence token.
    pub bos: [Option<String>; 2],
    /// The end-of-text id generation stops on.
    pub eot_token_id: Option<u32>,
    /// config.json's `max_position_embeddings`.
    pub max_length: Option<usize>,
}

/// Where one split of a task is read from.
#[derive(Clone, Debug)]
pub struct SplitSource {
    /// The split's name.
    pub split: String,
    /// The files read, in order: their rows are concatenated, as `datasets` concatenates a split's data files.
    pub files: Vec<PathBuf>,
    /// `repo@commit` when the files came from the hub.
    pub dataset: Option<String>,
}

impl SplitSource {
    /// Every row of the split: each file's rows in turn. Errors name the file and row.
    pub fn read_rows(&self) -> Result<Vec<ibex_data::Row>, RunError> {
        let mut rows = Vec::new();
        for file in &self.files {
            rows.extend(ibex_data::read_rows(file)?);
        }
        Ok(rows)
    }

    /// The files as one line: `a.parquet`, or `a.parquet, b.parquet`.
    pub fn describe(&self) -> String {
        self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// The files as a JSON value: one path, or the list when there are several.
    pub(crate) fn to_value(&self) -> serde_json::Value {
        match self.files.as_slice() {
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        }
    }
}

/// A task with everything it will ask the model.
pub struct PlannedTask {
    /// The registered task.
    pub entry: Entry,
    /// Few-shot examples per document for this task ([`task_shots`]).
    pub num_fewshot: usize,
    /// The evaluated split.
    pub eval: SplitSource,
    /// Where few-shot examples come from, when the run has shots and they come from another split.
    pub fewshot: Option<SplitSource>,
    /// Rows in the evaluated split (lm-eval's `n-samples.original`).
    pub split_rows: usize,
    /// The documents, in evaluation order.
    pub docs: Vec<Doc>,
    /// Each document's requests, few-shot context included.
    pub requests: Vec<Vec<Request>>,
}

/// A task's documents with their few-shot examples, before the prompt format turns them into requests.
struct DrawnTask {
    entry: Entry,
    num_fewshot: usize,
    eval: SplitSource,
    fewshot: Option<SplitSource>,
    split_rows: usize,
    docs: Vec<Doc>,
    shots: Vec<Vec<Doc>>,
}

impl DrawnTask {
    /// Builds every document's context and requests: lm-eval's `fewshot_context` and `construct_requests`.
    fn into_planned(self, format: &PromptFormat) -> Result<PlannedTask, RunError> {
        let task = self.entry.task.as_ref();
        let requests = self
            .docs
            .iter()
            .zip(&self.shots)
            .map(|(doc, shots)| {
                let context = fewshot_context(task, doc, shots, format).map_err(|message| {
                    RunError::Plan(format!("task {}, document {}: {message}", task.name(), doc.id))
                })?;
                Ok(construct_requests(task, doc, &context, format))
            })
            .collect::<Result<_, RunError>>()?;
        let (entry, eval, fewshot, split_rows, docs) =
            (self.entry, self.eval, self.fewshot, self.split_rows, self.docs);
        Ok(PlannedTask { entry, num_fewshot: self.num_fewshot, eval, fewshot, split_rows, docs, requests })
    }
}

impl PlannedTask {
    /// The task's name.
    pub fn name(&self) -> &str {
        self.entry.task.name()
    }

    /// How many requests the task makes.
    pub fn request_count(&self) -> usize {
        self.requests.iter().map(Vec::len).sum()
    }
}

impl Plan {
    /// Resolves `settings`: tasks and data first (cheap, and where mistakes are likeliest), then the model's files.
    pub fn resolve(settings: RunSettings) -> Result<Self, RunError> {
        let registry = Registry::load(&settings.tasks_dirs, settings.recipes)?;
        let mut names = match &settings.suite {
            Some(suite) => suite_tasks(suite)?,
            None => Vec::new(),
        };
        names.extend(settings.tasks.iter().cloned());
        let (entries, groups) = registry.select(&names)?;
        if entries.is_empty() {
            return Err(RunError::Plan(
                "the run has no tasks: name some with --tasks or a suite that lists them".into(),
            ));
        }
        check_overrides(&registry, &entries, &settings.data)?;
        let drawn = entries.iter().map(|entry| plan_task(entry, &settings)).collect::<Result<Vec<_>, _>>()?;

        let recipe = model_recipe(&settings.model)?;
        let mut applied = Vec::new();
        let dtype = or_recipe(settings.dtype, recipe.as_ref().and_then(|r| r.dtype), "dtype", &mut applied)
            .unwrap_or(Dtype::F32);
        if dtype == Dtype::F16 && settings.devices.named().is_some_and(|h| h.contains(&DeviceSpec::Cpu)) {
            return Err(RunError::Plan("f16 is not supported on the CPU; use --dtype f32 or bf16 there".into()));
        }
        let bos = or_recipe(
            settings.add_bos_token,
            recipe.as_ref().and_then(|r| r.add_bos_token),
            "add_bos_token",
            &mut applied,
        )
        .unwrap_or_default();
        let model_files = ibex_hub::resolve_model(&settings.model, settings.revision.as_deref())?;
        let tokenizer = TokenizerFiles {
            tokenizer_json: model_files.tokenizer.clone(),
            settings: model_files.tokenizer_settings.clone(),
            sentencepiece: model_files.sentencepiece.clone(),
            model_config: Some(model_files.config.clone()),
        };
        let encoder = Encoder::from_files(&tokenizer, bos)?;
        let apply_chat_template = or_recipe(
            settings.chat.apply_chat_template,
            recipe.as_ref().and_then(|r| r.apply_chat_template),
            "apply_chat_template",
            &mut applied,
        )
        .unwrap_or(false);
        let fewshot_as_multiturn = match settings.chat.fewshot_as_multiturn {
            Some(true) if !apply_chat_template => return Err(RunError::Plan(
                "--fewshot-as-multiturn true needs a chat template: add --apply-chat-template (as lm-eval requires)"
                    .into(),
            )),
            Some(flag) => flag,
            None if apply_chat_template => or_recipe(
                None,
                recipe.as_ref().and_then(|r| r.fewshot_as_multiturn),
                "fewshot_as_multiturn",
                &mut applied,
            )
            .unwrap_or(true),
            None => false,
        };
        let chat_template = if apply_chat_template {
            let template = ChatTemplate::load(
                &tokenizer,
                model_files.chat_template.as_deref(),
                settings.chat.template_name.as_deref(),
            )
            .map_err(|e| match settings.chat.apply_chat_template {
                Some(true) => RunError::Plan(e.to_string()),
                _ => RunError::Plan(format!(
                    "{} applies the chat template: {e}; pass --no-chat-template for plain-text prompts",
                    recipe.as_ref().map_or("the model's recipe", |r| r.source.as_str())
                )),
            })?;
            Some(Arc::new(template))
        } else {
            if settings.chat.template_name.is_some() {
                return Err(RunError::Plan("a chat template name needs --apply-chat-template".into()));
            }
            None
        };
        let prompt = PromptFormat {
            system_instruction: settings.chat.system_instruction.clone(),
            chat: chat_template.as_ref().map(|template| ChatFormat {
                template: Arc::clone(template) as Arc<dyn ApplyChatTemplate>,
                fewshot_as_multiturn,
            }),
        };
        let tasks = drawn.into_iter().map(|t| t.into_planned(&prompt)).collect::<Result<Vec<_>, _>>()?;
        if chat_template.as_ref().is_some_and(|t| t.dropped_system_turn()) {
            eprintln!(
                "warning: the chat template refuses a system turn, so prompts were rendered without the system \
                 instruction (lm-eval removes it the same way, with the same warning)"
            );
        }
        check_requests(&tasks, &model_files, &encoder, settings.max_gen_toks)?;
        let generates =
            tasks.iter().flat_map(|t| t.requests.iter().flatten()).any(|r| matches!(r, Request::Generate(_)));
        let generation = if generates {
            GenerationConfig::from_files(model_files.generation_config.as_deref(), &model_files.config)?
        } else {
            GenerationConfig::default()
        };
        let output = settings.output.clone().unwrap_or_else(|| PathBuf::from("results"));
        if output.exists() && !output.is_dir() {
            return Err(RunError::Plan(format!("--output {} is a file; name a folder", output.display())));
        }
        let output = output.join(sanitize_model_name(&settings.model));
        let special = tokenizer.special_tokens_map()?;
        let named = |key: &str| special.get(key).and_then(|t| t.as_str());
        let pair = |token: Option<&str>| match token {
            Some(token) => {
                [Some(token.to_owned()), Some(encoder.token_id(token).map_or("None".into(), |id| id.to_string()))]
            }
            None => [None, Some("None".to_owned())],
        };
        // lm-eval's `configure_pad_token`: no pad token means the unknown token, else EOS.
        let pad = named("pad_token").or(named("unk_token")).or(named("eos_token"));
        let tokenizer_summary = TokenizerSummary {
            pad: pair(pad),
            eos: pair(named("eos_token")),
            bos: pair(named("bos_token")),
            eot_token_id: encoder.eos_token_id(),
            max_length: model_window(&model_files),
        };
        let plan = Self {
            recipe: recipe.filter(|_| !applied.is_empty()).map(|r| (r.source, applied)),
            recipes: settings.recipes,
            model: settings.model,
            revision: settings.revision.clone(),
            model_files,
            encoder,
            generation,
            devices: settings.devices.clone(),
            max_memory: settings.max_memory.clone(),
            dtype,
            batch_size: settings.batch_size,
            bos,
            limit: settings.limit,
            shard: settings.shard,
            output,
            tokenizer: tokenizer_summary,
            log_samples: settings.log_samples || settings.shard.is_some(),
            overwrite: settings.overwrite,
            num_fewshot: settings.num_fewshot,
            fewshot_seed: settings.fewshot_seed,
            max_gen_toks: settings.max_gen_toks,
            prompt,
            chat_template,
            tasks,
            groups: groups.into_iter().cloned().collect(),
        };
        Ok(plan)
    }

    /// The run's record for the results file, given what only the loaded model knows: the device it landed on.
    pub fn model_record(&self, device: String) -> ModelRecord {
        ModelRecord {
            model: self.model.clone(),
            revision: match &self.model_files.origin {
                Origin::Hub { commit, .. } => Some(commit.clone()),
                Origin::Folder(_) => None,
            },
            dtype: self.dtype.to_string(),
            device,
            batch_size: self.batch_size.to_string(),
            max_batch_size: match self.batch_size {
                BatchSize::Auto { max } => Some(max.get()),
                BatchSize::Fixed(_) => None,
            },
            add_bos_token: self.bos.to_string(),
            recipes: self.recipes.name().to_owned(),
            recipe: self.recipe.as_ref().map(|(source, applied)| format!("{source}: {}", applied.join(", "))),
            add_special_tokens: self.encoder.adds_special_tokens(),
            special_tokens: Some(self.encoder.special_tokens().clone()),
            generation: Some(self.generation.clone()).filter(|g| !g.source.is_empty()),
            limit: self.limit,
            shard: self.shard,
            num_fewshot: self.num_fewshot.unwrap_or(0),
            fewshot_seed: self.fewshot_seed,
            max_gen_toks: self.max_gen_toks,
            parameters: 0,
            chat_template_name: self.chat_template.as_ref().map(|t| t.name().to_owned()),
            chat_template_sha: self.chat_template.as_ref().map(|t| t.sha256()),
            system_instruction: self.prompt.system_instruction.clone(),
            fewshot_as_multiturn: self.prompt.chat.as_ref().is_some_and(|c| c.fewshot_as_multiturn),
        }
    }

    /// A digest of everything that decides the run's answers (model and commit, weights, dtype, tokenizer rules,
    /// generation stops, few-shot settings, limit, shard, every task's file and data): a journal resumes only
    /// the run it was written for. Batch size and device are left out: answers do not depend on them.
    pub fn fingerprint(&self) -> String {
        let record = self.model_record(String::new());
        let weights: Vec<(String, Option<u64>)> = self
            .model_files
            .weights
            .iter()
            .map(|w| (w.name.clone(), w.path.as_ref().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len())))
            .collect();
        let tasks: Vec<serde_json::Value> = self
            .tasks
            .iter()
            .map(|t| {
                serde_json::json!([
                    t.name(),
                    t.entry.sha256,
                    t.eval.to_value(),
                    t.eval.dataset,
                    t.fewshot.as_ref().map(SplitSource::to_value),
                    t.docs.len(),
                    // The prompts themselves: a chat template may render differently from one day to the next.
                    crate::files::sha256_hex(&serde_json::to_string(&t.requests).expect("requests serialize")),
                ])
            })
            .collect();
        let identity = serde_json::json!({
            "model": record.model, "revision": record.revision, "dtype": record.dtype,
            "add_bos_token": record.add_bos_token, "special_tokens": record.special_tokens,
            "generation": self.generation.eos_token_ids, "limit": record.limit, "shard": record.shard,
            "num_fewshot": record.num_fewshot, "fewshot_seed": record.fewshot_seed,
            "max_gen_toks": record.max_gen_toks, "weights": weights, "tasks": tasks,
            "chat_template_sha": record.chat_template_sha, "system_instruction": record.system_instruction,
            "fewshot_as_multiturn": record.fewshot_as_multiturn,
        });
        format!("{:x}", Sha256::digest(identity.to_string().as_bytes()))
    }

    /// The size in bytes of the checkpoint's weight files already on disk, and how many are still to download.
    pub fn weights_on_disk(&self) -> (u64, usize) {
        let weights = &self.model_files.weights;
        let bytes = weights.iter().filter_map(|w| std::fs::metadata(w.path.as_ref()?).ok()).map(|m| m.len()).sum();
        (bytes, weights.iter().filter(|w| w.path.is_none()).count())
    }
}

/// Every request encodes as lm-eval would accept it, within the checkpoint's window (config.json's
/// `max_position_embeddings`, lm-eval's `max_length`): the same checks the model makes, made before it loads. A
/// config.json without the key is left for the backend to judge.
fn check_requests(
    tasks: &[PlannedTask],
    files: &ModelFiles,
    encoder: &Encoder,
    default_budget: usize,
) -> Result<(), RunError> {
    let Some(window) = model_window(files) else { return Ok(()) };
    let requests: Vec<(&PlannedTask, usize, &Request)> = tasks
        .iter()
        .flat_map(|task| {
            task.docs
                .iter()
                .zip(&task.requests)
                .flat_map(move |(doc, requests)| requests.iter().map(move |r| (task, doc.id, r)))
        })
        .collect();
    // The first failing request in plan order, whichever core finds it.
    let failure = requests.par_iter().find_map_first(|&(task, doc, request)| {
        let checked = match request {
            Request::Loglikelihood(r) => scoring_tokens(encoder, r, window).map(drop),
            Request::Generate(r) => {
                generation_prompt(encoder, &r.context, window, r.max_gen_toks.unwrap_or(default_budget)).map(drop)
            }
        };
        checked.err().map(|message| RunError::Encode { task: task.name().to_owned(), doc, message })
    });
    failure.map_or(Ok(()), Err)
}

/// The flag's value, else the recipe's (noting `name` in `applied`).
fn or_recipe<T>(flag: Option<T>, recipe: Option<T>, name: &'static str, applied: &mut Vec<&'static str>) -> Option<T> {
    flag.or_else(|| {
        let value = recipe?;
        applied.push(name);
        Some(value)
    })
}

/// config.json's `max_position_embeddings` (lm-eval's `max_length`), if it has one.
fn model_window(files: &ModelFiles) -> Option<usize> {
    let text = std::fs::read_to_string(&files.config).ok()?;
    let config = serde_json::from_str::<serde_json::Value>(&text).ok()?;
    config.get("max_position_embeddings")?.as_u64().map(|w| w as usize)
}

/// Every `--data` names a task of the run, a split it reads, and a file that exists.
fn check_overrides(registry: &Registry, entries: &[&Entry], overrides: &[DataOverride]) -> Result<(), RunError> {
    for (i, data) in overrides.iter().enumerate() {
        registry.get(&data.task)?;
        let Some(entry) = entries.iter().find(|e| e.task.name() == data.task) else {
            return Err(RunError::Data(format!("names task `{}`, which is not in --tasks", data.task)));
        };
        let spec = entry.task.data();
        let used = [spec.eval_split(), spec.fewshot_split()];
        if let Some(split) = data.split.as_deref().filter(|s| !used.contains(&Some(*s))) {
            let used: Vec<&str> = used.iter().flatten().copied().collect();
            return Err(RunError::Data(format!(
                "names split `{split}` of `{}`, which it does not read; it reads {}",
                data.task,
                used.join(" and ")
            )));
        }
        let split = data.split.as_deref().or(spec.eval_split());
        if let Some(earlier) =
            overrides[..i].iter().find(|d| d.task == data.task && d.split.as_deref().or(spec.eval_split()) == split)
        {
            return Err(RunError::Data(format!(
                "gives split `{}` of `{}` twice ({} and {}); give it once",
                split.unwrap_or_default(),
                data.task,
                earlier.path.display(),
                data.path.display()
            )));
        }
        if data.path.is_dir() {
            return Err(RunError::Data(format!("{} is a folder; name a data file", data.path.display())));
        }
        if !data.path.is_file() {
            return Err(RunError::Data(format!("file {} does not exist", data.path.display())));
        }
    }
    Ok(())
}

/// Reads one task's data, builds its documents and draws their few-shot examples.
fn plan_task(entry: &Entry, settings: &RunSettings) -> Result<DrawnTask, RunError> {
    let task = entry.task.as_ref();
    let eval_split = task.data().eval_split().unwrap_or_default();
    let eval = split_source(entry, &settings.data, eval_split)?;
    let row_error = |file: &str, source| RunError::Task { task: task.name().to_owned(), file: file.to_owned(), source };
    let rows = task.process_docs(eval.read_rows()?).map_err(|e| row_error(&eval.describe(), e))?;
    let limit = settings.limit.unwrap_or(rows.len()).min(rows.len());
    if limit == 0 {
        let limit = settings.limit.map_or(String::new(), |l| format!(" with --limit {l}"));
        return Err(RunError::Plan(format!(
            "task {} has no documents to evaluate: {} has {} rows{limit}",
            task.name(),
            eval.describe(),
            rows.len(),
        )));
    }
    let docs = rows[..limit]
        .iter()
        .enumerate()
        .map(|(i, row)| task.doc(i, row))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| row_error(&eval.describe(), e))?;
    let mut fewshot = None;
    let num_fewshot = task_shots(settings.num_fewshot, task.num_fewshot());
    let shots = if num_fewshot == 0 {
        vec![Vec::new(); docs.len()]
    } else if let Some(samples) = task.fewshot_samples().filter(|_| task.data().fewshot_split.is_none()) {
        // lm-eval's `fewshot_docs`: a task's own examples come before its training, validation and test splits,
        // and are used as written (no process_docs).
        FewshotPool::new(task, "fewshot_config.samples", &samples, &entry.source, num_fewshot)?.shots(
            &docs,
            num_fewshot,
            settings.fewshot_seed,
        )?
    } else {
        let split = task.data().fewshot_split().unwrap_or(eval_split);
        if split == eval_split {
            FewshotPool::new(task, split, &rows, &eval.describe(), num_fewshot)?.shots(
                &docs,
                num_fewshot,
                settings.fewshot_seed,
            )?
        } else {
            let source = split_source(entry, &settings.data, split)?;
            let pool_rows = task.process_docs(source.read_rows()?).map_err(|e| row_error(&source.describe(), e))?;
            let shots = FewshotPool::new(task, split, &pool_rows, &source.describe(), num_fewshot)?.shots(
                &docs,
                num_fewshot,
                settings.fewshot_seed,
            )?;
            fewshot = Some(source);
            shots
        }
    };
    let (mut docs, mut shots) = (docs, shots);
    // A shard keeps its documents only after every few-shot example was drawn, so each equals the unsharded run's.
    if let Some(shard) = settings.shard {
        if docs.len() < shard.count {
            return Err(RunError::Plan(format!(
                "task {} has {} documents, fewer than --shard's {} shards",
                task.name(),
                docs.len(),
                shard.count
            )));
        }
        let keep = |position: &usize| position % shard.count == shard.index;
        docs = docs.into_iter().enumerate().filter(|(p, _)| keep(p)).map(|(_, d)| d).collect();
        shots = shots.into_iter().enumerate().filter(|(p, _)| keep(p)).map(|(_, s)| s).collect();
    }
    Ok(DrawnTask { entry: entry.clone(), num_fewshot, eval, fewshot, split_rows: rows.len(), docs, shots })
}

/// The data file for one split of a task: a `--data` override, else the task's dataset from the hub.
fn split_source(entry: &Entry, data: &[DataOverride], split: &str) -> Result<SplitSource, RunError> {
    let spec = entry.task.data();
    let eval_split = spec.eval_split().unwrap_or_default();
    let chosen = |d: &&DataOverride| d.task == entry.task.name() && d.split.as_deref().unwrap_or(eval_split) == split;
    if let Some(data) = data.iter().find(chosen) {
        return Ok(SplitSource { split: split.to_owned(), files: vec![data.path.clone()], dataset: None });
    }
    if ibex_task_yaml::LOCAL_BUILDERS.contains(&spec.dataset.as_str()) {
        // `datasets`' local builders read `data_files` relative to the working folder, a split's files in turn.
        return match spec.files.get(split).filter(|files| !files.is_empty()) {
            Some(files) => Ok(SplitSource {
                split: split.to_owned(),
                files: files.iter().map(PathBuf::from).collect(),
                dataset: None,
            }),
            None => Err(RunError::Plan(format!(
                "task {} reads split `{split}` from dataset_kwargs.data_files in {}, which names no file for it; \
                 name one, or pass --data {}:{split}=PATH",
                entry.task.name(),
                entry.source,
                entry.task.name()
            ))),
        };
    }
    let named = spec.files.get(split).filter(|c| !c.is_empty()).map(Vec::as_slice);
    let found =
        ibex_hub::resolve_dataset_split(&spec.dataset, spec.revision.as_deref(), spec.config.as_deref(), split, named)
            .map_err(|source| RunError::Dataset {
                task: entry.task.name().to_owned(),
                split: split.to_owned(),
                source,
            })?;
    Ok(SplitSource {
        split: split.to_owned(),
        files: found.paths,
        dataset: Some(format!("{}@{}", spec.dataset, found.commit)),
    })
}

/// A task's few-shot count as lm-eval 0.4.13's `simple_evaluate` settles it: a task file's `num_fewshot: 0` ignores
/// the flag; else the flag (`--num-fewshot`) when given; else the task file's count, else 0.
pub fn task_shots(flag: Option<usize>, task: Option<usize>) -> usize {
    match (task, flag) {
        (Some(0), _) => 0,
        (_, Some(flag)) => flag,
        (task, None) => task.unwrap_or(0),
    }
}
