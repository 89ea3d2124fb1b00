//! One TOML document describes a run: task, data, student, teacher, distillation method,
//! regulariser, optimiser, schedule and loop settings.
//!
//! Every section has documented defaults, so a file states only what differs. Unknown keys are
//! errors, and every error names the dotted key it is about:
//! `optimiser.lr: expected a finite number > 0, found -1`.
//! `--set key.path=value` overrides are applied to the parsed document before it is checked, the
//! value being parsed as TOML (a bare word that is not valid TOML is taken as a string).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crosskd_losses::methods::FitnetsConfig;
pub use crosskd_losses::task::depth::DepthLoss;
pub use crosskd_losses::{MethodConfig, RegulariserConfig};
use crosskd_models::naming::WeightNaming;
use crosskd_models::teacher::NormalizationChoice;
use crosskd_models::ArchitectureConfig;
pub use crosskd_projectors::{Direction, FeatureNorm};

pub use crate::datasets::{Augment, AugmentSettings, DataConfig, PairDirection};
use crate::error::{Result, TrainError};
pub use crate::task_kind::Task;

/// The complete description of a run. `Config::default()` is the depth task's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// The task the student learns (required in files; `depth` by default in code).
    pub task: Task,
    /// Master seed: data order, augmentation, initialisation, random teacher and the
    /// random-subspace regulariser all derive their generators from it. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// CPU threads for tensor kernels; 0 = all cores. Default 0. Results are bit-identical
    /// only for the same thread count.
    #[serde(default)]
    pub threads: usize,
    /// Where tensors live: `cpu` (default), `cuda` (GPU 0) or `cuda:N`. An execution setting,
    /// outside [`Config::hash`]. CUDA needs a build with the `cuda` feature and a GPU.
    #[serde(default = "default_device", skip_serializing_if = "is_default_device")]
    pub device: String,
    /// Data set and its parameters.
    #[serde(default)]
    pub data: DataConfig,
    /// The student network.
    #[serde(default)]
    pub student: StudentConfig,
    /// The frozen teacher (none by default).
    #[serde(default)]
    pub teacher: TeacherConfig,
    /// The distillation method with its projector, distance and weight: a table with `kind =
    /// "fitnets" | "srd" | "vkd" | "attention-transfer" | "logit-kd"` and the method's keys, e.g.
    /// `direction = "inverted"`, `weight = 1.0`, `distance = { kind = "mse" }`,
    /// `student-norm`/`teacher-norm`, `bias` (see `crosskd_losses::MethodConfig`). Default:
    /// FitNets with an inverted projector. Used only when a teacher is configured.
    #[serde(default = "default_distill")]
    pub distill: MethodConfig,
    /// The teacher-free regulariser on the student's distilled feature: absent (default) or a
    /// table with `kind = "tail" | "random-subspace" | "energy"` and its keys (`rank`, `weight`,
    /// …; see `crosskd_losses::RegulariserConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regulariser: Option<RegulariserConfig>,
    /// Task-loss options.
    #[serde(default)]
    pub loss: LossConfig,
    /// The optimiser.
    #[serde(default)]
    pub optimiser: OptimiserConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Loop length, batch size, logging, evaluation and checkpoint intervals.
    #[serde(default)]
    pub train: TrainLoopConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config::for_task(Task::Depth)
    }
}

fn default_device() -> String {
    "cpu".to_string()
}

fn is_default_device(device: &str) -> bool {
    device == "cpu"
}

/// The student network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StudentConfig {
    /// The architecture, a table such as `{ arch = "unet", base-width = 8, depth = 3 }` (see
    /// `crosskd_models::ArchitectureConfig`). Default: a small U-Net (base width 8, depth 3,
    /// 8 output channels) for dense tasks, a small ResNet (widths 8/16/32, one block each) for
    /// classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<ArchitectureConfig>,
    /// The named feature distilled; empty = `bottleneck` for the U-Net, `pooled` for the ResNet.
    #[serde(default)]
    pub tap: String,
}

