//! The teacher side of training end to end: logit KD from a crosskd classification teacher (a run
//! folder and an exported file), its refusals before step 1, and the teacher-feature cache
//! (`train.cache-teacher`), whose runs must be bit-identical to runs without it.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use crosskd_train::checkpoint::Checkpoint;
use crosskd_train::config::Config;
use crosskd_train::metrics_log::{read_records, Record};
use crosskd_train::train::{run_training_with, RunOptions, StopReason};
use crosskd_train::TrainError;

/// A small classification run on the IDX fixture in `data`, with `extra` TOML appended.
fn classification(data: &Path, extra: &str) -> Result<Config, TrainError> {
    let root = data.display().to_string().replace('\\', "/");
    let text = format!(
        "task = \"classification\"\nseed = 3\nthreads = 1\n\
         [student.architecture]\narch = \"small-resnet\"\nin-channels = 1\nwidths = [4, 8]\nblocks = [1, 1]\n\
         [data]\ndataset = \"fashion-mnist\"\nroot = \"{root}\"\nnum-classes = 4\nimage-size = 28\n\
         train-samples = 44\nval-samples = 16\ntest-samples = 16\naugment = true\n\
         [optimiser]\nlr = 0.01\n[schedule]\nkind = \"constant\"\n\
         [train]\nsteps = 8\nbatch-size = 8\nlog-interval = 2\neval-interval = 4\n{extra}"
    );
    Config::from_toml_str(&text, &[], None)
}

/// A small depth run on rendered scenes with a random U-Net teacher, flips on.
fn depth(extra_train: &str) -> Config {
    let text = format!(
        "task = \"depth\"\nseed = 5\nthreads = 1\n\
         [student.architecture]\narch = \"unet\"\nbase-width = 4\ndepth = 2\nout-channels = 4\n\
         [teacher]\nkind = \"random\"\n[teacher.architecture]\narch = \"unet\"\nbase-width = 8\ndepth = 2\nout-channels = 4\n\
         [distill]\nkind = \"fitnets\"\ndirection = \"inverted\"\n\
         [data]\nimage-size = 16\ntrain-samples = 36\nval-samples = 8\ntest-samples = 8\naugment = true\n\
         [optimiser]\nlr = 0.01\n[schedule]\nkind = \"constant\"\n\
         [train]\nsteps = 12\nbatch-size = 8\nlog-interval = 2\neval-interval = 6\n{extra_train}"
    );
    Config::from_toml_str(&text, &[], None).unwrap_or_else(|e| panic!("{e}"))
}

