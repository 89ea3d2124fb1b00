//! The `[data]` section of a run config: which source, where it lives, how it is split and
//! augmented, and how many loader workers build its batches.

use std::fmt;
use std::path::PathBuf;

use crosskd_data::AugmentConfig;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which data set feeds the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DataConfig {
    /// The source, one of [`super::SOURCES`] (`crosskd list datasets` prints them with their
    /// tasks and folder layouts): `scenes` (procedural renderer, no download; depth,
    /// segmentation, translation), `fashion-mnist` (classification, Debian package
    /// `dataset-fashion-mnist`), `nyuv2` (depth), `cityscapes` (segmentation), `pix2pix`
    /// (translation) or `image-folder` (classification). Empty = the task's default (`scenes`
    /// for dense tasks, `fashion-mnist` for classification).
    #[serde(default)]
    pub dataset: String,
    /// Folder holding the data set's files, for sources read from disk. Required by `nyuv2`,
    /// `cityscapes`, `pix2pix` and `image-folder`; `fashion-mnist` defaults to the Debian
    /// package's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Seed of the data: the rendered scenes (train, validation and test use streams `seed`,
    /// `seed + 1`, `seed + 2`) and the shuffle that carves validation samples out of a training
    /// split on disk. Independent of the run's seed, so that runs with different seeds see the
    /// same data. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Side of the square input images in pixels; images on disk are resized to it. Default 32.
    /// Dense tasks need a multiple of 2^depth of the student U-Net.
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    /// Training samples (rendered scenes, or taken from a training split on disk after the
    /// validation samples; 0 = all of them). Default 256.
    #[serde(default = "default_train_samples")]
    pub train_samples: usize,
    /// Validation samples, carved from the training split by a shuffle seeded with `seed`;
    /// they choose the `best` checkpoint. Default 64.
    #[serde(default = "default_val_samples")]
    pub val_samples: usize,
    /// Test samples (the first N of the source's test split). Default 64.
    #[serde(default = "default_test_samples")]
    pub test_samples: usize,
    /// Number of classes for segmentation and classification; 0 = the data set's own count.
    #[serde(default)]
    pub num_classes: usize,
    /// `pix2pix` only: which half of each side-by-side file is the input, `a-to-b` (left →
    /// right, the default) or `b-to-a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<PairDirection>,
    /// Background threads building batches; absent = automatic: the cores that the compute
    /// threads (`threads`) leave free, at most 4, so that loader and kernels together never ask
    /// for more threads than there are cores (with `threads = 0`, which uses every core, batches
    /// are built on the training thread between steps). An execution setting: batches are
    /// identical for any worker count, and it is outside [`crate::Config::hash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Augmentation of training batches: `false` (default), `true` (mirror the whole batch
    /// left–right with probability 1/2: the meaning the switch has always had), or a table of
    /// per-sample settings applied by the loader, e.g. `{ flip = true, crop-scale = [0.6, 1.0],
    /// brightness = 0.2 }` (see [`AugmentSettings`]).
    #[serde(default)]
    pub augment: Augment,
}

fn default_image_size() -> usize {
    32
}
fn default_train_samples() -> usize {
    256
}
fn default_val_samples() -> usize {
    64
}
fn default_test_samples() -> usize {
    64
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: String::new(),
            root: None,
            seed: 0,
            image_size: default_image_size(),
            train_samples: default_train_samples(),
            val_samples: default_val_samples(),
            test_samples: default_test_samples(),
            num_classes: 0,
            direction: None,
            workers: None,
            augment: Augment::default(),
        }
    }
}

/// Which half of a pix2pix file is the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairDirection {
    /// Left half → right half.
    AToB,
    /// Right half → left half.
    BToA,
}

impl From<PairDirection> for crosskd_data::Direction {
    fn from(d: PairDirection) -> Self {
        match d {
            PairDirection::AToB => crosskd_data::Direction::AToB,
            PairDirection::BToA => crosskd_data::Direction::BToA,
        }
    }
}

/// `data.augment`: the historical switch or a table of per-sample settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Augment {
    /// `false`: none; `true`: the whole batch is mirrored left–right with probability 1/2, drawn
    /// from the trainer's generator. Kept as it was so that configs written before the table
    /// existed keep their hash and their results.
    Switch(bool),
    /// Per-sample augmentation in the loader (each sample draws from `(seed, epoch, index)`).
    Settings(AugmentSettings),
}

impl Default for Augment {
    fn default() -> Self {
        Augment::Switch(false)
    }
}

impl Augment {
    /// Whether whole training batches are flipped by the trainer (`augment = true`).
    pub fn flips_whole_batches(&self) -> bool {
        matches!(self, Augment::Switch(true))
    }

    /// The loader's per-sample augmentation, resizing every sample to `output_size` when given
    /// (a random crop needs it, so that crops of any size stack into one batch).
    pub fn sample_config(&self, output_size: Option<[usize; 2]>) -> AugmentConfig {
        match self {
            Augment::Switch(_) => AugmentConfig {
                output_size,
                ..AugmentConfig::default()
            },
            Augment::Settings(s) => AugmentConfig {
                output_size,
                crop_scale: [s.crop_scale[0] as f32, s.crop_scale[1] as f32],
                horizontal_flip: s.flip,
                brightness: s.brightness as f32,
                contrast: s.contrast as f32,
                saturation: s.saturation as f32,
            },
        }
    }

