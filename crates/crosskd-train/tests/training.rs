//! End-to-end training runs on tiny data: every task learns, runs are reproducible, a stopped run
//! resumes bit-identically, and a non-finite loss stops the run naming the step.

mod common;

use std::io::Write;
use std::path::Path;

use crosskd_train::config::Config;
use crosskd_train::metrics_log::{read_records, Record};
use crosskd_train::session::Session;
use crosskd_train::train::{evaluate_session, run_training_with, RunOptions, StopReason};
use crosskd_train::TrainError;

const UNET: &str =
    "[student.architecture]\narch = \"unet\"\nbase-width = 4\ndepth = 2\nout-channels = 4\n";

fn tiny(task: &str, extra: &str) -> Config {
    let student = if task == "classification" {
        "[student.architecture]\narch = \"small-resnet\"\nin-channels = 1\nwidths = [4, 8]\nblocks = [1, 1]\n"
    } else {
        UNET
    };
    let text = format!(
        "task = \"{task}\"\nseed = 1\nthreads = 1\n{student}\n[data]\nimage-size = 16\ntrain-samples = 32\n\
         val-samples = 16\ntest-samples = 16\n[optimiser]\nlr = 0.01\n[schedule]\nkind = \"constant\"\n\
         [train]\nsteps = 24\nbatch-size = 8\nlog-interval = 4\neval-interval = 8\n{extra}"
    );
    Config::from_toml_str(&text, &[], None).unwrap_or_else(|e| panic!("{e}"))
}

/// The primary metric of the untrained model (same seeded initialisation as the run's).
fn untrained_primary(config: &Config) -> (String, bool, f64) {
    let session = Session::build(config).unwrap();
    let primary = session.student.head.new_metrics().primary();
    let m = evaluate_session(&session, "val").unwrap();
    (
        primary.name.to_string(),
        primary.higher_is_better,
        m[primary.name],
    )
}

fn train_losses(dir: &Path) -> Vec<f64> {
    read_records(&dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            if let Record::Train(t) = r {
                Some(t.task_loss)
            } else {
                None
            }
        })
        .collect()
}

