//! Everything a run is built from: device, data, student (network + head), teacher, distillation
//! method and regulariser, with their parameters in named `VarMap`s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use crosskd_heads::TaskHead;
use crosskd_losses::methods::{DistillInputs, FeaturePair};
use crosskd_losses::{DistillMethod, Regulariser, RegulariserConfig};
use crosskd_models::params::seeded_var_builder;
use crosskd_models::teacher::{build_teacher, Teacher, TeacherConfig as ModelTeacherConfig};
use crosskd_models::{ArchitectureConfig, TappedNetwork};

use crate::checkpoint::{checkpoint_path, Checkpoint};
use crate::config::{default_student, default_tap, Config, TeacherConfig};
use crate::datasets::{build_splits, DataRequest, Splits};
use crate::error::{Result, TrainError};
use crate::task::{build_head, component, task_loss, Batch};
use crate::teacher_cache::TeacherCache;
use crate::teacher_logits::is_logit_kd;

/// Seed offsets of the parameter groups, so that student, head and projector draw independent
/// initial weights from one run seed.
const HEAD_SEED_OFFSET: u64 = 0x4845_4144;
const DISTILL_SEED_OFFSET: u64 = 0x4449_5354;

/// The student: a tapped network and its task head.
pub struct Student {
    /// The backbone (U-Net or small ResNet).
    pub net: Box<dyn TappedNetwork>,
    /// The task head on the backbone's output.
    pub head: Box<dyn TaskHead>,
    /// The backbone's parameters and batch-norm buffers.
    pub net_vars: VarMap,
    /// The head's parameters.
    pub head_vars: VarMap,
    /// The distilled tap (`bottleneck`, `pooled`).
    pub tap: String,
    /// An early tap for the random-subspace regulariser.
    pub early_tap: Option<String>,
}

/// One forward pass of the student with everything the losses need.
pub struct StudentPass {
    /// The head's prediction.
    pub prediction: Tensor,
    /// The distilled feature `Z_s`.
    pub feature: Tensor,
    /// The early feature, when requested.
    pub early: Option<Tensor>,
}

impl Student {
    /// Runs the student on `images`; `train` selects batch-norm behaviour.
    pub fn forward(&self, images: &Tensor, train: bool) -> Result<StudentPass> {
        let mut taps: Vec<&str> = vec![self.tap.as_str()];
        if let Some(e) = &self.early_tap {
            taps.push(e.as_str());
        }
        let (out, mut feats) = self
            .net
            .forward_with_taps(images, train, &taps)
            .map_err(|e| component("student", e))?;
        let prediction = self.head.forward(&out)?;
        let feature = feats.remove(&self.tap).ok_or_else(|| {
            TrainError::Component(format!("student tap `{}` produced no feature", self.tap))
        })?;
        let early = match &self.early_tap {
            Some(e) => feats.remove(e),
            None => None,
        };
        Ok(StudentPass {
            prediction,
            feature,
            early,
        })
    }
}

/// The frozen teacher, the tap it is read at, and its feature cache when the run uses one.
pub struct TeacherSide {
    /// The network (with its classification head as the `logits` tap, for logit KD of a crosskd
    /// classification teacher).
    pub teacher: Box<dyn Teacher>,
    /// The configured feature tap.
    pub tap: String,
    /// The tap the method distils: [`TeacherSide::tap`], or `logits` for logit KD.
    pub target: String,
    /// Cached outputs at `target` by sample (see [`crate::teacher_cache`]).
    pub cache: Option<TeacherCache>,
}

impl TeacherSide {
    /// The teacher's output at the distilled tap for `images`, read from the cache when the batch
    /// carries cache keys and a cache is attached; a map is pooled to `(N, C)` when the student's
    /// feature is a vector.
    pub fn target(
        &self,
        images: &Tensor,
        keys: Option<&[usize]>,
        student_rank: usize,
    ) -> Result<Tensor> {
        let z = match (&self.cache, keys) {
            (Some(cache), Some(keys)) => cache.get(keys)?,
            _ => {
                let mut feats = self
                    .teacher
                    .features(images, &[self.target.as_str()])
                    .map_err(|e| component("teacher", e))?;
                feats.remove(&self.target).ok_or_else(|| {
                    TrainError::Component(format!(
                        "teacher tap `{}` produced no feature",
                        self.target
                    ))
                })?
            }
        };
        if student_rank == 2 && z.rank() == 4 {
            return Ok(z.mean((2, 3))?);
        }
        Ok(z)
    }
}

