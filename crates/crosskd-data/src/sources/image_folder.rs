//! ImageFolder classification: `root/<class name>/<image>`, classes numbered in sorted order of
//! their folder names (the torchvision convention).

use std::path::{Path, PathBuf};

use crate::augment::resize_image;
use crate::dataset::check_index;
use crate::sources::{is_image_file, load_rgb, sorted_entries};
use crate::{DataError, Dataset, Result, Sample, Target};

/// Images in one folder per class.
pub struct ImageFolder {
    classes: Vec<String>,
    items: Vec<(PathBuf, u32)>,
    size: Option<(usize, usize)>,
}

impl ImageFolder {
    /// Scans `root`; each sub-folder is a class (sorted by name), each PNG/JPEG in it a sample.
    /// A class folder without images is an error naming the folder.
    pub fn open(root: &Path) -> Result<Self> {
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let label = classes.len() as u32;
            classes.push(
                dir.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            let before = items.len();
            for file in sorted_entries(&dir)?
                .into_iter()
                .filter(|p| is_image_file(p))
            {
                items.push((file, label));
            }
            // An empty class would still get a label and a head output that nothing trains.
            if items.len() == before {
                return Err(DataError::invalid(
                    &dir,
                    "at least one PNG or JPEG image in every class folder",
                    "an empty class folder",
                ));
            }
        }
        if classes.is_empty() {
            return Err(DataError::invalid(
                root,
                "one sub-folder per class",
                "no sub-folders",
            ));
        }
        Ok(Self {
            classes,
            items,
            size: None,
        })
    }

    /// Resizes every image to `height × width` (bilinear) so batches stack.
    pub fn with_size(mut self, height: usize, width: usize) -> Self {
        self.size = Some((height, width));
        self
    }

    /// Class names; a label indexes this list.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.items.len())?;
        let (path, label) = &self.items[index];
        let mut image = load_rgb(path)?;
        if let Some((h, w)) = self.size {
            image = resize_image(&image, h, w);
        }
        Ok(Sample {
            image,
            target: Target::Class(*label),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fixtures::{rgb_png, truncated_png};

    #[test]
    fn classes_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        rgb_png(&dir.path().join("zebra/1.png"), 4, 3, 0);
        rgb_png(&dir.path().join("ant/b.png"), 2, 2, 0);
        rgb_png(&dir.path().join("ant/a.jpg"), 2, 2, 0);
        std::fs::write(dir.path().join("README"), "x").unwrap();
        let ds = ImageFolder::open(dir.path()).unwrap().with_size(5, 5);
        assert_eq!(ds.classes(), ["ant", "zebra"]);
        assert_eq!(ds.len(), 3);
        let labels: Vec<_> = (0..3).map(|i| ds.get(i).unwrap().target).collect();
        assert_eq!(
            labels,
            vec![Target::Class(0), Target::Class(0), Target::Class(1)]
        );
        assert_eq!(ds.get(2).unwrap().image.size(), (5, 5));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ImageFolder::open(dir.path()).is_err());
        truncated_png(&dir.path().join("c/broken.png"), 20);
        std::fs::write(dir.path().join("c/text.png"), "not a png").unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        let err = ImageFolder::open(dir.path()).err().unwrap();
        assert!(
            matches!(&err, DataError::Invalid { path, .. } if path.ends_with("empty")),
            "{err}"
        );
        std::fs::remove_dir(dir.path().join("empty")).unwrap();
        let ds = ImageFolder::open(dir.path()).unwrap();
        for i in 0..2 {
            let err = ds.get(i).unwrap_err();
            assert!(matches!(err, DataError::Decode { .. }), "{err}");
        }
    }
}