fn assert_learns(config: &Config) {
    let dir = tempfile::tempdir().unwrap();
    let (name, higher, before) = untrained_primary(config);
    let summary = run_training_with(config, dir.path(), &RunOptions::default()).unwrap();
    assert_eq!(summary.stop, StopReason::Finished);
    let losses = train_losses(dir.path());
    assert!(losses.len() >= 3, "{losses:?}");
    assert!(
        losses.last().unwrap() < losses.first().unwrap(),
        "task loss did not fall: {losses:?}"
    );
    let (best, _) = summary.best.expect("an evaluation ran");
    let better = if higher { best > before } else { best < before };
    assert!(
        better,
        "{} {name}: trained {best} vs untrained {before}",
        config.task.name()
    );
    for f in [
        "config.toml",
        "metrics.jsonl",
        "checkpoints/last.safetensors",
        "checkpoints/best.safetensors",
        "loss_curves.png",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    assert!(!summary.test.is_empty());
}

#[test]
fn depth_learns_with_a_random_teacher_and_inverted_projector() {
    let c = tiny("depth", "[teacher]\nkind = \"random\"\n[distill]\nkind = \"fitnets\"\ndirection = \"inverted\"\ndistance = { kind = \"squared-l2\" }\n");
    assert_learns(&c);
}

#[test]
fn segmentation_learns_with_the_tail_regulariser() {
    assert_learns(&tiny(
        "segmentation",
        "[regulariser]\nkind = \"tail\"\nrank = 2\nweight = 0.01\n",
    ));
}

#[test]
fn translation_learns_with_a_standard_projector() {
    let c = tiny(
        "translation",
        "[teacher]\nkind = \"random\"\n[distill]\nkind = \"fitnets\"\ndirection = \"standard\"\n",
    );
    assert_learns(&c);
}

#[test]
fn classification_learns_on_idx_files() {
    let data = tempfile::tempdir().unwrap();
    common::write_fake_fashion_mnist(data.path(), 96, 32);
    let root = data.path().display().to_string().replace('\\', "/");
    let mut c = tiny("classification", "");
    c = c
        .with_overrides(&[
            format!("data.root=\"{root}\""),
            "data.dataset=fashion-mnist".into(),
            "data.num-classes=4".into(),
            "data.image-size=28".into(),
            "data.train-samples=64".into(),
        ])
        .unwrap();
    assert_learns(&c);
}

#[test]
fn same_seed_gives_identical_metrics_and_stop_resume_continues_bit_identically() {
    let c = tiny(
        "depth",
        "[teacher]\nkind = \"random\"\n[regulariser]\nkind = \"energy\"\nweight = 0.001\n",
    );
    let c = c
        .with_overrides(&[
            "data.augment=true".into(),
            "optimiser.kind=sgd".into(),
            "optimiser.nesterov=true".into(),
        ])
        .unwrap();
    let full = tempfile::tempdir().unwrap();
    let again = tempfile::tempdir().unwrap();
    let resumed = tempfile::tempdir().unwrap();
    run_training_with(&c, full.path(), &RunOptions::default()).unwrap();
    run_training_with(&c, again.path(), &RunOptions::default()).unwrap();
    assert_eq!(
        common::comparable_metrics(full.path()),
        common::comparable_metrics(again.path())
    );

    // Stop mid-epoch and off the logging grid (4 steps per epoch, log every 4), then resume.
    let stop = RunOptions {
        stop_after_step: Some(10),
        ..RunOptions::default()
    };
    let s = run_training_with(&c, resumed.path(), &stop).unwrap();
    assert_eq!((s.stop, s.steps), (StopReason::StoppedEarly, 10));
    // A killed process may have logged past its checkpoint: simulate a line it wrote later.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(resumed.path().join("metrics.jsonl"))
        .unwrap();
    writeln!(f, "{{\"kind\":\"train\",\"step\":11,\"epoch\":2,\"task_loss\":9.0,\"distill_total\":0.0,\"regulariser\":0.0,\"total_loss\":9.0,\"lr\":0.1,\"samples_per_s\":1.0}}").unwrap();
    drop(f);
    let s = run_training_with(
        &c,
        resumed.path(),
        &RunOptions {
            resume: true,
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!((s.stop, s.steps), (StopReason::Finished, 24));
    assert_eq!(
        common::comparable_metrics(full.path()),
        common::comparable_metrics(resumed.path())
    );
}

#[test]
fn resume_refuses_a_different_config() {
    let c = tiny("segmentation", "");
    let dir = tempfile::tempdir().unwrap();
    run_training_with(
        &c,
        dir.path(),
        &RunOptions {
            stop_after_step: Some(2),
            ..RunOptions::default()
        },
    )
    .unwrap();
    let other = c.with_overrides(&["seed=9".into()]).unwrap();
    let e = run_training_with(
        &other,
        dir.path(),
        &RunOptions {
            resume: true,
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("config hash"), "{e}");
}

#[test]
fn non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint() {
    let c = tiny("segmentation", "").with_overrides(&[
        "optimiser.kind=sgd".into(),
        "optimiser.momentum=0.0".into(),
        "optimiser.lr=1e38".into(),
        "train.checkpoint-interval=1".into(),
        // Flips draw from the trainer's generator, so the checkpoint's generator state is checked.
        "data.augment=true".into(),
    ]);
    let c = c.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = run_training_with(&c, dir.path(), &RunOptions::default()).unwrap_err();
    let step = match &err {
        TrainError::NonFinite { step, .. } => *step,
        other => panic!("expected a non-finite error, got {other}"),
    };
    let msg = err.to_string();
    assert!(msg.contains(&format!("step {step}")), "{msg}");
    // Whatever checkpoint is on disk is intact, from before the failing step, and finite.
    let path = dir.path().join("checkpoints/last.safetensors");
    if path.exists() {
        let ck =
            crosskd_train::checkpoint::Checkpoint::load(&path, &candle_core::Device::Cpu).unwrap();
        assert!(
            ck.position.step < step,
            "{msg}: checkpoint at {}",
            ck.position.step
        );
        for (name, t) in &ck.tensors {
            if t.dtype().is_float() {
                let v = t
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap();
                let v = v.to_vec1::<f64>().unwrap();
                assert!(v.iter().all(|x| x.is_finite()), "{name} is not finite");
            }
        }
        // It is the state a run stopped cleanly at that step would have saved, generator
        // included.
        let clean = tempfile::tempdir().unwrap();
        let stop = RunOptions {
            stop_after_step: Some(ck.position.step),
            ..RunOptions::default()
        };
        if ck.position.step > 0 {
            // Its end-of-run spectra may fail on these huge weights; the checkpoint is written
            // before them.
            let _ = run_training_with(&c, clean.path(), &stop);
            let reference = crosskd_train::checkpoint::Checkpoint::load(
                &clean.path().join("checkpoints/last.safetensors"),
                &candle_core::Device::Cpu,
            )
            .unwrap();
            assert_eq!(ck.position, reference.position);
        }
    }
    // The metrics written so far read back.
    read_records(&dir.path().join("metrics.jsonl")).unwrap();
}

#[test]
fn a_damaged_last_checkpoint_falls_back_to_previous() {
    let c = tiny("depth", "");
    let full = tempfile::tempdir().unwrap();
    run_training_with(&c, full.path(), &RunOptions::default()).unwrap();

    // Evaluations at steps 8 and 16 checkpoint; the stop at 10 writes `last` again, so `previous`
    // holds step 8.
    let dir = tempfile::tempdir().unwrap();
    let stop = RunOptions {
        stop_after_step: Some(10),
        ..RunOptions::default()
    };
    run_training_with(&c, dir.path(), &stop).unwrap();
    flip_last_byte(dir.path(), "last");
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    let s = run_training_with(&c, dir.path(), &resume).unwrap();
    assert_eq!((s.stop, s.steps), (StopReason::Finished, 24));
    assert_eq!(
        common::comparable_metrics(full.path()),
        common::comparable_metrics(dir.path())
    );

    // With `previous` damaged too, the error names the files instead of guessing.
    let dir = tempfile::tempdir().unwrap();
    run_training_with(&c, dir.path(), &stop).unwrap();
    for name in ["last", "previous"] {
        flip_last_byte(dir.path(), name);
    }
    let e = run_training_with(&c, dir.path(), &resume)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("last.safetensors")
            && e.contains("previous.safetensors")
            && e.contains("corrupt"),
        "{e}"
    );
}

/// Damages a checkpoint the way a bad disk would: one bit of its last tensor byte.
fn flip_last_byte(run: &Path, checkpoint: &str) {
    let p = run.join(format!("checkpoints/{checkpoint}.safetensors"));
    let mut bytes = std::fs::read(&p).unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 0x01;
    std::fs::write(&p, &bytes).unwrap();
}