/// The diagnostic carrying the unweighted logit-KD term (`logit_kd` in the metrics).
pub const LOGIT_KD_DIAGNOSTIC: &str = "logit-kd.kl";

/// Loss values of one training step.
pub struct StepLosses {
    /// `L_task`.
    pub task: Tensor,
    /// The distillation terms (weighted sum) and the method's diagnostics.
    pub distill: Option<(Tensor, Vec<(String, f64)>)>,
    /// `R(Z_s)`, unweighted, with its weight.
    pub regulariser: Option<(Tensor, f64)>,
    /// `L_task + Σ weight·term + λ·R`.
    pub total: Tensor,
}

/// A fully built run.
pub struct Session {
    /// The resolved configuration.
    pub config: Config,
    /// Where tensors live.
    pub device: Device,
    /// The data.
    pub data: Splits,
    /// The student.
    pub student: Student,
    /// The teacher, when configured.
    pub teacher: Option<TeacherSide>,
    /// The distillation method (with its projectors), when a teacher is configured.
    pub method: Option<Box<dyn DistillMethod>>,
    /// The projectors' parameters.
    pub distill_vars: VarMap,
    /// The teacher-free regulariser.
    pub regulariser: Option<Regulariser>,
}

/// The checkpoint file a `checkpoint` teacher path names (a run folder's best checkpoint, or the
/// file itself).
pub fn teacher_checkpoint_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        let best = checkpoint_path(path, "best");
        if best.exists() {
            return best;
        }
        return checkpoint_path(path, "last");
    }
    path.to_path_buf()
}

/// Picks a tap when the config leaves it empty: the in-house default, else the deepest feature
/// map (3-D tap) before the output.
fn choose_tap(
    arch: Option<&ArchitectureConfig>,
    net: &dyn TappedNetwork,
    hw: (usize, usize),
) -> Result<String> {
    if let Some(a) = arch {
        let t = default_tap(a);
        if !t.is_empty() {
            return Ok(t.to_string());
        }
    }
    let taps = net.tap_shapes(hw).map_err(|e| component("teacher", e))?;
    taps.iter()
        .rev()
        .find(|(_, shape)| shape.len() == 3)
        .or_else(|| taps.last())
        .map(|(n, _)| n.clone())
        .ok_or_else(|| TrainError::Component(format!("teacher `{}` has no taps", net.arch_name())))
}

