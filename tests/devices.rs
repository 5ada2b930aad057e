//! One model over several device handles (`--device cpu,cpu` with `--max-memory`, through the real placement and
//! stage code) and replicas over a node's handles give the single device's results bit for bit (f32, CPU): few-shot
//! tasks, a generation task and a group included.

use crate::common::{
    fixtures, group_and_generation_run, ibex, ibex_path_arg, model_folder, read_results, run_ok, samples_path,
    table_cells, HUB_MODEL,
};

/// The fixture model is 940 KiB in f32: 600 KiB per handle (540 KiB after the 10% reserve) holds half of it.
const HALF_THE_MODEL: &str = "600KiB";

#[test]
fn a_model_split_over_devices_or_replicated_scores_as_on_one_device() {
    let tasks = tempfile::tempdir().unwrap();
    let args = group_and_generation_run(tasks.path());
    let mut common: Vec<&str> = args.iter().map(String::as_str).collect();
    common.extend(["--batch-size", "3"]);
    let single = run_ok(&[&common[..], &["--device", "cpu"]].concat());
    let layouts: [(&[&str], &str); 3] = [
        (&["--device", "cpu,cpu", "--max-memory", "600KiB,600KiB"], "cpu[0-0]+cpu[1-1]"),
        (&["--device", "cpu,cpu"], "cpu[0-1] | cpu[0-1]"),
        (&["--device", "cpu,cpu,cpu,cpu,cpu", "--max-memory", HALF_THE_MODEL], "cpu[0-0]+cpu[1-1] | cpu[0-0]+cpu[1-1]"),
    ];
    let expected = read_results(single.path());
    assert_eq!(expected["config"]["device"], "cpu");
    for (flags, placement) in layouts {
        let run = run_ok(&[&common[..], flags].concat());
        let got = read_results(run.path());
        assert_eq!(got["config"]["device"], placement, "{flags:?}");
        assert_eq!(got["ibex"]["model"]["device"], placement);
        for key in ["results", "groups", "n-samples", "task_hashes"] {
            assert_eq!(got[key], expected[key], "{key} differs with {flags:?}");
        }
        for task in ["xnli_en", "xnli_es_spanish_bench", "xquad_en_short"] {
            let expected = std::fs::read_to_string(samples_path(single.path(), task)).unwrap();
            let got = std::fs::read_to_string(samples_path(run.path(), task)).unwrap();
            assert!(got == expected, "{task}'s sample log differs with {flags:?}");
        }
    }
}

