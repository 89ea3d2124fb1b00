//! Every data source as a user reaches it: a small fixture written in the source's documented
//! layout, then `crosskd train` (a few steps, with per-sample augmentation and loader workers),
//! `crosskd eval` and `crosskd predict` on the run. Bad layouts end with one error naming the
//! file, never a panic.

mod common;

use std::path::Path;

/// Runs the binary: exit code, stdout, stderr.
fn crosskd(args: &[&str]) -> (i32, String, String) {
    common::crosskd_env(args, &[], &[])
}

fn mkdirs(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
}

/// An RGB PNG whose colours depend on `seed` and the position (so images differ and carry
/// structure to learn).
fn rgb_png(path: &Path, w: u32, h: u32, seed: u32) {
    mkdirs(path);
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 13 + seed * 29) % 256) as u8,
            ((y * 17 + seed * 7) % 256) as u8,
            ((x * y + seed * 53) % 256) as u8,
        ])
    })
    .save(path)
    .unwrap();
}

/// A 16-bit grey PNG of depth in millimetres, 0 (no measurement) in the top-left pixel.
fn depth_png(path: &Path, w: u32, h: u32, seed: u32) {
    mkdirs(path);
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
        let mm = if x == 0 && y == 0 {
            0
        } else {
            800 + 150 * y + 40 * x + 90 * (seed % 5)
        };
        image::Luma([mm as u16])
    })
    .save(path)
    .unwrap();
}

/// An 8-bit grey PNG filled by `id(x, y)`.
fn grey8_png(path: &Path, w: u32, h: u32, id: impl Fn(u32, u32) -> u8) {
    mkdirs(path);
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([id(x, y)]))
        .save(path)
        .unwrap();
}

/// NYUv2 layout: `train.txt`/`test.txt` listing `rgb/N.png depth/N.png` (20×15 frames, so the
/// loader resizes them).
fn write_nyuv2(root: &Path, train: u32, test: u32) {
    let mut lists = [String::from("# rgb depth focal\n"), String::new()];
    for i in 0..train + test {
        rgb_png(&root.join(format!("rgb/{i}.png")), 20, 15, i);
        depth_png(&root.join(format!("depth/{i}.png")), 20, 15, i);
        let list = &mut lists[usize::from(i >= train)];
        list.push_str(&format!("rgb/{i}.png depth/{i}.png 518.8\n"));
    }
    std::fs::write(root.join("train.txt"), &lists[0]).unwrap();
    std::fs::write(root.join("test.txt"), &lists[1]).unwrap();
}

/// Cityscapes layout with label ids of road (7), car (26), sky (23) and unlabeled (0).
fn write_cityscapes(root: &Path, train: u32, test: u32) {
    for i in 0..train + test {
        let split = if i < train { "train" } else { "val" };
        let stem = format!("aachen_{i:06}_000019");
        rgb_png(
            &root.join(format!("leftImg8bit/{split}/aachen/{stem}_leftImg8bit.png")),
            24,
            12,
            i,
        );
        grey8_png(
            &root.join(format!("gtFine/{split}/aachen/{stem}_gtFine_labelIds.png")),
            24,
            12,
            |x, y| match (x * 4 / 24, y) {
                (_, 0) => 0,
                (0 | 1, _) => 7,
                (2, _) => 26,
                _ => 23,
            },
        );
    }
}

/// pix2pix layout: `train/` and `val/` files holding A | B side by side.
fn write_pix2pix(root: &Path, train: u32, test: u32) {
    for i in 0..train + test {
        let split = if i < train { "train" } else { "val" };
        rgb_png(&root.join(format!("{split}/{i}.jpg")), 32, 16, i);
    }
}

/// ImageFolder layout: `train/<class>/` and `test/<class>/`, one colour per class.
fn write_image_folder(root: &Path, per_class_train: u32, per_class_test: u32) {
    for (c, class) in ["cat", "dog", "fox"].iter().enumerate() {
        for i in 0..per_class_train + per_class_test {
            let split = if i < per_class_train { "train" } else { "test" };
            rgb_png(
                &root.join(format!("{split}/{class}/{i}.png")),
                18,
                14,
                c as u32 * 40 + i,
            );
        }
    }
}

const UNET: &str =
    "[student.architecture]\narch = \"unet\"\nbase-width = 4\ndepth = 2\nout-channels = 4\n";
const RESNET: &str =
    "[student.architecture]\narch = \"small-resnet\"\nwidths = [4, 8]\nblocks = [1, 1]\n";

