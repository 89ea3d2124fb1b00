//! The `crosskd` binary as a user drives it: exit codes and messages for bad input (usage errors
//! exit 2, every other error exits 1 with one line naming the file or key at fault), and the
//! commands that look at a finished run (`inspect`, `export`, `list`, `eval --json`, `predict`
//! from an exported student, all of them without the run's teacher) plus the files every run
//! writes besides `metrics.jsonl`.

use std::process::Command;

fn crosskd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crosskd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `crosskd train` on a tiny problem (16×16 scenes, a few steps) with `extra` options.
fn train_tiny_task(task: &str, out: &str, steps: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "train",
        "--task",
        task,
        "--steps",
        steps,
        "--threads",
        "1",
        "--no-progress",
        "--set",
        "data.image-size=16",
        "--set",
        "data.train-samples=8",
        "--set",
        "data.val-samples=4",
        "--set",
        "data.test-samples=4",
        "--set",
        "train.batch-size=4",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    crosskd(&args)
}

#[test]
fn usage_errors_exit_2() {
    let (code, err) = crosskd(&["train", "--no-such-option"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_broken_image_is_named_as_the_input_not_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let (code, err) = train_tiny_task("depth", run_s, "2", &[]);
    assert_eq!(code, 0, "{err}");
    let broken = dir.path().join("broken.png");
    // A PNG signature and nothing else: what a truncated download looks like.
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n").unwrap();
    let out = dir.path().join("out.png");
    let (code, err) = crosskd(&[
        "predict",
        "--run",
        run_s,
        "--input",
        broken.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("input ") && err.contains("broken.png") && !err.contains("run folder"),
        "{err}"
    );

    // CUDA asked of a CPU-only build (or of a machine without a GPU): one clear error.
    let (code, err) = crosskd(&["eval", "--run", run_s, "--device", "cuda:0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("device") && err.contains("cuda"), "{err}");
}

fn train_tiny(run: &str) {
    let (code, err) = train_tiny_task(
        "segmentation",
        run,
        "4",
        &["--teacher", "random", "--set", "train.log-interval=2"],
    );
    assert_eq!(code, 0, "{err}");
}

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_crosskd"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn inspect_export_list_and_json_eval_on_a_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    train_tiny(run_s);

    // The flat table and the TensorBoard events beside metrics.jsonl.
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.starts_with("kind,step,epoch,split,"), "{header}");
    assert!(
        header.contains("metric_miou") && header.contains("task_loss"),
        "{header}"
    );
    let events = crosskd_train::tensorboard::event_files(&run).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");

    let report = stdout_of(&["inspect", run_s]);
    assert!(
        report.contains("task segmentation") && report.contains("digest verified"),
        "{report}"
    );
    let ck = run.join("checkpoints/best.safetensors");
    let tensors = stdout_of(&["inspect", ck.to_str().unwrap()]);
    assert!(
        tensors.contains("content digest: verified") && tensors.contains("student."),
        "{tensors}"
    );

    let json = stdout_of(&["eval", "--run", run_s, "--split", "val", "--json"]);
    let metrics: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert!(metrics["miou"].is_number(), "{json}");

    // The exported student predicts like the run it came from, and holds no projector.
    let student = dir.path().join("student.safetensors");
    stdout_of(&["export", "--run", run_s, "--out", student.to_str().unwrap()]);
    let exported = stdout_of(&["inspect", student.to_str().unwrap()]);
    assert!(
        !exported.contains("distill.") && !exported.contains("optim."),
        "{exported}"
    );
    let from_export = stdout_of(&[
        "eval",
        "--run",
        student.to_str().unwrap(),
        "--split",
        "val",
        "--json",
    ]);
    assert_eq!(from_export, json);
    let image = dir.path().join("in.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([120, 30, 200]))
        .save(&image)
        .unwrap();
    let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
    for (model, out) in [(run_s, &a), (student.to_str().unwrap(), &b)] {
        stdout_of(&[
            "predict",
            "--run",
            model,
            "--input",
            image.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // A dense prediction without --out says what is missing.
    let (code, err) = crosskd(&[
        "predict",
        "--run",
        run_s,
        "--input",
        image.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--out"), "{err}");

    std::fs::remove_file(run.join("loss_curves.png")).unwrap();
    let plotted = stdout_of(&["plot", run_s]);
    assert!(
        plotted.contains("loss_curves.png") && run.join("loss_curves.png").exists(),
        "{plotted}"
    );

    let archs = stdout_of(&["list", "archs"]);
    assert!(
        archs.contains("mobilenet-v2") && archs.contains("unet"),
        "{archs}"
    );
    let taps = stdout_of(&["list", "taps", "unet", "--size", "32"]);
    assert!(taps.contains("bottleneck"), "{taps}");
    let (code, err) = crosskd(&["list", "taps", "alexnet"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("alexnet") && err.contains("mobilenet-v2"),
        "{err}"
    );
    let configs = stdout_of(&[
        "list",
        "configs",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs"),
    ]);
    assert!(
        configs.contains("depth-no-kd.toml") && !configs.contains("invalid"),
        "{configs}"
    );
    let completions = stdout_of(&["completions", "bash"]);
    assert!(
        completions.contains("crosskd"),
        "completion script is empty"
    );
}

/// A trained student is evaluated, predicts and is plotted without its teacher: here a
/// `checkpoint` teacher whose run folder is gone by then.
#[test]
fn eval_predict_and_plot_need_no_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    let student = dir.path().join("student");
    let (teacher_s, student_s) = (teacher.to_str().unwrap(), student.to_str().unwrap());
    let (code, err) = train_tiny_task("depth", teacher_s, "2", &[]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = train_tiny_task(
        "segmentation",
        student_s,
        "2",
        &["--teacher", "checkpoint", "--teacher-path", teacher_s],
    );
    assert_eq!(code, 0, "{err}");
    let eval = ["eval", "--run", student_s, "--split", "val", "--json"];
    let with_teacher = stdout_of(&eval);

    std::fs::remove_dir_all(&teacher).unwrap();
    assert_eq!(stdout_of(&eval), with_teacher);
    let image = dir.path().join("in.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([40, 90, 160]))
        .save(&image)
        .unwrap();
    let out = dir.path().join("classes.png");
    let input = image.to_str().unwrap();
    stdout_of(&[
        "predict",
        "--run",
        student_s,
        "--input",
        input,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(out.exists());
    stdout_of(&["plot", student_s]);
}

#[test]
fn compare_pairs_seeds_and_reports_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (teacher, seed) in [("none", 1), ("none", 2), ("random", 1), ("random", 2)] {
        let run = dir.path().join(format!("{teacher}-{seed}"));
        let seed = seed.to_string();
        let (code, err) = train_tiny_task(
            "depth",
            run.to_str().unwrap(),
            "3",
            &["--teacher", teacher, "--seed", &seed],
        );
        assert_eq!(code, 0, "{err}");
        runs.push(run);
    }
    // Given as one folder of run folders, in reverse: the no-KD variant still comes first.
    let md = stdout_of(&["compare", dir.path().to_str().unwrap()]);
    let lines: Vec<&str> = md.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("| no KD |")), "{md}");
    let paired = lines
        .iter()
        .find(|l| l.starts_with("| random teacher, inverted |") && l.contains("(n = 2)"))
        .unwrap_or_else(|| panic!("no paired row: {md}"));
    assert!(
        paired.ends_with("| better |")
            || paired.ends_with("| worse |")
            || paired.ends_with("| undecided |"),
        "{paired}"
    );
    let csv = stdout_of(&[
        "compare",
        "--format",
        "csv",
        runs[0].to_str().unwrap(),
        runs[2].to_str().unwrap(),
    ]);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.lines().nth(1).unwrap().contains(",baseline"), "{csv}");
}