impl Session {
    /// Builds data, student, teacher, method and regulariser from a resolved config, validating
    /// every tap (errors list the available taps with their shapes). Returns the session and
    /// the config with the chosen teacher tap filled in.
    pub fn build(config: &Config) -> Result<Session> {
        let mut config = config.clone();
        let device = crate::device::DeviceChoice::parse(&config.device)
            .map_err(|message| TrainError::config("device", message))?
            .open()?;
        let data = open_data(&mut config)?;
        let (channels, h, w) = data.input_shape(config.data.image_size)?;
        let arch = config
            .student_arch()
            .cloned()
            .unwrap_or_else(|| default_student(config.task));
        let arch = with_input_channels(arch, channels);
        config.student.architecture = Some(arch.clone());

        let net_vars = VarMap::new();
        let net = crosskd_models::build_network(
            &arch,
            seeded_var_builder(&net_vars, config.seed, DType::F32, &device),
        )
        .map_err(|e| component("student", e))?;
        let early_tap = match config.regulariser {
            Some(RegulariserConfig::RandomSubspace { .. }) => Some(match &arch {
                ArchitectureConfig::SmallResnet(_) => "stem".to_string(),
                _ => "enc1".to_string(),
            }),
            _ => None,
        };
        let mut wanted = vec![config.student.tap.as_str()];
        if let Some(e) = &early_tap {
            wanted.push(e.as_str());
        }
        let student_shapes = crosskd_models::validate_taps(net.as_ref(), (h, w), &wanted)
            .map_err(|e| TrainError::config("student.tap", e.to_string()))?;
        let tap_shape = student_shapes[0].1.clone();
        let out_tap = net.output_tap();
        let out_shapes = crosskd_models::validate_taps(net.as_ref(), (h, w), &[out_tap.as_str()])
            .map_err(|e| component("student", e))?;
        let out_channels = out_shapes[0].1[0];
        let head_vars = VarMap::new();
        let head = build_head(
            &config,
            out_channels,
            seeded_var_builder(
                &head_vars,
                config.seed ^ HEAD_SEED_OFFSET,
                DType::F32,
                &device,
            ),
        )?;
        let student = Student {
            net,
            head,
            net_vars,
            head_vars,
            tap: config.student.tap.clone(),
            early_tap,
        };

        let teacher = build_teacher_side(&mut config, (h, w), &device)?;
        let distill_vars = VarMap::new();
        let method = match &teacher {
            Some(t) => {
                let t_shape = t
                    .teacher
                    .validate_taps((h, w), &[t.target.as_str()])
                    .map_err(|e| TrainError::config("teacher.tap", e.to_string()))?[0]
                    .1
                    .clone();
                let dense = tap_shape.len() == 3;
                if dense && t_shape.len() != 3 && !is_logit_kd(&config) {
                    return Err(TrainError::config(
                        "teacher.tap",
                        format!(
                            "the student feature `{}` is a map {:?}, so the teacher tap `{}` must be a map too, found shape {:?}",
                            student.tap, tap_shape, t.tap, t_shape
                        ),
                    ));
                }
                let pair = FeaturePair {
                    d_teacher: t_shape[0],
                    d_student: tap_shape[0],
                    dense,
                };
                let vb = seeded_var_builder(
                    &distill_vars,
                    config.seed ^ DISTILL_SEED_OFFSET,
                    DType::F32,
                    &device,
                );
                Some(
                    crosskd_losses::build_method(
                        &config.distill,
                        &[pair],
                        config.seed ^ DISTILL_SEED_OFFSET,
                        vb,
                    )
                    .map_err(|e| TrainError::config("distill", e.to_string()))?,
                )
            }
            None => None,
        };
        let regulariser = match config.regulariser {
            Some(r) => Some(
                Regulariser::new(r)
                    .map_err(|e| TrainError::config("regulariser", e.to_string()))?,
            ),
            None => None,
        };
        Ok(Session {
            config,
            device,
            data,
            student,
            teacher,
            method,
            distill_vars,
            regulariser,
        })
    }

    /// All parameter groups with their checkpoint prefixes, in a fixed order.
    pub fn var_groups(&self) -> Vec<(&'static str, &VarMap)> {
        vec![
            ("distill.", &self.distill_vars),
            ("head.", &self.student.head_vars),
            ("student.", &self.student.net_vars),
        ]
    }

    /// Loss terms of one training forward pass.
    pub fn losses(&self, batch: &Batch) -> Result<(StepLosses, StudentPass)> {
        let pass = self.student.forward(&batch.images, true)?;
        let task = task_loss(&self.config, &pass.prediction, batch)?;
        let mut total = task.clone();
        let distill = match (&self.teacher, &self.method) {
            (Some(t), Some(m)) => {
                let z_t = t.target(
                    &batch.images,
                    batch.teacher_keys.as_deref(),
                    pass.feature.rank(),
                )?;
                let inputs = if is_logit_kd(&self.config) {
                    // Logit KD reads no features: the teacher's target is its logits.
                    DistillInputs {
                        student_features: &[],
                        teacher_features: &[],
                        student_logits: Some(&pass.prediction),
                        teacher_logits: Some(&z_t),
                    }
                } else {
                    let logits = if self.config.task == crate::Task::Classification {
                        Some(&pass.prediction)
                    } else {
                        None
                    };
                    DistillInputs {
                        student_features: std::slice::from_ref(&pass.feature),
                        teacher_features: std::slice::from_ref(&z_t),
                        student_logits: logits,
                        teacher_logits: None,
                    }
                };
                let terms = m
                    .forward(&inputs)
                    .map_err(|e| component("distillation", e))?;
                let sum = terms.total().map_err(|e| component("distillation", e))?;
                total = (total + &sum)?;
                let mut diagnostics = terms.diagnostics.clone();
                for term in terms.terms.iter().filter(|t| t.name == "logit-kd") {
                    diagnostics.push((
                        LOGIT_KD_DIAGNOSTIC.to_string(),
                        term.value.to_dtype(DType::F64)?.to_scalar::<f64>()?,
                    ));
                }
                Some((sum, diagnostics))
            }
            _ => None,
        };
        let regulariser = match &self.regulariser {
            Some(r) => {
                let v = r
                    .value(&pass.feature, pass.early.as_ref())
                    .map_err(|e| component("regulariser", e))?;
                total = (total + v.affine(r.weight(), 0.0)?)?;
                Some((v, r.weight()))
            }
            None => None,
        };
        Ok((
            StepLosses {
                task,
                distill,
                regulariser,
                total,
            },
            pass,
        ))
    }