/// The frozen teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum TeacherConfig {
    /// No teacher: no distillation term (the regulariser may still apply).
    #[default]
    None,
    /// A randomly initialised, frozen network.
    Random {
        /// Architecture (a `[teacher.architecture]` table, as for the student); default: the
        /// student's architecture.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        architecture: Option<ArchitectureConfig>,
        /// Seed of its initialisation; default: the run's seed + 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        /// The teacher feature used; empty = the architecture's default tap.
        #[serde(default)]
        tap: String,
        /// Input normalisation: `none` (default) or `imagenet`.
        #[serde(default)]
        input_normalization: NormalizationChoice,
    },
    /// A network trained by crosskd: a run folder (its `checkpoints/best.safetensors` is used) or
    /// a checkpoint file.
    Checkpoint {
        /// The run folder or `.safetensors` checkpoint.
        path: PathBuf,
        /// The teacher feature used; empty = the architecture's default tap.
        #[serde(default)]
        tap: String,
        /// Input normalisation: `none` (default) or `imagenet`.
        #[serde(default)]
        input_normalization: NormalizationChoice,
    },
    /// A published network (`mobilenet-v2`, `vgg16`, `resnet`, …) with its weights from exactly
    /// one source: `weights`, a local safetensors file; `hub = "ORG/NAME"` with `file` (and
    /// optionally `revision`, default `main`, and `sha256`), a file of a Hugging Face hub
    /// repository resolved through hf-hub's cache (`HF_HOME`, `HF_HUB_OFFLINE`); or `name`, an
    /// entry of `models/teachers.toml` (see `crosskd list teachers`), which parsing replaces by the
    /// entry's `hub`, `file`, `revision`, `sha256`, `naming` and `architecture`.
    Pretrained {
        /// Architecture (a `[teacher.architecture]` table); required with `weights` and `hub`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        architecture: Option<ArchitectureConfig>,
        /// The `.safetensors` weights.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<PathBuf>,
        /// Hugging Face repository id, `ORG/NAME`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hub: Option<String>,
        /// With `hub`: the safetensors file inside the repository.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        /// With `hub`: branch, tag or commit hash (default `main`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<String>,
        /// With `hub`: the file's expected SHA-256, checked before every use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// An entry of `models/teachers.toml`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// How the weights name their tensors: `auto` (default: detected), `torchvision` or `timm`.
        #[serde(default, skip_serializing_if = "WeightNaming::is_auto")]
        naming: WeightNaming,
        /// The teacher feature used; empty = the architecture's default tap.
        #[serde(default)]
        tap: String,
        /// Input normalisation: `imagenet` (default) or `none`.
        #[serde(default = "imagenet_normalization")]
        input_normalization: NormalizationChoice,
    },
}

/// The keys of a `pretrained` teacher that name where its weights come from.
const PRETRAINED_SOURCES: &str =
    "`weights` (a safetensors file), `hub` (a Hugging Face repository, with `file`) or `name` (an entry of models/teachers.toml)";

impl TeacherConfig {
    /// A `pretrained` teacher: exactly one of `weights`, `hub` or `name`; `file`, `revision`
    /// and `sha256` only with `hub`; an architecture unless `name` brings it. Errors name the key.
    fn validate_pretrained_source(&self) -> Result<()> {
        let TeacherConfig::Pretrained {
            architecture,
            weights,
            hub,
            file,
            revision,
            sha256,
            name,
            naming,
            ..
        } = self
        else {
            return Ok(());
        };
        let bad =
            |key: &str, message: String| TrainError::config(format!("teacher.{key}"), message);
        let source = self.pretrained_source_key()?;
        if hub.is_none() {
            let hub_only = [
                ("file", file.is_some()),
                ("revision", revision.is_some()),
                ("sha256", sha256.is_some()),
            ];
            if let Some((key, _)) = hub_only.iter().find(|(_, set)| *set) {
                return Err(bad(
                    key,
                    format!("only used with `teacher.hub`; found it with `teacher.{source}`"),
                ));
            }
        }
        if let Some(entry) = name {
            let from_list = [
                ("architecture", architecture.is_some()),
                ("naming", !naming.is_auto()),
            ];
            if let Some((key, _)) = from_list.iter().find(|(_, set)| *set) {
                return Err(bad(
                    key,
                    format!("comes from the teacher list entry {entry:?}; remove it"),
                ));
            }
            let list = crate::teachers::Catalogue::builtin()?;
            return list.get(entry).map(|_| ()).map_err(|m| bad("name", m));
        }
        if architecture.is_none() {
            let message = "expected an architecture table such as `{ arch = \"resnet\", depth = 18 }`, found none";
            return Err(bad("architecture", message.into()));
        }
        if weights.as_ref().is_some_and(|w| w.as_os_str().is_empty()) {
            return Err(bad(
                "weights",
                "expected a safetensors file, found \"\"".into(),
            ));
        }
        match hub {
            Some(repo) => check_hub_keys(
                repo,
                file.as_deref(),
                revision.as_deref(),
                sha256.as_deref(),
            )
            .map_err(|(key, message)| bad(key, message)),
            None => Ok(()),
        }
    }