/// A run config for `task` on `dataset` under `root` (absent for scenes) with augmentation and
/// two loader workers; `size` is the image side.
fn config(task: &str, dataset: &str, root: Option<&Path>, size: u32, data_extra: &str) -> String {
    let student = if task == "classification" {
        RESNET
    } else {
        UNET
    };
    let root = root
        .map(|r| {
            format!(
                "root = \"{}\"\n",
                r.display().to_string().replace('\\', "/")
            )
        })
        .unwrap_or_default();
    format!(
        "task = \"{task}\"\nseed = 4\nthreads = 1\n{student}\n[data]\ndataset = \"{dataset}\"\n{root}\
         image-size = {size}\ntrain-samples = 0\nval-samples = 2\ntest-samples = 4\nworkers = 2\n\
         {data_extra}augment = {{ flip = true, crop-scale = [0.7, 1.0], brightness = 0.2, contrast = 0.2, saturation = 0.2 }}\n\
         [train]\nsteps = 3\nbatch-size = 4\nlog-interval = 1\neval-interval = 3\n"
    )
}

/// `crosskd train`, then `eval` and `predict` on the run; returns the run folder's parent.
fn train_eval_predict(dir: &Path, config_text: &str, input: &Path, dense: bool) {
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, config_text).unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let (code, _, err) = crosskd(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run_s,
        "--no-progress",
    ]);
    assert_eq!(code, 0, "train failed:\n{err}\nconfig:\n{config_text}");
    assert!(run.join("checkpoints/best.safetensors").exists());
    let (code, out, err) = crosskd(&["eval", "--run", run_s]);
    assert_eq!(code, 0, "eval failed:\n{err}");
    assert!(
        out.contains("test metrics") && out.contains("loss"),
        "{out}"
    );
    let pred = dir.join("prediction.png");
    let mut args = vec![
        "predict",
        "--run",
        run_s,
        "--input",
        input.to_str().unwrap(),
    ];
    if dense {
        args.extend(["--out", pred.to_str().unwrap()]);
    }
    let (code, out, err) = crosskd(&args);
    assert_eq!(code, 0, "predict failed:\n{err}");
    if dense {
        assert!(pred.exists(), "{out}");
    } else {
        assert!(out.contains("class "), "{out}");
    }
}

#[test]
fn nyuv2_layout_trains_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nyu");
    write_nyuv2(&root, 10, 4);
    let text = config("depth", "nyuv2", Some(&root), 16, "");
    train_eval_predict(dir.path(), &text, &root.join("rgb/11.png"), true);
}

#[test]
fn cityscapes_layout_trains_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cityscapes");
    write_cityscapes(&root, 8, 3);
    let text = config("segmentation", "cityscapes", Some(&root), 16, "");
    train_eval_predict(
        dir.path(),
        &text,
        &root.join("leftImg8bit/val/aachen/aachen_000009_000019_leftImg8bit.png"),
        true,
    );
    // The resolved config holds the 19 Cityscapes classes.
    let resolved = std::fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    assert!(resolved.contains("num-classes = 19"), "{resolved}");
}

#[test]
fn pix2pix_layout_trains_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("facades");
    write_pix2pix(&root, 8, 3);
    let text = config(
        "translation",
        "pix2pix",
        Some(&root),
        16,
        "direction = \"b-to-a\"\n",
    );
    train_eval_predict(dir.path(), &text, &root.join("val/9.jpg"), true);
}

#[test]
fn image_folder_layout_trains_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pets");
    write_image_folder(&root, 3, 2);
    let text = config("classification", "image-folder", Some(&root), 16, "");
    train_eval_predict(dir.path(), &text, &root.join("test/dog/4.png"), false);
    // Three class folders: the head has three classes, and the student reads RGB.
    let resolved = std::fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    assert!(resolved.contains("num-classes = 3"), "{resolved}");
    assert!(resolved.contains("in-channels = 3"), "{resolved}");
}

#[test]
fn fashion_mnist_layout_trains_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fashion");
    common::write_fake_fashion_mnist(&root, 24, 8);
    let input = dir.path().join("shirt.png");
    grey8_png(
        &input,
        28,
        28,
        |x, y| if x < 14 && y < 14 { 220 } else { 10 },
    );
    let text = config(
        "classification",
        "fashion-mnist",
        Some(&root),
        28,
        "num-classes = 4\n",
    );
    train_eval_predict(dir.path(), &text, &input, false);
}

#[test]
fn scenes_train_evaluate_and_predict_with_augmentation_and_workers() {
    let dir = tempfile::tempdir().unwrap();
    let text = config("segmentation", "scenes", None, 16, "")
        .replace("train-samples = 0", "train-samples = 8");
    let input = dir.path().join("room.png");
    rgb_png(&input, 16, 16, 3);
    train_eval_predict(dir.path(), &text, &input, true);
}

