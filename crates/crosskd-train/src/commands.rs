//! The `crosskd` subcommands that look at runs and models rather than train them: `inspect`,
//! `export` and `list`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::checkpoint::{checkpoint_path, Checkpoint};
use crate::config::{Config, TeacherConfig};
use crate::error::{Result, TrainError};
use crate::train::{load_run_config, RunSummary};

/// Metadata entry of an exported student holding the run's config (TOML), so `crosskd predict`
/// can rebuild its head and input size.
pub const EXPORT_CONFIG_KEY: &str = "crosskd.config";

/// `crosskd inspect PATH`: a run folder (config, hash, progress, metrics, checkpoints) or a
/// checkpoint file (metadata, digest check, every tensor with shape and dtype).
pub fn inspect(path: &Path) -> Result<String> {
    if path.is_dir() {
        inspect_run(path)
    } else {
        inspect_file(path)
    }
}

fn inspect_run(dir: &Path) -> Result<String> {
    let config = load_run_config(dir)?;
    let mut out = format!(
        "run {}\n  task {}, config hash {}, seed {}, device {}, threads {}\n",
        dir.display(),
        config.task.name(),
        config.hash(),
        config.seed,
        config.device,
        config.threads
    );
    out.push_str(&format!(
        "  teacher {}, student {}\n",
        config.teacher.kind_name(),
        config
            .student_arch()
            .map(|a| a.to_json())
            .unwrap_or_default()
    ));
    let summary_path = dir.join("summary.json");
    if let Ok(text) = std::fs::read_to_string(&summary_path) {
        let s: RunSummary = serde_json::from_str(&text).map_err(|e| TrainError::RunFolder {
            path: summary_path.clone(),
            message: format!("unreadable summary: {e}"),
        })?;
        out.push_str(&format!(
            "  {:?} after {} steps in {:.1} s\n",
            s.stop, s.steps, s.wall_time_s
        ));
        if let Some((v, step)) = s.best {
            out.push_str(&format!(
                "  best val {} {v:.6} at step {step}\n",
                s.primary_metric
            ));
        }
        if !s.test.is_empty() {
            out.push_str(&format!("  test {}\n", metrics_line(&s.test)));
        }
    } else {
        out.push_str("  no summary.json yet (running, interrupted or crashed)\n");
    }
    for which in ["last", "best", "previous"] {
        let p = checkpoint_path(dir, which);
        if !p.exists() {
            continue;
        }
        match Checkpoint::load(&p, &Device::Cpu) {
            Ok(ck) => out.push_str(&format!(
                "  checkpoints/{which}.safetensors: step {}, epoch {}, {} tensors, digest verified\n",
                ck.position.step,
                ck.position.epoch,
                ck.tensors.len()
            )),
            Err(e) => out.push_str(&format!("  checkpoints/{which}.safetensors: {e}\n")),
        }
    }
    Ok(out)
}

fn inspect_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |m: String| TrainError::Input {
        path: path.to_path_buf(),
        message: m,
    };
    let digest = crosskd_models::storage::verify_content_digest(&bytes)
        .map_err(|e| bad(format!("expected a safetensors file: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("expected a safetensors file: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("expected a safetensors file: {e}")))?;
    let mut out = format!("{} ({} bytes)\n", path.display(), bytes.len());
    out.push_str(&format!(
        "  content digest: {}\n",
        match digest {
            crosskd_models::storage::DigestCheck::Verified => "verified".to_string(),
            crosskd_models::storage::DigestCheck::Absent => "none recorded".to_string(),
            crosskd_models::storage::DigestCheck::Mismatch { recorded, actual } =>
                format!("MISMATCH (recorded {recorded}, content {actual}): the file is corrupt"),
        }
    ));
    let meta: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (k, v) in &meta {
        // The embedded config and the log accumulator are long; their first line is enough here.
        let first = v.lines().next().unwrap_or_default();
        let more = if v.lines().count() > 1 { " …" } else { "" };
        out.push_str(&format!("  {k} = {first}{more}\n"));
    }
    let mut tensors: Vec<_> = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let total: usize = tensors
        .iter()
        .map(|(_, v)| v.shape().iter().product::<usize>())
        .sum();
    out.push_str(&format!("  {} tensors, {total} elements\n", tensors.len()));
    for (name, view) in &tensors {
        out.push_str(&format!(
            "  {name:<48} {:?} {:?}\n",
            view.dtype(),
            view.shape()
        ));
    }
    Ok(out)
}