    /// Which of `weights`, `hub` and `name` a `pretrained` teacher gives: exactly one.
    fn pretrained_source_key(&self) -> Result<&'static str> {
        let TeacherConfig::Pretrained {
            weights, hub, name, ..
        } = self
        else {
            return Err(TrainError::config(
                "teacher",
                "expected a pretrained teacher",
            ));
        };
        let given: Vec<&'static str> = [
            ("weights", weights.is_some()),
            ("hub", hub.is_some()),
            ("name", name.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        match given.as_slice() {
            [only] => Ok(only),
            [] => Err(TrainError::config(
                "teacher",
                format!("expected one of {PRETRAINED_SOURCES}, found none"),
            )),
            [_, second, ..] => Err(TrainError::config(
                format!("teacher.{second}"),
                format!(
                    "expected exactly one of {PRETRAINED_SOURCES}, found {}",
                    given.join(" and ")
                ),
            )),
        }
    }

    /// Replaces a `pretrained` teacher's `name` by its list entry's `hub`, `file`, `revision`,
    /// `sha256`, `naming` and `architecture`, and writes a hub teacher's default revision
    /// (`main`) out, so that the run's hash names the weights themselves. Other teachers are
    /// left as they are.
    pub fn resolve_source(&mut self) -> Result<()> {
        let TeacherConfig::Pretrained {
            architecture,
            hub,
            file,
            revision,
            sha256,
            name,
            naming,
            ..
        } = self
        else {
            return Ok(());
        };
        if let Some(entry_name) = name.take() {
            let list = crate::teachers::Catalogue::builtin()?;
            let entry = list
                .get(&entry_name)
                .map_err(|m| TrainError::config("teacher.name", m))?;
            *architecture = Some(entry.architecture.clone());
            *hub = Some(entry.hub.clone());
            *file = Some(entry.file.clone());
            *revision = Some(entry.revision.clone());
            *sha256 = entry.sha256.clone();
            *naming = entry.naming;
        }
        if hub.is_some() && revision.is_none() {
            *revision = Some("main".to_string());
        }
        Ok(())
    }

    /// The hub file of a resolved `pretrained` teacher with `hub` (see [`TeacherConfig::resolve_source`]).
    pub fn hub_file(&self) -> Option<crate::teachers::HubFile> {
        match self {
            TeacherConfig::Pretrained {
                hub: Some(repo),
                file,
                revision,
                sha256,
                ..
            } => Some(crate::teachers::HubFile {
                repo: repo.clone(),
                file: file.clone().unwrap_or_default(),
                revision: revision.clone().unwrap_or_else(|| "main".to_string()),
                sha256: sha256.clone(),
            }),
            _ => None,
        }
    }
}

/// The keys of a hub teacher: a repository id, a relative file path, a revision that cannot
/// leave the cache folder, a 64-digit SHA-256. Errors are `(key, message)`.
fn check_hub_keys(
    repo: &str,
    file: Option<&str>,
    revision: Option<&str>,
    sha256: Option<&str>,
) -> std::result::Result<(), (&'static str, String)> {
    use crate::teachers::hub::{check_relative, check_repo_id, check_sha256};
    check_repo_id(repo).map_err(|m| ("hub", m))?;
    let file = file.ok_or_else(|| {
        let m = "expected the weights file in `teacher.hub`'s repository, e.g. \"model.safetensors\", found none";
        ("file", m.to_string())
    })?;
    check_relative("a file in the repository", file).map_err(|m| ("file", m))?;
    if let Some(r) = revision {
        check_relative("a branch, tag or commit", r).map_err(|m| ("revision", m))?;
    }
    if let Some(h) = sha256 {
        check_sha256(h).map_err(|m| ("sha256", m))?;
    }
    Ok(())
}

fn imagenet_normalization() -> NormalizationChoice {
    NormalizationChoice::Imagenet
}

impl TeacherConfig {
    /// Whether a teacher is configured.
    pub fn is_some(&self) -> bool {
        !matches!(self, TeacherConfig::None)
    }

    /// The name used on the command line (`none`, `random`, `checkpoint`, `pretrained`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            TeacherConfig::None => "none",
            TeacherConfig::Random { .. } => "random",
            TeacherConfig::Checkpoint { .. } => "checkpoint",
            TeacherConfig::Pretrained { .. } => "pretrained",
        }
    }
}

/// The task loss options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LossConfig {
    /// Depth loss: `{ kind = "l1" }` (default), `{ kind = "scale-invariant-log", lambda = 0.5 }`
    /// or `{ kind = "berhu" }`.
    #[serde(default = "default_depth_loss")]
    pub depth: DepthLoss,
    /// Weight of the `1 − SSIM` term of the translation loss (added to L1). Default 0.
    #[serde(default)]
    pub translation_ssim_weight: f64,
}

fn default_depth_loss() -> DepthLoss {
    DepthLoss::L1
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            depth: default_depth_loss(),
            translation_ssim_weight: 0.0,
        }
    }
}