    /// Checks the settings' ranges; the message is the reason, for the key `data.augment`.
    pub fn check(&self) -> std::result::Result<(), String> {
        match self {
            Augment::Switch(_) => Ok(()),
            Augment::Settings(_) => self
                .sample_config(Some([1, 1]))
                .validate()
                .map_err(|e| e.to_string().replace("invalid configuration: augment ", "")),
        }
    }
}

/// Per-sample augmentation of training samples (all off by default). Geometric changes move
/// the image and a dense target together; colour jitter changes the image only. Validation and
/// test samples are never augmented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AugmentSettings {
    /// Mirror each sample left–right with probability 1/2.
    pub flip: bool,
    /// A random crop whose side is this fraction of the image side, drawn from `[lo, hi]`, at a
    /// random position, resized back to `image-size` (so also a random scale). `[1, 1]` = none.
    pub crop_scale: [f64; 2],
    /// Brightness factor drawn from `[1 - b, 1 + b]`, in [0, 1].
    pub brightness: f64,
    /// Contrast factor drawn from `[1 - c, 1 + c]` around the mean grey, in [0, 1].
    pub contrast: f64,
    /// Saturation factor drawn from `[1 - s, 1 + s]` around each pixel's grey, in [0, 1].
    pub saturation: f64,
}

impl Default for AugmentSettings {
    fn default() -> Self {
        AugmentSettings {
            flip: false,
            crop_scale: [1.0, 1.0],
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }
}

impl Serialize for Augment {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            // A bare boolean, as before the table existed: old configs hash as they did.
            Augment::Switch(on) => serializer.serialize_bool(*on),
            Augment::Settings(s) => s.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Augment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct AugmentVisitor;
        impl<'de> Visitor<'de> for AugmentVisitor {
            type Value = Augment;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a table of augmentation settings")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Augment, E> {
                Ok(Augment::Switch(v))
            }
            fn visit_map<M: MapAccess<'de>>(
                self,
                map: M,
            ) -> std::result::Result<Augment, M::Error> {
                // Deserialised through the map itself, so unknown keys keep serde's precise
                // message and path.
                AugmentSettings::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Augment::Settings)
            }
        }
        deserializer.deserialize_any(AugmentVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    /// A config written before `data.augment` took a table, and the hash the code of that time
    /// gave it (`crosskd list configs` at commit 37e80ca).
    const OLD_CONFIG: &str = "task = \"depth\"\nseed = 1\nthreads = 1\n[student.architecture]\n\
        arch = \"unet\"\nbase-width = 4\ndepth = 2\nout-channels = 4\n\n[teacher]\nkind = \"random\"\n\n\
        [data]\nimage-size = 16\ntrain-samples = 32\nval-samples = 16\ntest-samples = 16\naugment = true\n\n\
        [schedule]\nkind = \"constant\"\n\n[train]\nsteps = 10\nbatch-size = 8\nlog-interval = 2\neval-interval = 5\n";

    #[test]
    fn augment_true_keeps_its_meaning_and_its_hash() {
        let c = Config::from_toml_str(OLD_CONFIG, &[], None).unwrap();
        assert_eq!(c.data.augment, Augment::Switch(true));
        assert!(c.data.augment.flips_whole_batches());
        // No per-sample change in the loader: the trainer mirrors whole batches, as before.
        assert!(c.data.augment.sample_config(None).is_identity());
        assert_eq!(c.hash(), "ccc638a33d9fc503");
        assert!(c.to_toml().contains("augment = true"));
    }

    #[test]
    fn augment_table_round_trips_and_checks_its_keys() {
        let table = OLD_CONFIG.replace(
            "augment = true",
            "augment = { flip = true, crop-scale = [0.5, 1.0], saturation = 0.3 }",
        );
        let c = Config::from_toml_str(&table, &[], None).unwrap();
        let Augment::Settings(s) = &c.data.augment else {
            panic!("settings expected")
        };
        assert!(s.flip && s.crop_scale == [0.5, 1.0] && s.saturation == 0.3);
        assert!(!c.data.augment.flips_whole_batches());
        let again = Config::from_toml_str(&c.to_toml(), &[], None).unwrap();
        assert_eq!(again.data.augment, c.data.augment);
        let e = Config::from_toml_str(&table.replace("flip", "flop"), &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.augment") && e.contains("flop"), "{e}");
        let e = Config::from_toml_str(&table.replace("0.5, 1.0", "0.0, 1.0"), &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.augment") && e.contains("crop_scale"),
            "{e}"
        );
        let e = Config::from_toml_str(&table.replace("augment = {", "augment = 3 #"), &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.augment"), "{e}");
    }

    #[test]
    fn workers_are_outside_the_hash() {
        let c = Config::from_toml_str(OLD_CONFIG, &[], None).unwrap();
        let w = c.with_overrides(&["data.workers=3".into()]).unwrap();
        assert_eq!(w.data.workers, Some(3));
        assert_eq!(w.hash(), c.hash());
        assert!(c
            .with_overrides(&["data.workers=999".into()])
            .unwrap_err()
            .to_string()
            .contains("data.workers"));
    }
}
