//! Pretrained teachers from the Hugging Face hub, as a user reaches them: `crosskd train` with
//! `teacher.hub` or `teacher.name` resolved from a pre-filled hf-hub cache with the network
//! forbidden (`HF_HOME` in a temporary folder, `HF_HUB_OFFLINE=1`; the hub is not reachable from
//! the machines these tests run on anyway), the one-line error for a file that is not cached,
//! `crosskd list teachers` and `crosskd fetch-teachers --offline` / `--from`.
//!
//! The weights are fake (constant tensors) but carry the real names and shapes of timm's
//! MobileNetV2 state dict, from the manifest `models/manifests/timm-mobilenetv2_100.json`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use crosskd_train::teachers::hub::{place_in_cache, sha256_file};
use crosskd_train::teachers::HubFile;
use crosskd_train::Config;

const COMMIT: &str = "4c3b2a1f4c3b2a1f4c3b2a1f4c3b2a1f4c3b2a1f";

/// Runs `crosskd` with `HF_HOME=hf_home` and the hub forbidden; returns (code, stdout, stderr).
fn crosskd(hf_home: &Path, args: &[&str]) -> (i32, String, String) {
    common::crosskd_env(
        args,
        &[
            ("HF_HOME", hf_home.as_os_str()),
            ("HF_HUB_OFFLINE", std::ffi::OsStr::new("1")),
        ],
        &["HF_HUB_CACHE"],
    )
}

/// A safetensors file with timm's MobileNetV2 names and shapes (tensor i filled with a small
/// constant, running variances with 1).
fn fake_timm_mobilenet_v2(path: &Path) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/manifests/timm-mobilenetv2_100.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let mut tensors = HashMap::new();
    for (i, entry) in json["tensors"].as_array().unwrap().iter().enumerate() {
        let name = entry[0].as_str().unwrap().to_string();
        let shape: Vec<usize> = entry[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let t = if name.ends_with("num_batches_tracked") {
            Tensor::zeros(shape, DType::I64, &Device::Cpu).unwrap()
        } else {
            let value = if name.ends_with("running_var") {
                1.0
            } else {
                0.001 * (1 + i % 7) as f64
            };
            (Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap() * value).unwrap()
        };
        tensors.insert(name, t);
    }
    candle_core::safetensors::save(&tensors, path).unwrap();
}

/// An `HF_HOME` whose hub cache holds the fake weights as `repo`'s `model.safetensors` at
/// revision `main`; returns the snapshot file.
fn prefill(hf_home: &Path, repo: &str, weights: &Path) -> PathBuf {
    let file = HubFile {
        repo: repo.into(),
        file: "model.safetensors".into(),
        revision: "main".into(),
        sha256: None,
    };
    place_in_cache(&hf_home.join("hub"), &file, weights, COMMIT).unwrap()
}

/// A depth run (32×32 scenes, 2 steps) with the given `[teacher]` section.
fn config_text(teacher: &str) -> String {
    format!(
        "task = \"depth\"\nthreads = 1\n[data]\nimage-size = 32\ntrain-samples = 8\nval-samples = 4\n\
         test-samples = 4\n[train]\nsteps = 2\nbatch-size = 4\nlog-interval = 1\n[teacher]\n{teacher}"
    )
}

fn train(hf_home: &Path, dir: &Path, teacher: &str, run: &str) -> (i32, String, PathBuf) {
    let config = dir.join(format!("{run}.toml"));
    std::fs::write(&config, config_text(teacher)).unwrap();
    let out = dir.join(run);
    let (code, _, err) = crosskd(
        hf_home,
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
        ],
    );
    (code, err, out)
}

const HUB_TEACHER: &str = "kind = \"pretrained\"\nhub = \"someone/mnv2-test\"\nfile = \"model.safetensors\"\narchitecture = { arch = \"mobilenet-v2\" }\n";