/// The default distillation method: FitNets through an inverted projector, MSE, weight 1.
pub fn default_distill() -> MethodConfig {
    MethodConfig::Fitnets(FitnetsConfig::default())
}

/// Optimiser family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OptimiserKind {
    /// AdamW (decoupled weight decay).
    #[default]
    Adamw,
    /// SGD with optional (Nesterov) momentum and L2 weight decay.
    Sgd,
}

/// The optimiser; student and projector share it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OptimiserConfig {
    /// `adamw` (default) or `sgd`.
    #[serde(default)]
    pub kind: OptimiserKind,
    /// Peak learning rate. Default 0.003.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Weight decay (decoupled for AdamW, L2 for SGD). Default 0.0001.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// SGD momentum in [0, 1). Default 0.9.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Nesterov momentum for SGD. Default false.
    #[serde(default)]
    pub nesterov: bool,
    /// AdamW β₁ in [0, 1). Default 0.9.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// AdamW β₂ in [0, 1). Default 0.999.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// AdamW ε > 0. Default 1e-8.
    #[serde(default = "default_eps")]
    pub eps: f64,
}

fn default_lr() -> f64 {
    0.003
}
fn default_weight_decay() -> f64 {
    1e-4
}
fn default_momentum() -> f64 {
    0.9
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

impl Default for OptimiserConfig {
    fn default() -> Self {
        OptimiserConfig {
            kind: OptimiserKind::Adamw,
            lr: default_lr(),
            weight_decay: default_weight_decay(),
            momentum: default_momentum(),
            nesterov: false,
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
        }
    }
}

/// Shape of the learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The peak rate throughout.
    Constant,
    /// Multiply by `gamma` every `step_size` steps.
    Step,
    /// Cosine decay from the peak to `min_lr_factor · lr`.
    #[default]
    Cosine,
    /// One-cycle: linear rise over `pct_start` of the run, then cosine decay.
    OneCycle,
}

/// The learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `constant`, `step`, `cosine` (default) or `one-cycle`.
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Linear warm-up from 0 over this many steps (not used by `one-cycle`). Default 0.
    #[serde(default)]
    pub warmup_steps: u64,
    /// `step`: steps between decays. Default 1000.
    #[serde(default = "default_step_size")]
    pub step_size: u64,
    /// `step`: decay factor in (0, 1]. Default 0.1.
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// `cosine`/`one-cycle`: final rate as a fraction of the peak, in [0, 1]. Default 0.01.
    #[serde(default = "default_min_lr_factor")]
    pub min_lr_factor: f64,
    /// `one-cycle`: fraction of the run spent rising, in (0, 1). Default 0.3.
    #[serde(default = "default_pct_start")]
    pub pct_start: f64,
}

fn default_step_size() -> u64 {
    1000
}
fn default_gamma() -> f64 {
    0.1
}
fn default_min_lr_factor() -> f64 {
    0.01
}
fn default_pct_start() -> f64 {
    0.3
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            kind: ScheduleKind::Cosine,
            warmup_steps: 0,
            step_size: default_step_size(),
            gamma: default_gamma(),
            min_lr_factor: default_min_lr_factor(),
            pct_start: default_pct_start(),
        }
    }
}

/// Loop length, batch size and intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrainLoopConfig {
    /// Training length in epochs (passes over the training samples). Give this or `steps`.
    /// Default 4 when neither is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Training length in optimiser steps; overrides `epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Samples per batch. Default 16.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Steps between metrics lines. Default 10.
    #[serde(default = "default_log_interval")]
    pub log_interval: u64,
    /// Steps between evaluations on the validation split; 0 = once per epoch. Default 0.
    #[serde(default)]
    pub eval_interval: u64,
    /// Steps between checkpoints; 0 = at every evaluation. Default 0.
    #[serde(default)]
    pub checkpoint_interval: u64,
    /// Stop with an error when a gradient is NaN or infinite (the loss is always checked).
    /// Default true.
    #[serde(default = "default_true")]
    pub check_gradients: bool,
    /// Whether the frozen teacher's features are computed once into a cache under the run
    /// folder and read back instead of recomputed every step: `auto` (default: where valid),
    /// `on` (an error naming the reason where invalid) or `off`. An execution setting, outside
    /// [`Config::hash`]: results are bit-identical either way.
    #[serde(default, skip_serializing_if = "CacheTeacher::is_auto")]
    pub cache_teacher: CacheTeacher,
}

/// `train.cache-teacher`: when the trainer caches the frozen teacher's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CacheTeacher {
    /// Cache where valid (a teacher, inputs that are a function of the sample and a flip, and
    /// features that fit the memory budget); otherwise compute every step.
    #[default]
    Auto,
    /// Cache, or refuse the run naming why the cache is invalid.
    On,
    /// Compute the teacher every step.
    Off,
}