fn metrics_line(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `crosskd export --run R --out FILE`: the student network and its head from the run's best
/// checkpoint (else the last), without projector or optimiser state. The file is a crosskd model
/// checkpoint (`crosskd_models::checkpoint::read_checkpoint` loads the network; prefix
/// `student.`, head tensors under `head.`), usable as a `checkpoint` teacher and by
/// `crosskd predict --run FILE`. Returns the number of tensors written.
pub fn export(run: &Path, out: &Path) -> Result<usize> {
    let config = load_run_config(run)?;
    let mut path = checkpoint_path(run, "best");
    if !path.exists() {
        path = checkpoint_path(run, "last");
    }
    let ck = Checkpoint::load(&path, &Device::Cpu)?;
    let arch = config
        .student_arch()
        .cloned()
        .unwrap_or_else(|| crate::config::default_student(config.task));
    let sorted = |prefix: &str| -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = ck.section(prefix).into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let student = sorted("student");
    let head: Vec<(String, Tensor)> = sorted("head")
        .into_iter()
        .map(|(n, t)| (format!("head.{n}"), t))
        .collect();
    let metadata = BTreeMap::from([
        (
            EXPORT_CONFIG_KEY.to_string(),
            student_only(&config).to_toml(),
        ),
        ("crosskd.task".to_string(), config.task.name().to_string()),
        (
            "crosskd.exported-from".to_string(),
            format!("{} step {}", path.display(), ck.position.step),
        ),
    ]);
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    }
    crosskd_models::checkpoint::save_checkpoint(out, &arch, "student.", &student, &head, &metadata)
        .map_err(|e| TrainError::Component(format!("export: {e}")))?;
    Ok(student.len() + head.len())
}

/// The config of a run reduced to its student: no teacher, projector or regulariser is needed
/// to rebuild and run it.
pub(crate) fn student_only(config: &Config) -> Config {
    let mut c = config.clone();
    c.teacher = TeacherConfig::None;
    c.regulariser = None;
    c
}

/// Reads an exported student: its config and its `student.*`/`head.*` tensors.
pub fn read_export(path: &Path, device: &Device) -> Result<(Config, HashMap<String, Tensor>)> {
    let file =
        crosskd_models::storage::read_safetensors(path, device).map_err(|e| TrainError::Input {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let text = file.metadata.get(EXPORT_CONFIG_KEY).ok_or_else(|| TrainError::Input {
        path: path.to_path_buf(),
        message: format!(
            "expected a student written by `crosskd export` (metadata entry {EXPORT_CONFIG_KEY}), found none"
        ),
    })?;
    let config = Config::from_toml_str(text, &[], Some(path))?;
    Ok((config, file.tensors))
}

/// Names and default tables of the architectures `list taps` can build.
const ARCHITECTURES: [(&str, &str, &str); 5] = [
    ("unet", "", "in-house U-Net student (dense tasks)"),
    (
        "small-resnet",
        "",
        "in-house small ResNet student (classification)",
    ),
    (
        "mobilenet-v2",
        "",
        "torchvision MobileNetV2 (pretrained teacher)",
    ),
    ("vgg16", "", "torchvision VGG16 (pretrained teacher)"),
    (
        "resnet",
        "depth = 18",
        "torchvision ResNet-18/34/50 (pretrained teacher; depth = 18 | 34 | 50)",
    ),
];

/// `crosskd list archs`.
pub fn list_archs() -> String {
    let mut out = String::from("architecture   what\n");
    for (name, _, what) in ARCHITECTURES {
        out.push_str(&format!("{name:<14} {what}\n"));
    }
    out.push_str("\nTaps of one: crosskd list taps ARCH [--size N] [--set key=value]\n");
    out
}

/// `crosskd list taps ARCH`: every tap with its shape at a `size`×`size` input, for the
/// architecture's defaults with `overrides` (`key=value`, TOML values) applied.
pub fn list_taps(arch: &str, size: usize, overrides: &[String]) -> Result<String> {
    let defaults = ARCHITECTURES
        .iter()
        .find(|(n, _, _)| *n == arch)
        .map(|(_, d, _)| *d)
        .ok_or_else(|| {
            TrainError::config(
                "arch",
                format!(
                    "expected one of {}, found \"{arch}\"",
                    ARCHITECTURES.map(|a| a.0).join(", ")
                ),
            )
        })?;
    let mut table: toml::Table = format!("arch = \"{arch}\"\n{defaults}\n")
        .parse()
        .map_err(|e: toml::de::Error| TrainError::config("arch", e.to_string()))?;
    for o in overrides {
        crate::config::apply_override(&mut table, o)?;
    }
    let cfg: crosskd_models::ArchitectureConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| TrainError::config("arch", e.message().to_string()))?;
    let (net, _) = crosskd_models::build_seeded(&cfg, 0, DType::F32, &Device::Cpu)
        .map_err(|e| TrainError::Component(e.to_string()))?;
    let shapes = net
        .tap_shapes((size, size))
        .map_err(|e| TrainError::Component(e.to_string()))?;
    let mut out = format!(
        "taps of {} at {size}×{size} input (shape per sample: channels, height, width):\n",
        cfg.to_json()
    );
    for (name, shape) in shapes {
        out.push_str(&format!("  {name:<28} {shape:?}\n"));
    }
    Ok(out)
}

/// `crosskd list configs [DIR]`: the shipped run configs with their task and teacher.
pub fn list_configs(dir: &Path) -> Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| TrainError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let line = match Config::from_file(&f, &[]) {
            Ok(c) => format!(
                "{:<48} task {:<15} teacher {:<11} hash {}",
                f.display(),
                c.task.name(),
                c.teacher.kind_name(),
                c.hash()
            ),
            Err(e) => format!("{:<48} invalid: {e}", f.display()),
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}
