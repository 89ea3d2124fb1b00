//! `cityscapes`: Cityscapes fine annotations (segmentation into the 19 training classes).

use std::sync::Arc;

use crosskd_data::sources::cityscapes::CITYSCAPES_TRAIN_CLASSES;
use crosskd_data::Cityscapes;

use super::splits::{carve, open_error};
use super::{root_folder, ClassCount, DataRequest, DatasetSource, RootUse, Splits};
use crate::error::Result;
use crate::task_kind::Task;

/// The entry of [`super::SOURCES`].
pub const SOURCE: DatasetSource = DatasetSource {
    name: "cityscapes",
    tasks: &[Task::Segmentation],
    about: "Cityscapes street scenes, 19 training classes (other label ids ignored)",
    root: RootUse::Required,
    classes: Some(ClassCount::Fixed(CITYSCAPES_TRAIN_CLASSES.len())),
    layout: "ROOT/leftImg8bit/train/CITY/NAME_leftImg8bit.png\n\
             ROOT/gtFine/train/CITY/NAME_gtFine_labelIds.png  (8-bit label ids 0-33)\n\
             ROOT/leftImg8bit/val/..., ROOT/gtFine/val/...    (val is the test split)",
    open,
};

fn open(request: &DataRequest) -> Result<Splits> {
    let root = root_folder(request, &SOURCE)?;
    let what = format!("Cityscapes in {}", root.display());
    let split = |name: &str| -> Result<Arc<dyn crosskd_data::Dataset>> {
        Ok(Arc::new(
            Cityscapes::open(&root, name).map_err(|e| open_error(&what, e))?,
        ))
    };
    carve(split("train")?, split("val")?, request.data, true, &what)
}