impl CacheTeacher {
    /// Whether this is the default, `auto`.
    pub fn is_auto(&self) -> bool {
        *self == CacheTeacher::Auto
    }

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            CacheTeacher::Auto => "auto",
            CacheTeacher::On => "on",
            CacheTeacher::Off => "off",
        }
    }
}

fn default_batch_size() -> usize {
    16
}
fn default_log_interval() -> u64 {
    10
}
fn default_true() -> bool {
    true
}

impl Default for TrainLoopConfig {
    fn default() -> Self {
        TrainLoopConfig {
            epochs: None,
            steps: None,
            batch_size: default_batch_size(),
            log_interval: default_log_interval(),
            eval_interval: 0,
            checkpoint_interval: 0,
            check_gradients: true,
            cache_teacher: CacheTeacher::Auto,
        }
    }
}

impl Config {
    /// The default configuration for `task` (resolved: every task-dependent default filled in).
    pub fn for_task(task: Task) -> Config {
        let mut config = Config {
            task,
            seed: 0,
            threads: 0,
            device: default_device(),
            data: DataConfig::default(),
            student: StudentConfig::default(),
            teacher: TeacherConfig::None,
            distill: default_distill(),
            regulariser: None,
            loss: LossConfig::default(),
            optimiser: OptimiserConfig::default(),
            schedule: ScheduleConfig::default(),
            train: TrainLoopConfig::default(),
        };
        config.fill_task_defaults();
        config
    }

