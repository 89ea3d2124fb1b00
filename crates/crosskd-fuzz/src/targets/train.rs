//! Targets of crosskd-train: training checkpoints (safetensors with the position in the
//! metadata), TOML run configs and `metrics.jsonl`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use crosskd_train::checkpoint::{Checkpoint, RngState, TrainingPosition};
use crosskd_train::metrics_log::{read_records, EvalRecord, MetricsLog, Record, TrainRecord};
use crosskd_train::Config;

use super::models::SAFETENSORS_TOKENS;
use super::{put, refused, Target};

/// A training checkpoint through [`Checkpoint::load`], its RNG state restored.
pub(crate) struct TrainCheckpoint;

impl Target for TrainCheckpoint {
    fn name(&self) -> &'static str {
        "train-checkpoint"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let dev = Device::Cpu;
        let tensors: HashMap<String, Tensor> = [
            ("student.w", Tensor::arange(0f32, 6.0, &dev)),
            (
                "optim.student.w.m",
                Tensor::zeros(6, candle_core::DType::F32, &dev),
            ),
            ("optim.step", Tensor::new(&[7u32], &dev)),
        ]
        .into_iter()
        .filter_map(|(n, t)| Some((n.to_owned(), t.ok()?)))
        .collect();
        let checkpoint = Checkpoint {
            tensors,
            position: TrainingPosition {
                step: 40,
                epoch: 2,
                batch_in_epoch: 3,
                rng: RngState {
                    seed: [5; 32],
                    stream: 1,
                    word_pos: 12345,
                },
                best: Some((0.125, 32)),
            },
            config_hash: "0123456789abcdef".into(),
            extra: HashMap::from([("crosskd.task".to_owned(), "depth".to_owned())]),
        };
        let Ok(dir) = tempfile::tempdir() else {
            return Vec::new();
        };
        let path = dir.path().join("last.safetensors");
        if checkpoint.save(&path).is_err() {
            return Vec::new();
        }
        std::fs::read(path).into_iter().collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        SAFETENSORS_TOKENS
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        let path = put(dir, "last.safetensors", input)?;
        let checkpoint = Checkpoint::load(&path, &Device::Cpu).map_err(refused)?;
        checkpoint.position.rng.restore();
        checkpoint.section("student");
        Ok(())
    }
}

/// Real run configs of the repository (one per task).
const CONFIGS: [&str; 4] = [
    include_str!("../../../../configs/depth-cross-task-inverted.toml"),
    include_str!("../../../../configs/segmentation-random-standard.toml"),
    include_str!("../../../../configs/classification-teacher-free.toml"),
    include_str!("../../../../configs/translation-no-kd.toml"),
];

/// A TOML run config through [`Config::from_toml_str`]; an accepted config must survive the
/// round trip through its resolved form (what every run folder saves) unchanged.
pub(crate) struct TomlConfig;

impl Target for TomlConfig {
    fn name(&self) -> &'static str {
        "toml-config"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        CONFIGS.iter().map(|c| c.as_bytes().to_vec()).collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"[data]\n",
            b"[train]\n",
            b"[distill]\n",
            b"[student]\n",
            b"[teacher]\n",
            b"[optimiser]\n",
            b"[schedule]\n",
            b"epochs = ",
            b"steps = ",
            b"batch-size = ",
            b"image-size = ",
            b"train-samples = ",
            b"threads = ",
            b"kind = \"",
            b"arch = \"unet\"\n",
            b" = ",
            b"[[",
            b"]]",
            b"'",
            b"\"\"\"",
        ]
    }

    fn execute(&mut self, _dir: &Path, input: &[u8]) -> Result<(), String> {
        // `Config::from_file` reads with `read_to_string`: non-UTF-8 files never reach the parser.
        let text = std::str::from_utf8(input).map_err(refused)?;
        let config = Config::from_toml_str(text, &[], None).map_err(refused)?;
        config.total_steps(1000);
        let resolved = config.to_toml();
        let again = Config::from_toml_str(&resolved, &[], None)
            .unwrap_or_else(|e| panic!("the resolved config does not parse back: {e}"));
        assert_eq!(
            again.to_toml(),
            resolved,
            "the resolved config changes when read back"
        );
        Ok(())
    }
}

/// `metrics.jsonl` through [`read_records`]; accepted records must serialise back to equal ones.
pub(crate) struct MetricsJsonl;

impl Target for MetricsJsonl {
    fn name(&self) -> &'static str {
        "metrics-jsonl"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let Ok(dir) = tempfile::tempdir() else {
            return Vec::new();
        };
        let path = dir.path().join("metrics.jsonl");
        let records = [
            Record::Train(TrainRecord {
                step: 4,
                epoch: 0,
                task_loss: 0.75,
                distill_total: 0.125,
                transfer: Some(0.1),
                spectral: Some(0.025),
                logit_kd: None,
                regulariser: 0.0,
                total_loss: 0.8,
                lr: 0.003,
                samples_per_s: 512.5,
            }),
            Record::Eval(EvalRecord {
                step: 8,
                epoch: 1,
                split: "val".into(),
                metrics: BTreeMap::from([("abs_rel".to_owned(), 0.21), ("delta1".into(), 0.6)]),
                projector_singular_values: vec![2.0, 1.0, 0.5],
                student_singular_values: vec![3.0, 0.25],
            }),
        ];
        let written = MetricsLog::create(&path)
            .and_then(|mut log| records.iter().try_for_each(|r| log.write(r)));
        if written.is_err() {
            return Vec::new();
        }
        std::fs::read(path).into_iter().collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"{\"kind\":\"train\",",
            b"{\"kind\":\"eval\",",
            b"\"step\":",
            b"\"metrics\":{",
            b"\"split\":\"",
            b"\"transfer\":null,",
            b"\n",
        ]
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        let path = put(dir, "metrics.jsonl", input)?;
        let records = read_records(&path).map_err(refused)?;
        for r in &records {
            let line = serde_json::to_string(r)
                .unwrap_or_else(|e| panic!("an accepted record does not serialise: {e}"));
            let back: Record = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a written record does not parse back: {e}"));
            assert_eq!(&back, r, "a record changes through write and read");
        }
        Ok(())
    }
}