#[test]
fn worker_count_changes_nothing_but_speed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nyu");
    write_nyuv2(&root, 10, 2);
    let mut hashes = Vec::new();
    let mut metrics = Vec::new();
    for workers in [0, 1, 3] {
        let text = config("depth", "nyuv2", Some(&root), 16, "")
            .replace("workers = 2", &format!("workers = {workers}"))
            .replace("steps = 3", "steps = 6");
        let cfg = dir.path().join(format!("w{workers}.toml"));
        std::fs::write(&cfg, &text).unwrap();
        let run = dir.path().join(format!("run{workers}"));
        let (code, _, err) = crosskd(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--no-progress",
        ]);
        assert_eq!(code, 0, "{err}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                .unwrap();
        hashes.push(summary["config_hash"].clone());
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("samples_per_s");
                v
            })
            .collect();
        metrics.push(lines);
    }
    // Workers are an execution setting: one experiment, one result.
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    assert!(metrics.windows(2).all(|w| w[0] == w[1]));
}

/// Runs `crosskd train` on a config that must fail; returns stderr after checking the exit code
/// and that nothing panicked.
fn train_fails(dir: &Path, text: &str) -> String {
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, text).unwrap();
    let (code, _, err) = crosskd(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.join("bad-run").to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn a_missing_depth_file_is_named_with_its_list_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nyu");
    write_nyuv2(&root, 6, 2);
    std::fs::remove_file(root.join("depth/3.png")).unwrap();
    let err = train_fails(dir.path(), &config("depth", "nyuv2", Some(&root), 16, ""));
    assert!(
        err.contains("depth/3.png") && err.contains("line 5") && err.contains("train.txt"),
        "{err}"
    );
}

#[test]
fn a_label_id_out_of_range_is_named_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cityscapes");
    write_cityscapes(&root, 4, 2);
    let bad = root.join("gtFine/train/aachen/aachen_000002_000019_gtFine_labelIds.png");
    grey8_png(&bad, 24, 12, |x, _| if x == 5 { 40 } else { 7 });
    let text =
        config("segmentation", "cityscapes", Some(&root), 16, "").replace("steps = 3", "steps = 2");
    let err = train_fails(dir.path(), &text);
    assert!(
        err.contains("aachen_000002_000019_gtFine_labelIds.png") && err.contains("id 40"),
        "{err}"
    );
}

#[test]
fn an_image_and_label_of_different_sizes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cityscapes");
    write_cityscapes(&root, 4, 2);
    let bad = root.join("gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png");
    grey8_png(&bad, 12, 12, |_, _| 7);
    let text =
        config("segmentation", "cityscapes", Some(&root), 16, "").replace("steps = 3", "steps = 2");
    let err = train_fails(dir.path(), &text);
    assert!(
        err.contains("aachen_000001_000019_leftImg8bit.png")
            && err.contains("aachen_000001_000019_gtFine_labelIds.png")
            && err.contains("size"),
        "{err}"
    );
}

#[test]
fn an_empty_class_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pets");
    write_image_folder(&root, 2, 1);
    std::fs::create_dir_all(root.join("train/zebra")).unwrap();
    let err = train_fails(
        dir.path(),
        &config("classification", "image-folder", Some(&root), 16, ""),
    );
    assert!(
        err.contains("zebra") && err.contains("empty class folder"),
        "{err}"
    );
}

#[test]
fn a_source_that_does_not_serve_the_task_is_a_config_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nyu");
    write_nyuv2(&root, 4, 2);
    let err = train_fails(
        dir.path(),
        &config("segmentation", "nyuv2", Some(&root), 16, ""),
    );
    assert!(
        err.contains("data.dataset")
            && err.contains("\"nyuv2\"")
            && err.contains("\"segmentation\""),
        "{err}"
    );
    let err = train_fails(dir.path(), &config("depth", "nyuv2", None, 16, ""));
    assert!(err.contains("data.root"), "{err}");
}

#[test]
fn list_datasets_prints_every_source_with_tasks_and_layout() {
    let (code, out, err) = crosskd(&["list", "datasets"]);
    assert_eq!(code, 0, "{err}");
    for (name, task, layout_piece) in [
        ("scenes", "depth, segmentation, translation", "data.seed"),
        ("fashion-mnist", "classification", "t10k-images-idx3-ubyte"),
        ("nyuv2", "depth", "ROOT/train.txt"),
        ("cityscapes", "segmentation", "_gtFine_labelIds.png"),
        ("pix2pix", "translation", "ROOT/train/NAME.png"),
        (
            "image-folder",
            "classification",
            "ROOT/train/CLASS/IMAGE.png",
        ),
    ] {
        let block = out
            .split("\n\n")
            .find(|b| b.starts_with(&format!("{name}\n")))
            .unwrap_or_else(|| panic!("no {name} in:\n{out}"));
        assert!(
            block.contains(&format!("tasks:  {task}")) && block.contains(layout_piece),
            "{block}"
        );
    }
}