    /// Parses a TOML document, applies `overrides` (`key.path=value`), fills task defaults and
    /// validates. `file` only labels error messages.
    pub fn from_toml_str(text: &str, overrides: &[String], file: Option<&Path>) -> Result<Config> {
        let with_file = |e: TrainError| match e {
            TrainError::Config { key, message, .. } => TrainError::Config {
                file: file.map(Path::to_path_buf),
                key,
                message,
            },
            other => other,
        };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            with_file(TrainError::config(
                "",
                format!("not valid TOML: {}", e.message().trim()),
            ))
        })?;
        // `--set distill.direction=…` must work on files that rely on the default method.
        table.entry("distill").or_insert_with(|| {
            let mut t = toml::Table::new();
            t.insert("kind".into(), toml::Value::String("fitnets".into()));
            toml::Value::Table(t)
        });
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        Config::from_table(table).map_err(with_file)
    }

    /// Reads a config file, then as [`Config::from_toml_str`].
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Config::from_toml_str(&text, overrides, Some(path))
    }

    /// Applies overrides to an existing config (used by the per-task binaries).
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Config> {
        let mut table = self.to_table()?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        Config::from_table(table)
    }

    fn to_table(&self) -> Result<toml::Table> {
        let text = self.to_toml();
        text.parse()
            .map_err(|e: toml::de::Error| TrainError::config("", e.to_string()))
    }

    fn from_table(table: toml::Table) -> Result<Config> {
        let teacher = table.get("teacher").cloned();
        let value = toml::Value::Table(table);
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            let message = humanise_serde_message(&e.inner().to_string());
            let key = refine_teacher_key(key, &message, teacher.as_ref());
            TrainError::config(key, message)
        })?;
        config.fill_task_defaults();
        config.validate()?;
        config.teacher.resolve_source()?;
        Ok(config)
    }

    /// Fills the task-dependent defaults left empty in the document.
    fn fill_task_defaults(&mut self) {
        if self.data.dataset.is_empty() {
            self.data.dataset = if self.task == Task::Classification {
                "fashion-mnist"
            } else {
                "scenes"
            }
            .to_string();
        }
        if self.student.architecture.is_none() {
            self.student.architecture = Some(default_student(self.task));
        }
        if self.student.tap.is_empty() {
            self.student.tap = self
                .student_arch()
                .map(default_tap)
                .unwrap_or("bottleneck")
                .to_string();
        }
        if self.data.num_classes == 0 {
            self.data.num_classes =
                crate::datasets::default_num_classes(&self.data.dataset, self.task);
        }
        if let TeacherConfig::Random {
            architecture, seed, ..
        } = &mut self.teacher
        {
            if architecture.is_none() {
                *architecture = self.student.architecture.clone();
            }
            if seed.is_none() {
                *seed = Some(self.seed.wrapping_add(1));
            }
        }
        if self.train.epochs.is_none() && self.train.steps.is_none() {
            self.train.epochs = Some(4);
        }
    }

    /// The student's architecture (filled in by parsing; `None` only for hand-built configs).
    pub fn student_arch(&self) -> Option<&ArchitectureConfig> {
        self.student.architecture.as_ref()
    }

    /// Checks value ranges; errors name the key. One phase per section, in document order.
    pub fn validate(&self) -> Result<()> {
        self.validate_seeds()?;
        self.validate_data()?;
        self.validate_student()?;
        self.validate_losses()?;
        self.validate_optimiser()?;
        self.validate_schedule()?;
        self.validate_loop()?;
        self.validate_teacher()?;
        self.validate_execution()
    }

    /// The student's architecture, or the task's default for hand-built configs.
    fn resolved_student_arch(&self) -> ArchitectureConfig {
        self.student_arch()
            .cloned()
            .unwrap_or_else(|| default_student(self.task))
    }

    /// `[data]`: a data set that serves the task (see [`crate::datasets::validate`]), image
    /// size, split sizes and class count.
    fn validate_data(&self) -> Result<()> {
        let c = self;
        crate::datasets::validate(&c.data, c.task)?;
        let down = match &c.resolved_student_arch() {
            ArchitectureConfig::Unet(u) => 1usize << u.depth.min(10),
            _ => 1,
        };
        if c.data.image_size < 8 || c.data.image_size > 1024 {
            return Err(range(
                "data.image-size",
                "between 8 and 1024",
                c.data.image_size,
            ));
        }
        if !c.data.image_size.is_multiple_of(down) {
            return Err(TrainError::config(
                "data.image-size",
                format!(
                    "expected a multiple of 2^depth = {down} of the student U-Net, found {}",
                    c.data.image_size
                ),
            ));
        }
        if c.data.val_samples == 0 {
            return Err(range("data.val-samples", "at least 1", 0));
        }
        if c.data.test_samples == 0 {
            return Err(range("data.test-samples", "at least 1", 0));
        }
        // A source that counts its class folders fills in 0 when it is opened.
        let counted = c.data.num_classes == 0 && crate::datasets::counts_classes(&c.data.dataset);
        if matches!(c.task, Task::Segmentation | Task::Classification)
            && c.data.num_classes < 2
            && !counted
        {
            return Err(range("data.num-classes", "at least 2", c.data.num_classes));
        }
        Ok(())
    }

    /// Seeds: TOML integers are signed 64-bit, and seeds derived by adding to them (the random
    /// teacher's `seed + 1`, the scene streams `data.seed + 2`) must still be writable, or the
    /// resolved `config.toml` could not be saved.
    fn validate_seeds(&self) -> Result<()> {
        const TOML_MAX: u64 = i64::MAX as u64;
        if self.seed > TOML_MAX - 1 {
            return Err(range(
                "seed",
                &format!("at most {}", TOML_MAX - 1),
                self.seed,
            ));
        }
        if self.data.seed > TOML_MAX - 2 {
            return Err(range(
                "data.seed",
                &format!("at most {}", TOML_MAX - 2),
                self.data.seed,
            ));
        }
        if let TeacherConfig::Random {
            seed: Some(seed), ..
        } = &self.teacher
        {
            if *seed > TOML_MAX {
                return Err(range("teacher.seed", &format!("at most {TOML_MAX}"), seed));
            }
        }
        Ok(())
    }

    /// `[student]`: a U-Net for dense tasks, a small ResNet for classification.
    fn validate_student(&self) -> Result<()> {
        match (&self.resolved_student_arch(), self.task.is_dense()) {
            (ArchitectureConfig::Unet(_), true) | (ArchitectureConfig::SmallResnet(_), false) => {
                Ok(())
            }
            (other, true) => Err(TrainError::config(
                "student.architecture.arch",
                format!(
                    "expected \"unet\" for a dense task, found \"{}\"",
                    other.name()
                ),
            )),
            (other, false) => Err(TrainError::config(
                "student.architecture.arch",
                format!(
                    "expected \"small-resnet\" for classification, found \"{}\"",
                    other.name()
                ),
            )),
        }
    }

    /// `[regulariser]` and `[loss]`.
    fn validate_losses(&self) -> Result<()> {
        if let Some(r) = &self.regulariser {
            crosskd_losses::Regulariser::new(*r)
                .map_err(|e| TrainError::config("regulariser", e.to_string()))?;
        }
        let w = self.loss.translation_ssim_weight;
        if !(w.is_finite() && w >= 0.0) {
            return Err(range(
                "loss.translation-ssim-weight",
                "a finite number ≥ 0",
                w,
            ));
        }
        Ok(())
    }

    /// `[optimiser]`.
    fn validate_optimiser(&self) -> Result<()> {
        let o = &self.optimiser;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(range("optimiser.lr", "a finite number > 0", o.lr));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(range(
                "optimiser.weight-decay",
                "a finite number ≥ 0",
                o.weight_decay,
            ));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(range("optimiser.momentum", "in [0, 1)", o.momentum));
        }
        if o.nesterov && o.momentum == 0.0 && o.kind == OptimiserKind::Sgd {
            return Err(TrainError::config(
                "optimiser.nesterov",
                "Nesterov momentum needs optimiser.momentum > 0",
            ));
        }
        if !(0.0..1.0).contains(&o.beta1) {
            return Err(range("optimiser.beta1", "in [0, 1)", o.beta1));
        }
        if !(0.0..1.0).contains(&o.beta2) {
            return Err(range("optimiser.beta2", "in [0, 1)", o.beta2));
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return Err(range("optimiser.eps", "a finite number > 0", o.eps));
        }
        Ok(())
    }

    /// `[schedule]`.
    fn validate_schedule(&self) -> Result<()> {
        let s = &self.schedule;
        if s.step_size == 0 {
            return Err(range("schedule.step-size", "at least 1", 0));
        }
        if !(s.gamma > 0.0 && s.gamma <= 1.0) {
            return Err(range("schedule.gamma", "in (0, 1]", s.gamma));
        }
        if !(0.0..=1.0).contains(&s.min_lr_factor) {
            return Err(range(
                "schedule.min-lr-factor",
                "in [0, 1]",
                s.min_lr_factor,
            ));
        }
        if !(s.pct_start > 0.0 && s.pct_start < 1.0) {
            return Err(range("schedule.pct-start", "in (0, 1)", s.pct_start));
        }
        Ok(())
    }

    /// `[train]`: loop length, batch size and intervals.
    fn validate_loop(&self) -> Result<()> {
        let t = &self.train;
        if let Some(e) = t.epochs.filter(|e| !(1..=MAX_EPOCHS).contains(e)) {
            return Err(range(
                "train.epochs",
                &format!("between 1 and {MAX_EPOCHS}"),
                e,
            ));
        }
        if let Some(s) = t.steps.filter(|s| !(1..=MAX_STEPS).contains(s)) {
            return Err(range(
                "train.steps",
                &format!("between 1 and {MAX_STEPS}"),
                s,
            ));
        }
        if t.batch_size == 0 || t.batch_size > 4096 {
            return Err(range(
                "train.batch-size",
                "between 1 and 4096",
                t.batch_size,
            ));
        }
        if t.log_interval == 0 {
            return Err(range("train.log-interval", "at least 1", 0));
        }
        Ok(())
    }

    /// `[teacher]`: what can be checked before anything is loaded, including whether the
    /// distillation method can use this teacher (logit KD needs class scores over the student's
    /// labels) and whether `train.cache-teacher = "on"` can hold.
    fn validate_teacher(&self) -> Result<()> {
        match &self.teacher {
            TeacherConfig::Checkpoint { path, .. } if path.as_os_str().is_empty() => {
                Err(TrainError::config(
                    "teacher.path",
                    "expected a run folder or checkpoint file, found \"\"",
                ))
            }
            TeacherConfig::Pretrained { .. } => self.teacher.validate_pretrained_source(),
            _ => Ok(()),
        }?;
        crate::teacher_logits::validate_logit_kd(self)?;
        if self.train.cache_teacher == CacheTeacher::On {
            if let Some(why) = crate::teacher_cache::blocker(self) {
                return Err(TrainError::config(
                    "train.cache-teacher",
                    format!("\"on\" cannot hold: {why}"),
                ));
            }
        }
        Ok(())
    }

    /// Execution settings: `threads` and `device`.
    fn validate_execution(&self) -> Result<()> {
        if self.threads > 1024 {
            return Err(range("threads", "between 0 and 1024", self.threads));
        }
        crate::device::DeviceChoice::parse(&self.device)
            .map_err(|message| TrainError::config("device", message))?;
        Ok(())
    }

    /// The resolved configuration as TOML (what the run folder's `config.toml` holds).
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of numbers, strings and enums cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// A short hash naming the experiment: the first 16 hex digits of the SHA-256 of
    /// [`Config::to_toml`] with the execution settings (`threads`, `device`, `data.workers`,
    /// `train.cache-teacher`) at their defaults.
    /// Data, models, method, optimiser and seed are in it; *how* the run executes is not, so a
    /// run resumes on another device or thread count under the same name (results are
    /// bit-identical only for the same device and thread count). Configs that leave the execution
    /// settings at their defaults hash as they did before these settings existed.
    pub fn hash(&self) -> String {
        let mut experiment = self.clone();
        experiment.threads = 0;
        experiment.device = default_device();
        experiment.data.workers = None;
        experiment.train.cache_teacher = CacheTeacher::Auto;
        let digest = Sha256::digest(experiment.to_toml().as_bytes());
        hex::encode(&digest[..8])
    }

    /// Total optimiser steps given the number of training samples.
    pub fn total_steps(&self, train_samples: usize) -> u64 {
        if let Some(s) = self.train.steps {
            return s;
        }
        self.train
            .epochs
            .unwrap_or(1)
            .saturating_mul(self.steps_per_epoch(train_samples))
    }

    /// Optimiser steps per epoch (the last partial batch is dropped, so every step sees a full
    /// batch; at least one step).
    pub fn steps_per_epoch(&self, train_samples: usize) -> u64 {
        ((train_samples / self.train.batch_size).max(1)) as u64
    }
}