#[test]
fn a_hub_teacher_trains_from_a_prefilled_offline_cache() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.safetensors");
    fake_timm_mobilenet_v2(&weights);
    let home_a = dir.path().join("hf-a");
    let home_b = dir.path().join("hf-b");
    prefill(&home_a, "someone/mnv2-test", &weights);
    prefill(&home_b, "someone/mnv2-test", &weights);

    let (code, err, run_a) = train(&home_a, dir.path(), HUB_TEACHER, "a");
    assert_eq!(code, 0, "{err}");
    let resolved = std::fs::read_to_string(run_a.join("config.toml")).unwrap();
    assert!(
        resolved.contains("hub = \"someone/mnv2-test\""),
        "{resolved}"
    );
    assert!(resolved.contains("revision = \"main\""), "{resolved}");
    assert!(
        !resolved.contains("hf-a"),
        "a cache path leaked into the config: {resolved}"
    );
    let metrics = std::fs::read_to_string(run_a.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let distill = first["distill_total"].as_f64().unwrap_or(0.0);
    assert!(
        distill.is_finite() && distill > 0.0,
        "no distillation term: {metrics}"
    );

    // Another machine's cache: the same experiment, so the same resolved config and hash.
    let (code, err, run_b) = train(&home_b, dir.path(), HUB_TEACHER, "b");
    assert_eq!(code, 0, "{err}");
    let resolved_b = std::fs::read_to_string(run_b.join("config.toml")).unwrap();
    assert_eq!(resolved, resolved_b);
    let hash = |text: &str| Config::from_toml_str(text, &[], None).unwrap().hash();
    assert_eq!(hash(&resolved), hash(&resolved_b));

    // A pinned hash is checked: the right one trains, a wrong one is refused naming both.
    let sha = sha256_file(&weights).unwrap();
    let pinned = format!("{HUB_TEACHER}sha256 = \"{sha}\"\n");
    let (code, err, _) = train(&home_a, dir.path(), &pinned, "pinned");
    assert_eq!(code, 0, "{err}");
    let wrong = format!("{HUB_TEACHER}sha256 = \"{}\"\n", "0".repeat(64));
    let (code, err, _) = train(&home_a, dir.path(), &wrong, "wrong");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("teacher.hub") && err.contains(&sha), "{err}");
}

#[test]
fn a_named_teacher_comes_from_the_teacher_list() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.safetensors");
    fake_timm_mobilenet_v2(&weights);
    let home = dir.path().join("hf");
    prefill(&home, "timm/mobilenetv2_100.ra_in1k", &weights);
    let teacher = "kind = \"pretrained\"\nname = \"mobilenetv2-imagenet\"\ntap = \"features.13\"\n";
    let (code, err, run) = train(&home, dir.path(), teacher, "named");
    assert_eq!(code, 0, "{err}");
    // Unpinned list entries say so when used.
    assert!(err.contains("unpinned"), "{err}");
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for want in [
        "hub = \"timm/mobilenetv2_100.ra_in1k\"",
        "file = \"model.safetensors\"",
        "naming = \"timm\"",
        "arch = \"mobilenet-v2\"",
        "tap = \"features.13\"",
    ] {
        assert!(resolved.contains(want), "{want} missing from {resolved}");
    }
    assert!(!resolved.contains("name = "), "{resolved}");
}

#[test]
fn an_uncached_hub_file_offline_is_one_line_saying_what_to_download_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("empty-hf");
    let (code, err, _) = train(&home, dir.path(), HUB_TEACHER, "uncached");
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    let line = lines[0];
    let cache = home.join("hub/models--someone--mnv2-test");
    for want in [
        "teacher.hub".to_string(),
        "HF_HUB_OFFLINE".to_string(),
        "https://huggingface.co/someone/mnv2-test/resolve/main/model.safetensors".to_string(),
        cache
            .join("snapshots/COMMIT/model.safetensors")
            .display()
            .to_string(),
        cache.join("refs/main").display().to_string(),
    ] {
        assert!(line.contains(&want), "{want} missing from: {line}");
    }
}