    /// Every tensor to checkpoint, by prefixed name.
    pub fn model_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, map) in self.var_groups() {
            for (name, t) in crosskd_models::params::sorted_vars(map) {
                out.push((format!("{prefix}{name}"), t));
            }
        }
        out
    }

    /// Loads the weights of a checkpoint into the session's variables; errors name any tensor
    /// that is missing or has the wrong shape.
    pub fn load_weights(&self, ck: &Checkpoint, path: &Path) -> Result<()> {
        self.load_tensors(&ck.tensors, path)
    }

    /// Loads prefixed tensors (`student.…`, `head.…`, `distill.…`) into the session's variables;
    /// errors name any tensor that is missing or has the wrong shape, and `path`.
    pub fn load_tensors(&self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        for (prefix, map) in self.var_groups() {
            let data = map.data().lock().unwrap_or_else(|p| p.into_inner());
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                let key = format!("{prefix}{name}");
                let var = &data[name];
                let t = tensors.get(&key).ok_or_else(|| TrainError::Checkpoint {
                    path: path.to_path_buf(),
                    message: format!("tensor {key} is missing (the run's config.toml does not match this checkpoint)"),
                })?;
                if t.dims() != var.dims() {
                    return Err(TrainError::Checkpoint {
                        path: path.to_path_buf(),
                        message: format!(
                            "tensor {key}: expected shape {:?}, found {:?}",
                            var.dims(),
                            t.dims()
                        ),
                    });
                }
                var.set(&t.to_dtype(var.dtype())?)?;
            }
        }
        Ok(())
    }

    /// The metadata that lets `crosskd_models` load the student network from a checkpoint
    /// (so a finished run can serve as an in-house `checkpoint` teacher).
    pub fn model_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        let arch = self
            .config
            .student_arch()
            .cloned()
            .unwrap_or_else(|| default_student(self.config.task));
        m.insert(
            crosskd_models::checkpoint::FORMAT_KEY.to_string(),
            crosskd_models::checkpoint::FORMAT_V1.to_string(),
        );
        m.insert(
            crosskd_models::checkpoint::ARCHITECTURE_KEY.to_string(),
            arch.to_json(),
        );
        m.insert(
            crosskd_models::checkpoint::PREFIX_KEY.to_string(),
            "student.".to_string(),
        );
        m.insert(
            "crosskd.task".to_string(),
            self.config.task.name().to_string(),
        );
        m
    }
}

/// Opens the config's data and fills in a class count the data found (`data.num-classes = 0`
/// with a source that counts its class folders); a configured count below it is an error.
fn open_data(config: &mut Config) -> Result<Splits> {
    let rgb = match config.student_arch() {
        Some(ArchitectureConfig::SmallResnet(c)) => c.in_channels == 3,
        _ => false,
    };
    let data = build_splits(&DataRequest {
        data: &config.data,
        task: config.task,
        rgb,
    })?;
    if let Some(found) = data.num_classes {
        if found < 2 {
            return Err(TrainError::config(
                "data.root",
                format!(
                    "expected at least 2 classes in data set \"{}\", found {found}",
                    config.data.dataset
                ),
            ));
        }
        if config.data.num_classes == 0 {
            config.data.num_classes = found;
        } else if config.data.num_classes < found {
            return Err(TrainError::config(
                "data.num-classes",
                format!(
                    "expected at least the {found} classes of data set \"{}\", found {}",
                    config.data.dataset, config.data.num_classes
                ),
            ));
        }
    }
    Ok(data)
}