/// The default feature tap of the in-house architectures (`bottleneck` of the U-Net, `pooled`
/// of the small ResNet); other architectures have their default chosen from their taps when the
/// teacher is built.
pub fn default_tap(arch: &ArchitectureConfig) -> &'static str {
    match arch {
        ArchitectureConfig::Unet(_) => "bottleneck",
        ArchitectureConfig::SmallResnet(_) => "pooled",
        _ => "",
    }
}

/// The default student of a task: a U-Net with base width 8, depth 3 and 8 output channels for
/// dense tasks; a small ResNet with widths 8/16/32 and one block per stage for classification
/// (single-channel input for Fashion-MNIST).
pub fn default_student(task: Task) -> ArchitectureConfig {
    use crosskd_models::students::small_resnet::SmallResnetConfig;
    use crosskd_models::students::unet::UnetConfig;
    match task {
        Task::Classification => ArchitectureConfig::SmallResnet(SmallResnetConfig {
            in_channels: 1,
            widths: vec![8, 16, 32],
            blocks: vec![1, 1, 1],
            ..SmallResnetConfig::default()
        }),
        _ => ArchitectureConfig::Unet(UnetConfig {
            base_width: 8,
            depth: 3,
            out_channels: 8,
            ..UnetConfig::default()
        }),
    }
}

