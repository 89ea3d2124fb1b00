//! `fashion-mnist`: the IDX files of Fashion-MNIST (classification), e.g. Debian's
//! `dataset-fashion-mnist`.

use std::sync::Arc;

use crosskd_data::{Dataset, FashionMnist, FashionMnistOptions, Split};

use super::splits::{carve, open_error};
use super::{root_folder, ClassCount, DataRequest, DatasetSource, RootUse, Splits};
use crate::error::Result;
use crate::task_kind::Task;

/// The entry of [`super::SOURCES`].
pub const SOURCE: DatasetSource = DatasetSource {
    name: "fashion-mnist",
    tasks: &[Task::Classification],
    about:
        "Fashion-MNIST, 28x28 grey clothing in 10 classes (Debian package dataset-fashion-mnist)",
    root: RootUse::Default(FashionMnist::DEFAULT_DIR),
    classes: Some(ClassCount::Fixed(10)),
    layout: "ROOT/train-images-idx3-ubyte[.gz]  ROOT/train-labels-idx1-ubyte[.gz]\n\
             ROOT/t10k-images-idx3-ubyte[.gz]   ROOT/t10k-labels-idx1-ubyte[.gz]\n\
             (IDX files; t10k is the test split)",
    open,
};

fn open(request: &DataRequest) -> Result<Splits> {
    let d = request.data;
    let dir = root_folder(request, &SOURCE)?;
    let options = FashionMnistOptions {
        rgb: request.rgb,
        size: if d.image_size == 28 {
            None
        } else {
            Some(d.image_size)
        },
    };
    let what = format!("Fashion-MNIST in {}", dir.display());
    let load = |split| -> Result<Arc<dyn Dataset>> {
        Ok(Arc::new(
            FashionMnist::load(&dir, split, options).map_err(|e| open_error(&what, e))?,
        ))
    };
    carve(load(Split::Train)?, load(Split::Test)?, d, false, &what)
}