#[test]
fn an_unreachable_hub_is_one_line_saying_what_to_download_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("hf");
    let config = dir.path().join("online.toml");
    std::fs::write(&config, config_text(HUB_TEACHER)).unwrap();
    // Downloads allowed, but the hub is a closed local port: what a machine without internet sees.
    let out = Command::new(env!("CARGO_BIN_EXE_crosskd"))
        .args([
            "train",
            "--config",
            config.to_str().unwrap(),
            "--no-progress",
        ])
        .args(["--out", dir.path().join("run").to_str().unwrap()])
        .env("HF_HOME", &home)
        .env("HF_ENDPOINT", "http://127.0.0.1:1")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The unpinned download is announced; the failure is the one error line.
    assert!(err.contains("unpinned"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("Error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        err.trim_end().ends_with(errors[0]),
        "more after the error line: {err}"
    );
    let cache = home.join("hub/models--someone--mnv2-test");
    for want in [
        "teacher.hub: could not download someone/mnv2-test/model.safetensors@main".to_string(),
        "http://127.0.0.1:1/someone/mnv2-test/resolve/main/model.safetensors".to_string(),
        cache
            .join("snapshots/COMMIT/model.safetensors")
            .display()
            .to_string(),
    ] {
        assert!(
            errors[0].contains(&want),
            "{want} missing from: {}",
            errors[0]
        );
    }
}

#[test]
fn list_and_fetch_teachers_report_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.safetensors");
    fake_timm_mobilenet_v2(&weights);
    let home = dir.path().join("hf");

    // Nothing cached: every shipped teacher is missing, and offline fetching fails naming them.
    let (code, out, err) = crosskd(&home, &["fetch-teachers", "--offline"]);
    assert_eq!(code, 1, "{out}{err}");
    for name in [
        "resnet18-imagenet",
        "vgg16-imagenet",
        "mobilenetv2-imagenet",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains("missing")),
            "{out}"
        );
        assert!(err.contains(name), "{err}");
    }

    // `--from` puts a local file in place; then it is cached and the others still missing.
    let (code, out, err) = crosskd(
        &home,
        &[
            "fetch-teachers",
            "--only",
            "mobilenetv2-imagenet",
            "--from",
            weights.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let sha = sha256_file(&weights).unwrap();
    let (code, out, err) = crosskd(&home, &["fetch-teachers", "--offline"]);
    assert_eq!(code, 1, "{out}{err}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed: {out}"))
            .to_string()
    };
    assert!(
        line("mobilenetv2-imagenet").contains(&format!("cached, unpinned (sha256 {sha})")),
        "{out}"
    );
    assert!(line("resnet18-imagenet").contains("missing"), "{out}");
    let (code, out, err) = crosskd(
        &home,
        &[
            "fetch-teachers",
            "--offline",
            "--only",
            "mobilenetv2-imagenet",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = crosskd(&home, &["list", "teachers"]);
    assert_eq!(code, 0, "{err}");
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed: {out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("mobilenetv2-imagenet")[1..5],
        ["mobilenet-v2", "timm", "unpinned", "cached"]
    );
    assert_eq!(
        row("vgg16-imagenet")[1..5],
        ["vgg16", "timm", "unpinned", "missing"]
    );
    assert!(
        out.contains("timm/resnet50.tv_in1k/model.safetensors@main"),
        "{out}"
    );
}

#[test]
fn pretrained_teacher_sources_are_exclusive_and_errors_name_the_key() {
    let cases = [
        ("kind = \"pretrained\"\narchitecture = { arch = \"vgg16\" }\n", "teacher: expected one of `weights`"),
        (
            "kind = \"pretrained\"\narchitecture = { arch = \"vgg16\" }\nweights = \"w.safetensors\"\nhub = \"a/b\"\nfile = \"f\"\n",
            "teacher.hub: expected exactly one of",
        ),
        ("kind = \"pretrained\"\narchitecture = { arch = \"vgg16\" }\nhub = \"a/b\"\n", "teacher.file: expected the weights file"),
        ("kind = \"pretrained\"\narchitecture = { arch = \"vgg16\" }\nhub = \"ab\"\nfile = \"f\"\n", "teacher.hub: expected a repository id"),
        ("kind = \"pretrained\"\narchitecture = { arch = \"vgg16\" }\nhub = \"a/b\"\nfile = \"../f\"\n", "teacher.file: expected a file"),
        ("kind = \"pretrained\"\narchitecture = { arch = \"vgg16\" }\nhub = \"a/b\"\nfile = \"f\"\nsha256 = \"12\"\n", "teacher.sha256: expected 64 hex digits"),
        ("kind = \"pretrained\"\narchitecture = { arch = \"vgg16\" }\nweights = \"w.safetensors\"\nrevision = \"main\"\n", "teacher.revision: only used with `teacher.hub`"),
        ("kind = \"pretrained\"\nhub = \"a/b\"\nfile = \"f\"\n", "teacher.architecture: expected an architecture table"),
        ("kind = \"pretrained\"\nname = \"vgg16-imagenet\"\narchitecture = { arch = \"vgg16\" }\n", "teacher.architecture: comes from the teacher list"),
        ("kind = \"pretrained\"\nname = \"no-such-teacher\"\n", "teacher.name: expected a teacher of models/teachers.toml"),
        ("kind = \"pretrained\"\narchitecture = { arch = \"vgg16\" }\nweights = \"w\"\nnaming = \"keras\"\n", "teacher.naming: expected one of \"auto\", \"torchvision\", \"timm\", found \"keras\""),
    ];
    for (teacher, want) in cases {
        let err = Config::from_toml_str(&config_text(teacher), &[], Some(Path::new("run.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("run.toml: ") && err.contains(want),
            "{teacher}\n→ {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn existing_pretrained_configs_keep_their_hash() {
    // 4b1930864570c393 is what `crosskd list configs` printed for this file before hub teachers
    // existed (the binary of commit 37e80ca); weights-file configs must still name the same run.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/classification-pretrained-inverted.toml");
    let config = Config::from_file(&path, &[]).unwrap();
    assert_eq!(config.hash(), "4b1930864570c393");
}
