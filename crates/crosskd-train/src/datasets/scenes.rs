//! `scenes`: procedural indoor rooms rendered on the fly (depth, segmentation, translation).

use std::sync::Arc;

use crosskd_data::scenes::{SceneConfig, SceneDataset, SceneTask, NUM_SCENE_CLASSES};
use crosskd_data::Dataset;

use super::{ClassCount, DataRequest, DatasetSource, RootUse, Splits};
use crate::error::{Result, TrainError};
use crate::task_kind::Task;

/// The entry of [`super::SOURCES`].
pub const SOURCE: DatasetSource = DatasetSource {
    name: "scenes",
    tasks: &[Task::Depth, Task::Segmentation, Task::Translation],
    about: "procedural indoor rooms ray-cast on the fly: exact depth, 6 classes, labels -> photo",
    root: RootUse::None,
    classes: Some(ClassCount::Fixed(NUM_SCENE_CLASSES)),
    layout: "no files: train, val and test are rendered from streams data.seed, +1, +2",
    open,
};

fn open(request: &DataRequest) -> Result<Splits> {
    let d = request.data;
    let task = match request.task {
        Task::Depth => SceneTask::Depth,
        Task::Segmentation => SceneTask::Segmentation,
        Task::Translation => SceneTask::Translation,
        Task::Classification => {
            return Err(TrainError::config(
                "data.dataset",
                "rendered scenes have no classification labels",
            ))
        }
    };
    let make = |offset: u64, n: usize| -> Result<Arc<dyn Dataset>> {
        let ds = SceneDataset::new(
            task,
            SceneConfig::default(),
            d.seed.wrapping_add(offset),
            n,
            d.image_size,
        )
        .map_err(|e| TrainError::Component(format!("scenes: {e}")))?;
        Ok(Arc::new(ds.with_cache()))
    };
    Ok(Splits {
        train: make(0, d.train_samples)?,
        val: make(1, d.val_samples)?,
        test: make(2, d.test_samples)?,
        resize: false,
        num_classes: None,
    })
}
