//! Logit distillation's teacher side: which teachers have class scores over the student's labels,
//! and a teacher view that adds the classification head of a crosskd classification checkpoint as
//! a `logits` tap, so that every teacher's class scores are read the same way (and cached the
//! same way as any other tap).
//!
//! Logit KD makes sense only when the teacher scores the student's own label set: a torchvision
//! architecture whose classifier has `data.num-classes` outputs (an ImageNet teacher on a
//! 1000-class ImageNet-labelled folder), or a classification run of crosskd over the same number
//! of classes. Everything else is refused before step 1: the config phase checks what the config
//! states, the teacher-open phase what only the weights know.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::Module;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use crosskd_heads::{classification_head, ClassificationHead, ClassificationHeadConfig};
use crosskd_losses::MethodConfig;
use crosskd_models::teacher::{FrozenTeacher, Teacher};
use crosskd_models::{ArchitectureConfig, TapShapes};

use crate::config::{Config, Task, TeacherConfig};
use crate::error::{Result, TrainError};

/// The tap holding a teacher's class scores `(N, K)`: torchvision's classifier output, or the
/// head of a crosskd classification checkpoint.
pub const LOGITS_TAP: &str = "logits";

/// Metadata key naming the task of a crosskd checkpoint or exported student.
const TASK_KEY: &str = "crosskd.task";

/// Whether the config distils logits (`distill.kind = "logit-kd"` with a teacher).
pub fn is_logit_kd(config: &Config) -> bool {
    config.teacher.is_some() && matches!(config.distill, MethodConfig::LogitKd(_))
}

/// The classifier width of an architecture that ends in one, `None` for feature extractors.
fn classifier_classes(arch: &ArchitectureConfig) -> Option<usize> {
    match arch {
        ArchitectureConfig::MobilenetV2(c) => Some(c.num_classes),
        ArchitectureConfig::Resnet(c) => Some(c.num_classes),
        ArchitectureConfig::Vgg16(c) => c.classifier.then_some(c.num_classes),
        _ => None,
    }
}

/// Config-time checks of logit KD: a classification task, the `logits` tap, and (where the config
/// states the architecture) a classifier over `data.num-classes` labels. Checkpoint teachers are
/// checked when opened ([`with_logits`]), since only their weights know their head.
pub fn validate_logit_kd(config: &Config) -> Result<()> {
    if !is_logit_kd(config) {
        return Ok(());
    }
    if config.task != Task::Classification {
        return Err(TrainError::config(
            "distill.kind",
            format!(
                "\"logit-kd\" distils class scores, so it needs task = \"classification\", found \
                 \"{}\" (a dense task has no per-image logits: use fitnets, srd, vkd or \
                 attention-transfer)",
                config.task.name()
            ),
        ));
    }
    let (arch, tap) = match &config.teacher {
        TeacherConfig::Random {
            architecture, tap, ..
        } => (
            architecture
                .clone()
                .or_else(|| config.student_arch().cloned()),
            tap,
        ),
        TeacherConfig::Pretrained {
            architecture, tap, ..
        } => (architecture.clone(), tap),
        TeacherConfig::Checkpoint { tap, .. } => (None, tap),
        TeacherConfig::None => return Ok(()),
    };
    if !tap.is_empty() && tap != LOGITS_TAP {
        return Err(TrainError::config(
            "teacher.tap",
            format!(
                "\"logit-kd\" distils the teacher's class scores (tap \"{LOGITS_TAP}\"): leave \
                 teacher.tap empty or set it to \"{LOGITS_TAP}\", found \"{tap}\""
            ),
        ));
    }
    let Some(arch) = arch else {
        return Ok(());
    };
    let wanted = config.data.num_classes;
    match classifier_classes(&arch) {
        // A count of 0 is the data's own, known once the data is opened: [`with_logits`] checks.
        Some(k) if k == wanted || wanted == 0 => Ok(()),
        Some(k) => Err(TrainError::config(
            "teacher.architecture.num-classes",
            format!(
                "\"logit-kd\" needs the teacher to score the student's {wanted} classes \
                 (data.num-classes), found a {} classifier over {k}",
                arch.name()
            ),
        )),
        None => Err(TrainError::config(
            "teacher.architecture",
            format!(
                "\"logit-kd\" needs a teacher with a classifier head over the student's {wanted} \
                 classes; a \"{}\" teacher has none (use a crosskd classification run as a \
                 `checkpoint` teacher, or a torchvision architecture with its classifier)",
                arch.name()
            ),
        )),
    }
}

/// The teacher logit KD reads: `teacher` itself when its network has a `logits` tap, else the
/// network with the classification head stored in the checkpoint `file` (a crosskd training
/// checkpoint or an exported student). Errors, keyed `teacher`, say what is missing or how the
/// label counts differ.
pub fn with_logits(
    teacher: FrozenTeacher,
    file: Option<&Path>,
    num_classes: usize,
    input_hw: (usize, usize),
    device: &Device,
) -> Result<Box<dyn Teacher>> {
    let taps = teacher
        .available_taps(input_hw)
        .map_err(|e| TrainError::config("teacher", e.to_string()))?;
    if let Some((_, shape)) = taps.iter().find(|(n, _)| n == LOGITS_TAP) {
        if shape.as_slice() != [num_classes] {
            return Err(TrainError::config(
                "teacher",
                format!(
                    "\"logit-kd\" needs the teacher to score the student's {num_classes} classes \
                     (data.num-classes), found logits of shape {shape:?}"
                ),
            ));
        }
        return Ok(Box::new(teacher));
    }
    let Some(file) = file else {
        return Err(TrainError::config(
            "teacher",
            format!(
                "\"logit-kd\" needs a teacher with a classifier head; the {} teacher has no \
                 `{LOGITS_TAP}` tap",
                teacher.network().arch_name()
            ),
        ));
    };
    let out_tap = teacher.network().output_tap();
    let out_shape = taps
        .iter()
        .find(|(n, _)| *n == out_tap)
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let head = read_classification_head(file, num_classes, &out_shape, device)?;
    Ok(Box::new(HeadedTeacher {
        inner: teacher,
        head,
        out_tap,
        num_classes,
    }))
}

