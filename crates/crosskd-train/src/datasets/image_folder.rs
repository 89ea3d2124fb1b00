//! `image-folder`: one folder per class (the torchvision ImageFolder layout), for classification.

use std::sync::Arc;

use crosskd_data::ImageFolder;

use super::pix2pix::test_folder;
use super::splits::{carve, open_error};
use super::{root_folder, ClassCount, DataRequest, DatasetSource, RootUse, Splits};
use crate::error::{Result, TrainError};
use crate::task_kind::Task;

/// The entry of [`super::SOURCES`].
pub const SOURCE: DatasetSource = DatasetSource {
    name: "image-folder",
    tasks: &[Task::Classification],
    about: "any images sorted into one folder per class (torchvision ImageFolder)",
    root: RootUse::Required,
    classes: Some(ClassCount::Counted),
    layout: "ROOT/train/CLASS/IMAGE.png  one folder per class, numbered in sorted name order\n\
             ROOT/test/CLASS/IMAGE.png   the same class folders (ROOT/val/ when there is no test/)",
    open,
};

fn open(request: &DataRequest) -> Result<Splits> {
    let root = root_folder(request, &SOURCE)?;
    let what = format!("image folders in {}", root.display());
    let train_all = ImageFolder::open(&root.join("train")).map_err(|e| open_error(&what, e))?;
    let test_dir = test_folder(&root)?;
    let test_all = ImageFolder::open(&test_dir).map_err(|e| open_error(&what, e))?;
    // Labels are positions in the sorted folder list, so both splits must list the same folders.
    if train_all.classes() != test_all.classes() {
        return Err(TrainError::config(
            "data.root",
            format!(
                "{}: expected the class folders of {} ({}), found {}",
                test_dir.display(),
                root.join("train").display(),
                train_all.classes().join(", "),
                test_all.classes().join(", ")
            ),
        ));
    }
    let num_classes = train_all.classes().len();
    let mut splits = carve(
        Arc::new(train_all),
        Arc::new(test_all),
        request.data,
        true,
        &what,
    )?;
    splits.num_classes = Some(num_classes);
    Ok(splits)
}
