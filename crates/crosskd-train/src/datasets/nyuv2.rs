//! `nyuv2`: NYU Depth v2 exported as RGB images and 16-bit PNG depth maps in millimetres, listed
//! by `train.txt` and `test.txt`.

use std::sync::Arc;

use crosskd_data::NyuDepth;

use super::splits::{carve, open_error};
use super::{root_folder, DataRequest, DatasetSource, RootUse, Splits};
use crate::error::Result;
use crate::task_kind::Task;

/// The entry of [`super::SOURCES`].
pub const SOURCE: DatasetSource = DatasetSource {
    name: "nyuv2",
    tasks: &[Task::Depth],
    about: "NYU Depth v2 (or any RGB + 16-bit depth PNG pairs), depth in metres",
    root: RootUse::Required,
    classes: None,
    layout: "ROOT/train.txt  one pair per line: RGB_PATH DEPTH_PATH (relative to ROOT;\n\
             ROOT/test.txt   further columns are ignored, `#` starts a comment)\n\
             ROOT/RGB_PATH   colour image, PNG or JPEG\n\
             ROOT/DEPTH_PATH 16-bit grey PNG, depth in millimetres, 0 = no measurement",
    open,
};

fn open(request: &DataRequest) -> Result<Splits> {
    let root = root_folder(request, &SOURCE)?;
    let what = format!("NYUv2 in {}", root.display());
    let list = |name: &str| -> Result<Arc<dyn crosskd_data::Dataset>> {
        Ok(Arc::new(
            NyuDepth::open(&root, &root.join(name)).map_err(|e| open_error(&what, e))?,
        ))
    };
    carve(
        list("train.txt")?,
        list("test.txt")?,
        request.data,
        true,
        &what,
    )
}