/// The classification head stored under `head.` in a crosskd checkpoint, checked against the
/// label count and the network's output width.
fn read_classification_head(
    file: &Path,
    num_classes: usize,
    out_shape: &[usize],
    device: &Device,
) -> Result<ClassificationHead> {
    let err = |message: String| TrainError::config("teacher.path", message);
    let st =
        crosskd_models::storage::read_safetensors(file, device).map_err(|e| err(e.to_string()))?;
    let task = st.metadata.get(TASK_KEY).map(String::as_str);
    if task.is_some_and(|t| t != Task::Classification.name()) {
        return Err(err(format!(
            "\"logit-kd\" needs a classification teacher; {} is a {} model ({TASK_KEY} = {:?}), \
             which has no classifier head",
            file.display(),
            task.unwrap_or_default(),
            task.unwrap_or_default()
        )));
    }
    let tensors: HashMap<String, Tensor> = st
        .tensors
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix("head.").map(|n| (n.to_string(), t)))
        .collect();
    let Some(weight) = tensors.get("fc.weight") else {
        return Err(err(format!(
            "\"logit-kd\" needs a teacher with a classifier head; {} holds no head.fc.weight \
             (not a classification run of crosskd)",
            file.display()
        )));
    };
    let (k, c) = weight.dims2().map_err(|e| err(e.to_string()))?;
    if k != num_classes {
        return Err(err(format!(
            "\"logit-kd\" needs the teacher to score the student's {num_classes} classes \
             (data.num-classes); the head in {} scores {k}",
            file.display()
        )));
    }
    if out_shape.first() != Some(&c) {
        return Err(err(format!(
            "the head in {} reads {c} channels, but the network's output has shape {out_shape:?}",
            file.display()
        )));
    }
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    let head = classification_head(
        &ClassificationHeadConfig {
            in_channels: c,
            num_classes: k,
        },
        vb,
    )
    .map_err(|e| err(format!("classification head in {}: {e}", file.display())))?;
    Ok(head)
}

fn model_error(message: String) -> crosskd_models::ModelError {
    crosskd_models::ModelError::InvalidConfig {
        arch: "teacher with classification head".into(),
        message,
    }
}

/// A crosskd classification network with its head: the network's taps plus `logits`.
struct HeadedTeacher {
    inner: FrozenTeacher,
    head: ClassificationHead,
    out_tap: String,
    num_classes: usize,
}

impl Teacher for HeadedTeacher {
    fn features(
        &self,
        x: &Tensor,
        taps: &[&str],
    ) -> crosskd_models::Result<BTreeMap<String, Tensor>> {
        let wants_logits = taps.contains(&LOGITS_TAP);
        let mut inner: Vec<&str> = taps.iter().copied().filter(|t| *t != LOGITS_TAP).collect();
        if wants_logits && !inner.contains(&self.out_tap.as_str()) {
            inner.push(self.out_tap.as_str());
        }
        let mut feats = self.inner.features(x, &inner)?;
        if wants_logits {
            let out = if taps.contains(&self.out_tap.as_str()) {
                feats.get(&self.out_tap).cloned()
            } else {
                feats.remove(&self.out_tap)
            };
            let out = out.ok_or_else(|| {
                model_error(format!("output tap `{}` produced no feature", self.out_tap))
            })?;
            let logits = self
                .head
                .forward(&out)
                .map_err(|e| model_error(format!("classification head: {e}")))?;
            feats.insert(LOGITS_TAP.to_string(), logits.detach());
        }
        Ok(feats)
    }

    fn available_taps(&self, input_hw: (usize, usize)) -> crosskd_models::Result<TapShapes> {
        let mut taps = self.inner.available_taps(input_hw)?;
        taps.push((LOGITS_TAP.to_string(), vec![self.num_classes]));
        Ok(taps)
    }

    fn identity(&self) -> String {
        // The checkpoint identity hashes the whole file, head included.
        format!("{};with-classification-head", self.inner.identity())
    }

    fn validate_taps(
        &self,
        input_hw: (usize, usize),
        taps: &[&str],
    ) -> crosskd_models::Result<TapShapes> {
        let all = self.available_taps(input_hw)?;
        let unknown: Vec<String> = taps
            .iter()
            .filter(|t| !all.iter().any(|(n, _)| n == *t))
            .map(|t| t.to_string())
            .collect();
        if !unknown.is_empty() {
            return Err(crosskd_models::ModelError::UnknownTap {
                arch: self.inner.network().arch_name(),
                unknown,
                height: input_hw.0,
                width: input_hw.1,
                available: crosskd_models::network::format_tap_shapes(&all),
            });
        }
        Ok(taps
            .iter()
            .filter_map(|t| all.iter().find(|(n, _)| n == t).cloned())
            .collect())
    }
}