#[test]
fn dry_run_prints_where_each_layer_goes() {
    let output = ibex(&[
        "run",
        "--model",
        HUB_MODEL,
        "--tasks",
        "xnli_en",
        "--device",
        "cpu,cpu,cpu",
        "--max-memory",
        HALF_THE_MODEL,
        "--dry-run",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<Vec<String>> = stdout.lines().filter(|l| l.contains("cpu (#")).map(table_cells).collect();
    assert_eq!(
        rows,
        [
            ["0", "cpu (#0)", "0", "embeddings, decoder layers", "473 KiB", "600 KiB"],
            ["0", "cpu (#1)", "1", "decoder layers, final norm, LM head", "473 KiB", "600 KiB"],
        ]
    );
    assert!(stdout.contains("one copy over 2 device handle(s); 10% of each budget is kept"), "{stdout}");
    assert!(stdout.contains("unused (too few or too small for another replica): cpu"), "{stdout}");
    assert!(stdout.contains("cpu,cpu,cpu (--max-memory 600 KiB each)"), "{stdout}");
}

#[test]
fn a_model_larger_than_its_devices_is_refused_before_loading() {
    let output =
        ibex(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--device", "cpu,cpu", "--max-memory", "300KiB"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("the model needs 940 KiB of weights, and cpu,cpu can hold 540 KiB once 10% of each is kept"),
        "{stderr}"
    );
    let output = ibex(&[
        "run",
        "--model",
        HUB_MODEL,
        "--tasks",
        "xnli_en",
        "--device",
        "cpu,cpu",
        "--max-memory",
        "1GB,1GB,1GB",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-memory gives 3 sizes for 2 device(s)"), "{stderr}");
    let output = ibex(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--max-memory", "cuda:1=8GB"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-memory names cuda:1, which --device does not"), "{stderr}");
    let output = ibex(&["run", "--model", HUB_MODEL, "--tasks", "xnli_en", "--max-memory", "lots"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`lots` is not a memory size; write it as 60GiB, 64GB or 512MiB"), "{stderr}");
}

#[test]
fn placement_counts_every_weight_of_the_checkpoint() {
    let shapes = [model_folder(), fixtures().join("models/tiny-salamandra-tied")];
    for folder in shapes {
        let config = ibex_candle::read_config(&folder.join("config.json")).unwrap();
        let shape = config.shape(4);
        let files: Vec<std::path::PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        let parameters = ibex_candle::parameter_count(&files).unwrap();
        assert_eq!(shape.total_bytes() - shape.per_handle_bytes, 4 * parameters, "{}", folder.display());
    }
}

/// A checkpoint folder with ALIA-40B's config.json (its shape; the tokenizer and the weights are the fixture's, as a
/// dry run reads only the config for placement).
fn alia_40b_shape(dir: &std::path::Path) {
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
        "intermediate_size": 24576, "num_hidden_layers": 48, "num_attention_heads": 64, "num_key_value_heads": 8,
        "vocab_size": 256000, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json", "model.safetensors"] {
        std::fs::copy(model_folder().join(file), dir.join(file)).unwrap();
    }
}

#[test]
fn alia_40b_plans_two_replicas_on_four_64_gib_gpus_and_one_on_an_h200() {
    let folder = tempfile::tempdir().unwrap();
    alia_40b_shape(folder.path());
    let dry_run = |devices: &str, memory: &str| {
        let args = ["run", "--model", ibex_path_arg(folder.path()), "--tasks", "xnli_en", "--dtype", "bf16"];
        let output = ibex(&[&args[..], &["--device", devices, "--max-memory", memory, "--dry-run"]].concat());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let rows: Vec<String> = stdout
            .lines()
            .filter(|l| l.contains("cuda:"))
            .filter(|l| l.contains(" (#"))
            .map(|l| table_cells(l).join(" | "))
            .collect();
        rows
    };
    assert_eq!(
        dry_run("cuda:0,cuda:1,cuda:2,cuda:3", "64GiB"),
        [
            "0 | cuda:0 (#0) | 0-23 | embeddings, decoder layers | 37.66 GiB | 64.00 GiB",
            "0 | cuda:1 (#1) | 24-47 | decoder layers, final norm, LM head | 37.66 GiB | 64.00 GiB",
            "1 | cuda:2 (#2) | 0-23 | embeddings, decoder layers | 37.66 GiB | 64.00 GiB",
            "1 | cuda:3 (#3) | 24-47 | decoder layers, final norm, LM head | 37.66 GiB | 64.00 GiB",
        ]
    );
    assert_eq!(
        dry_run("cuda:0", "141GB"),
        ["0 | cuda:0 (#0) | 0-47 | embeddings, decoder layers, final norm, LM head | 75.32 GiB | 131.32 GiB"]
    );
}

#[test]
fn tied_embeddings_split_over_devices_score_as_on_one() {
    let tied = fixtures().join("models/tiny-salamandra-tied");
    let data = format!("xnli_en={}", fixtures().join("data/xnli_en.validation.jsonl").display());
    let common = ["--model", ibex_path_arg(&tied), "--tasks", "xnli_en", "--data", data.as_str(), "--batch-size", "4"];
    let single = run_ok(&[&common[..], &["--device", "cpu"]].concat());
    // 651 KiB on one handle; split, the last handle holds its own copy of the embedding as the LM head.
    let split = run_ok(&[&common[..], &["--device", "cpu,cpu", "--max-memory", HALF_THE_MODEL]].concat());
    let got = read_results(split.path());
    assert_eq!(got["config"]["device"], "cpu[0-0]+cpu[1-1]");
    assert_eq!(got["results"], read_results(single.path())["results"]);
    let expected = std::fs::read_to_string(samples_path(single.path(), "xnli_en")).unwrap();
    assert!(std::fs::read_to_string(samples_path(split.path(), "xnli_en")).unwrap() == expected);
}
