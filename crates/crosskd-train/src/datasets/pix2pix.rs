//! `pix2pix`: paired folders of the pix2pix releases (facades, maps, cityscapes), each file the
//! input and the target side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crosskd_data::PairedFolder;

use super::splits::{carve, open_error};
use super::{root_folder, DataRequest, DatasetSource, PairDirection, RootUse, Splits};
use crate::error::{Result, TrainError};
use crate::task_kind::Task;

/// The entry of [`super::SOURCES`].
pub const SOURCE: DatasetSource = DatasetSource {
    name: "pix2pix",
    tasks: &[Task::Translation],
    about:
        "pix2pix image pairs side by side (facades, maps, ...); data.direction picks the input half",
    root: RootUse::Required,
    classes: None,
    layout: "ROOT/train/NAME.png   A | B side by side (A the left half), even width, PNG or JPEG\n\
             ROOT/test/NAME.png    the test split (ROOT/val/ when there is no test/)",
    open,
};

/// `root/test`, else `root/val`: the pix2pix releases ship one or the other.
pub(super) fn test_folder(root: &Path) -> Result<PathBuf> {
    ["test", "val"]
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            TrainError::config(
                "data.root",
                format!(
                    "expected a test split in {} or {}, found neither",
                    root.join("test").display(),
                    root.join("val").display()
                ),
            )
        })
}

fn open(request: &DataRequest) -> Result<Splits> {
    let root = root_folder(request, &SOURCE)?;
    let what = format!("pix2pix pairs in {}", root.display());
    let direction = request.data.direction.unwrap_or(PairDirection::AToB).into();
    let folder = |dir: PathBuf| -> Result<Arc<dyn crosskd_data::Dataset>> {
        Ok(Arc::new(
            PairedFolder::open(&dir, direction).map_err(|e| open_error(&what, e))?,
        ))
    };
    let train_all = folder(root.join("train"))?;
    let test_all = folder(test_folder(&root)?)?;
    carve(train_all, test_all, request.data, true, &what)
}