/// Every tensor of the run's last checkpoint as raw f32 bits.
fn last_weights(dir: &Path) -> HashMap<String, Vec<u32>> {
    let ck = Checkpoint::load(&dir.join("checkpoints/last.safetensors"), &Device::Cpu).unwrap();
    ck.tensors
        .iter()
        .filter(|(_, t)| t.dtype().is_float())
        .map(|(n, t): (&String, &Tensor)| {
            let v = t
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (n.clone(), v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

fn logit_kd_values(dir: &Path) -> Vec<f64> {
    read_records(&dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(t) => Some(t.logit_kd),
            _ => None,
        })
        .map(|v| v.expect("every train line of a logit-KD run has its logit_kd term"))
        .collect()
}

fn has_cache(dir: &Path) -> bool {
    let root = dir.join(crosskd_train::teacher_cache::CACHE_DIR);
    std::fs::read_dir(&root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.path().join("manifest.json").is_file())
        })
        .unwrap_or(false)
}

/// Trains two runs of `config` that differ only in `train.cache-teacher` (on, off) and checks
/// the cache was used by the first only and that both end bit-identical.
fn assert_cache_is_invisible(config: &Config) -> (tempfile::TempDir, tempfile::TempDir) {
    let on = config
        .with_overrides(&["train.cache-teacher=on".into()])
        .unwrap();
    let off = config
        .with_overrides(&["train.cache-teacher=off".into()])
        .unwrap();
    assert_eq!(
        on.hash(),
        off.hash(),
        "the cache setting is outside the hash"
    );
    assert_eq!(on.hash(), config.hash());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sa = run_training_with(&on, a.path(), &RunOptions::default()).unwrap();
    let sb = run_training_with(&off, b.path(), &RunOptions::default()).unwrap();
    assert_eq!(
        (sa.stop, sb.stop),
        (StopReason::Finished, StopReason::Finished)
    );
    assert!(has_cache(a.path()), "cache-teacher = on wrote no cache");
    assert!(!has_cache(b.path()), "cache-teacher = off wrote a cache");
    assert_eq!(
        common::comparable_metrics(a.path()),
        common::comparable_metrics(b.path())
    );
    let (wa, wb) = (last_weights(a.path()), last_weights(b.path()));
    assert_eq!(wa.len(), wb.len());
    for (name, bits) in &wa {
        assert!(
            wb[name] == *bits,
            "{name} differs with and without the cache"
        );
    }
    assert_eq!(sa.config_hash, sb.config_hash);
    (a, b)
}

#[test]
fn logit_kd_trains_from_a_crosskd_classification_run_and_its_export() {
    let data = tempfile::tempdir().unwrap();
    common::write_fake_fashion_mnist(data.path(), 72, 16);
    let teacher_dir = tempfile::tempdir().unwrap();
    let teacher = classification(data.path(), "").unwrap();
    run_training_with(&teacher, teacher_dir.path(), &RunOptions::default()).unwrap();

    let from_run = format!(
        "[teacher]\nkind = \"checkpoint\"\npath = \"{}\"\n[distill]\nkind = \"logit-kd\"\ntemperature = 2.0\n",
        teacher_dir.path().display().to_string().replace('\\', "/")
    );
    let student = classification(data.path(), &from_run).unwrap();
    // Bit-identical with and without the cache, logits read through the checkpoint's head.
    let (run, _) = assert_cache_is_invisible(&student);
    let values = logit_kd_values(run.path());
    assert!(!values.is_empty());
    assert!(
        values.iter().all(|v| v.is_finite() && *v > 0.0),
        "{values:?}"
    );
    let resolved = std::fs::read_to_string(run.path().join("config.toml")).unwrap();
    assert!(resolved.contains("tap = \"logits\""), "{resolved}");

    // The exported student of the teacher run works as well.
    let file = teacher_dir.path().join("teacher.safetensors");
    crosskd_train::commands::export(teacher_dir.path(), &file).unwrap();
    let from_file = from_run.replace(
        &teacher_dir.path().display().to_string().replace('\\', "/"),
        &file.display().to_string().replace('\\', "/"),
    );
    let student = classification(data.path(), &from_file).unwrap();
    let out = tempfile::tempdir().unwrap();
    run_training_with(&student, out.path(), &RunOptions::default()).unwrap();
    let values = logit_kd_values(out.path());
    assert!(
        values.iter().all(|v| v.is_finite() && *v > 0.0),
        "{values:?}"
    );
}

#[test]
fn logit_kd_trains_from_a_torchvision_classifier_over_the_same_labels() {
    // A random ResNet-18 stands in for an ImageNet teacher: same classifier path (`fc`, the
    // `logits` tap), with as many outputs as the data set has labels; RGB inputs for it.
    let data = tempfile::tempdir().unwrap();
    common::write_fake_fashion_mnist(data.path(), 72, 16);
    let student = classification(
        data.path(),
        "[teacher]\nkind = \"random\"\n[teacher.architecture]\narch = \"resnet\"\ndepth = 18\n\
         num-classes = 4\n[distill]\nkind = \"logit-kd\"\n",
    )
    .unwrap()
    .with_overrides(&["student.architecture.in-channels=3".into()])
    .unwrap();
    let (run, _) = assert_cache_is_invisible(&student);
    let values = logit_kd_values(run.path());
    assert!(
        !values.is_empty() && values.iter().all(|v| v.is_finite() && *v > 0.0),
        "{values:?}"
    );
}

#[test]
fn logit_kd_where_it_cannot_work_is_refused_before_training() {
    let data = tempfile::tempdir().unwrap();
    common::write_fake_fashion_mnist(data.path(), 72, 16);
    let key_of = |e: TrainError| match e {
        TrainError::Config { key, message, .. } => (key, message),
        other => panic!("expected a config error, got {other}"),
    };

    // A dense task has no per-image logits.
    let text = "task = \"depth\"\n[teacher]\nkind = \"random\"\n[distill]\nkind = \"logit-kd\"\n";
    let (key, message) = key_of(Config::from_toml_str(text, &[], None).unwrap_err());
    assert_eq!(key, "distill.kind", "{message}");
    assert!(message.contains("classification"), "{message}");

    // A teacher without a classifier (the random small ResNet).
    let e = classification(
        data.path(),
        "[teacher]\nkind = \"random\"\n[distill]\nkind = \"logit-kd\"\n",
    )
    .unwrap_err();
    let (key, message) = key_of(e);
    assert_eq!(key, "teacher.architecture", "{message}");
    assert!(message.contains("classifier"), "{message}");

    // An ImageNet classifier on a 4-class data set.
    let e = classification(
        data.path(),
        "[teacher]\nkind = \"pretrained\"\nweights = \"resnet18.safetensors\"\n\
         [teacher.architecture]\narch = \"resnet\"\ndepth = 18\n[distill]\nkind = \"logit-kd\"\n",
    )
    .unwrap_err();
    let (key, message) = key_of(e);
    assert_eq!(key, "teacher.architecture.num-classes", "{message}");
    assert!(
        message.contains("1000") && message.contains('4'),
        "{message}"
    );

    // A crosskd teacher over 4 classes for a 5-class student: known only from the weights, so
    // refused when the teacher is opened, before step 1.
    let teacher_dir = tempfile::tempdir().unwrap();
    let teacher = classification(data.path(), "").unwrap();
    run_training_with(
        &teacher,
        teacher_dir.path(),
        &RunOptions {
            stop_after_step: Some(1),
            ..RunOptions::default()
        },
    )
    .unwrap();
    let student = classification(
        data.path(),
        &format!(
            "[teacher]\nkind = \"checkpoint\"\npath = \"{}\"\n[distill]\nkind = \"logit-kd\"\n",
            teacher_dir.path().display().to_string().replace('\\', "/")
        ),
    )
    .unwrap()
    .with_overrides(&["data.num-classes=5".into()])
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (key, message) =
        key_of(run_training_with(&student, out.path(), &RunOptions::default()).unwrap_err());
    assert_eq!(key, "teacher.path", "{message}");
    assert!(
        message.contains("5 classes") && message.contains("scores 4"),
        "{message}"
    );
    assert!(
        !out.path().join("metrics.jsonl").exists(),
        "the refused run started training"
    );
}

#[test]
fn the_teacher_cache_leaves_a_feature_distillation_run_bit_identical() {
    let config = depth("");
    let (_, off) = assert_cache_is_invisible(&config);
    // A stopped run resumes on the cache it built (one cache folder) and still ends as the run
    // without the cache did.
    let on = config
        .with_overrides(&["train.cache-teacher=on".into()])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = RunOptions {
        stop_after_step: Some(5),
        ..RunOptions::default()
    };
    run_training_with(&on, dir.path(), &stop).unwrap();
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    run_training_with(&on, dir.path(), &resume).unwrap();
    let caches = std::fs::read_dir(dir.path().join("teacher-cache"))
        .unwrap()
        .filter_map(|e| e.ok())
        .count();
    assert_eq!(caches, 1);
    assert_eq!(
        common::comparable_metrics(dir.path()),
        common::comparable_metrics(off.path())
    );
}

#[test]
fn cache_teacher_on_without_a_teacher_is_a_config_error() {
    let c = Config::from_toml_str(
        "task = \"depth\"\n[train]\ncache-teacher = \"on\"\n",
        &[],
        None,
    )
    .unwrap_err();
    match c {
        TrainError::Config { key, message, .. } => {
            assert_eq!(key, "train.cache-teacher");
            assert!(message.contains("no teacher"), "{message}");
        }
        other => panic!("{other}"),
    }
    let e = Config::from_toml_str(
        "task = \"depth\"\n[train]\ncache-teacher = \"always\"\n",
        &[],
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("train.cache-teacher"), "{e}");
}