/// Upper bounds that keep step counts far from overflow (a run of 10^12 steps is not a run).
const MAX_EPOCHS: u64 = 1_000_000;
const MAX_STEPS: u64 = 1_000_000_000_000;

fn range(key: &str, expected: &str, found: impl std::fmt::Display) -> TrainError {
    TrainError::config(key, format!("expected {expected}, found {found}"))
}

/// serde reports errors inside the internally tagged `[teacher]` table at `teacher`; when the
/// message quotes the bad value (`found "keras"`) and exactly one key of the table holds it,
/// that key is named (`teacher.naming`).
fn refine_teacher_key(key: String, message: &str, teacher: Option<&toml::Value>) -> String {
    let (Some(toml::Value::Table(table)), "teacher") = (teacher, key.as_str()) else {
        return key;
    };
    let Some(found) = message
        .rsplit_once("found \"")
        .and_then(|(_, rest)| rest.strip_suffix('"'))
    else {
        return key;
    };
    let holders: Vec<&String> = table
        .iter()
        .filter(|(k, v)| *k != "kind" && v.as_str() == Some(found))
        .map(|(k, _)| k)
        .collect();
    match holders.as_slice() {
        [only] => format!("teacher.{only}"),
        _ => key,
    }
}

/// Rewrites serde's wording (`unknown variant `x`, expected `a` or `b``) into the project's
/// (`expected "a" or "b", found "x"`).
fn humanise_serde_message(message: &str) -> String {
    let first_line = message.trim().lines().next().unwrap_or_default();
    let m = first_line.replace('`', "\"");
    if let Some(rest) = m.strip_prefix("unknown variant ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("expected {expected}, found {found}");
        }
    }
    if let Some(rest) = m.strip_prefix("unknown field ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("unknown key {found}; expected {expected}");
        }
        if let Some((found, _)) = rest.split_once(", there are no fields") {
            return format!("unknown key {found}; this section takes no keys");
        }
    }
    if let Some(rest) = m.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("expected {expected}, found {found}");
        }
    }
    m
}

/// Applies one `key.path=value` override to a parsed document. The value is parsed as TOML; a
/// value that is not valid TOML (a bare word like `inverted`) is taken as a string.
pub fn apply_override(table: &mut toml::Table, text: &str) -> Result<()> {
    let err = |message: &str| TrainError::Override {
        text: text.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| err("expected key.path=value"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(err("expected a dotted key such as projector.direction"));
    }
    let raw = raw.trim();
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut cursor = table;
    for part in &parts[..parts.len() - 1] {
        let entry = cursor
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(err(&format!("`{part}` is a value, not a section"))),
        };
    }
    cursor.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