fn with_input_channels(arch: ArchitectureConfig, channels: usize) -> ArchitectureConfig {
    match arch {
        ArchitectureConfig::Unet(mut u) => {
            u.in_channels = channels;
            ArchitectureConfig::Unet(u)
        }
        ArchitectureConfig::SmallResnet(mut r) => {
            r.in_channels = channels;
            ArchitectureConfig::SmallResnet(r)
        }
        other => other,
    }
}

fn build_teacher_side(
    config: &mut Config,
    hw: (usize, usize),
    device: &Device,
) -> Result<Option<TeacherSide>> {
    let mut checkpoint_file = None;
    let (model_cfg, arch, tap) = match &config.teacher {
        TeacherConfig::None => return Ok(None),
        TeacherConfig::Random {
            architecture,
            seed,
            tap,
            input_normalization,
        } => {
            let arch = architecture
                .clone()
                .or_else(|| config.student.architecture.clone())
                .ok_or_else(|| {
                    TrainError::config(
                        "teacher.architecture",
                        "expected an architecture table, found none",
                    )
                })?;
            let cfg = ModelTeacherConfig::Random {
                architecture: arch.clone(),
                seed: seed.unwrap_or(config.seed.wrapping_add(1)),
                input_normalization: input_normalization.clone(),
            };
            (cfg, Some(arch), tap.clone())
        }
        TeacherConfig::Checkpoint {
            path,
            tap,
            input_normalization,
        } => {
            let file = teacher_checkpoint_file(path);
            if !file.exists() {
                return Err(TrainError::config(
                    "teacher.path",
                    format!(
                        "expected a run folder with checkpoints or a checkpoint file, found no {}",
                        file.display()
                    ),
                ));
            }
            let arch = crosskd_models::checkpoint::read_checkpoint(&file, device)
                .map_err(|e| TrainError::config("teacher.path", e.to_string()))?
                .arch;
            checkpoint_file = Some(file.clone());
            let cfg = ModelTeacherConfig::Checkpoint {
                path: file,
                input_normalization: input_normalization.clone(),
            };
            (cfg, Some(arch), tap.clone())
        }
        TeacherConfig::Pretrained {
            tap,
            input_normalization,
            ..
        } => {
            let source = crate::teachers::pretrained_weights(&config.teacher)?
                .ok_or_else(|| TrainError::config("teacher", "expected a pretrained teacher"))?;
            let cfg = ModelTeacherConfig::Pretrained {
                architecture: source.architecture.clone(),
                weights: source.path,
                naming: source.naming,
                input_normalization: input_normalization.clone(),
            };
            (cfg, Some(source.architecture), tap.clone())
        }
    };
    let teacher = build_teacher(&model_cfg, device)
        .map_err(|e| TrainError::config("teacher", e.to_string()))?;
    let logit_kd = is_logit_kd(config);
    let tap = if logit_kd {
        crate::teacher_logits::LOGITS_TAP.to_string()
    } else if tap.is_empty() {
        choose_tap(arch.as_ref(), teacher.network(), hw)?
    } else {
        tap
    };
    match &mut config.teacher {
        TeacherConfig::Random { tap: t, .. }
        | TeacherConfig::Checkpoint { tap: t, .. }
        | TeacherConfig::Pretrained { tap: t, .. } => *t = tap.clone(),
        TeacherConfig::None => {}
    }
    let teacher: Box<dyn Teacher> = if logit_kd {
        crate::teacher_logits::with_logits(
            teacher,
            checkpoint_file.as_deref(),
            config.data.num_classes,
            hw,
            device,
        )?
    } else {
        Box::new(teacher)
    };
    Ok(Some(TeacherSide {
        teacher,
        target: tap.clone(),
        tap,
        cache: None,
    }))
}
