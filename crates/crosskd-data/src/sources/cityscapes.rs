//! Cityscapes semantic segmentation: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` with
//! `gtFine/<split>/<city>/*_gtFine_labelIds.png`, label ids mapped to the 19 training classes
//! (everything else → [`IGNORE_CLASS`]).

use std::path::{Path, PathBuf};

use crate::dataset::check_index;
use crate::sources::{check_same_size, load_grey8, load_rgb, sorted_entries};
use crate::{DataError, Dataset, Grid, Result, Sample, Target, IGNORE_CLASS};

/// Names of the 19 Cityscapes training classes, indexed by train id.
pub const CITYSCAPES_TRAIN_CLASSES: [&str; 19] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
];

const I: u8 = IGNORE_CLASS as u8;

/// Train id of each Cityscapes label id 0..=33 (from the Cityscapes label table).
pub const LABEL_ID_TO_TRAIN_ID: [u8; 34] = [
    I, I, I, I, I, I, I, // 0 unlabeled .. 6 ground
    0, 1, // 7 road, 8 sidewalk
    I, I, // 9 parking, 10 rail track
    2, 3, 4, // 11 building, 12 wall, 13 fence
    I, I, I, // 14 guard rail, 15 bridge, 16 tunnel
    5, I, // 17 pole, 18 polegroup
    6, 7, 8, 9, 10, 11, 12, 13, 14, 15, // 19 traffic light .. 28 bus
    I, I, // 29 caravan, 30 trailer
    16, 17, 18, // 31 train, 32 motorcycle, 33 bicycle
];

/// Cityscapes fine annotations of one split (`train`, `val` or `test`).
pub struct Cityscapes {
    pairs: Vec<(PathBuf, PathBuf)>,
}

impl Cityscapes {
    /// Pairs every `*_leftImg8bit.png` of `root/leftImg8bit/<split>` with its label file; a
    /// missing label file is an error naming it.
    pub fn open(root: &Path, split: &str) -> Result<Self> {
        let images_root = root.join("leftImg8bit").join(split);
        let labels_root = root.join("gtFine").join(split);
        let mut pairs = Vec::new();
        for city in sorted_entries(&images_root)?
            .into_iter()
            .filter(|p| p.is_dir())
        {
            let city_name = city.file_name().unwrap_or_default().to_owned();
            for image in sorted_entries(&city)? {
                let name = image
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let Some(stem) = name.strip_suffix("_leftImg8bit.png") else {
                    continue;
                };
                let label = labels_root
                    .join(&city_name)
                    .join(format!("{stem}_gtFine_labelIds.png"));
                if !label.is_file() {
                    return Err(DataError::io(
                        label,
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "label file for an image is missing",
                        ),
                    ));
                }
                pairs.push((image, label));
            }
        }
        Ok(Self { pairs })
    }

    /// The (image, label) file pairs.
    pub fn pairs(&self) -> &[(PathBuf, PathBuf)] {
        &self.pairs
    }
}

impl Dataset for Cityscapes {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.pairs.len())?;
        let (image_path, label_path) = &self.pairs[index];
        let image = load_rgb(image_path)?;
        let ids = load_grey8(label_path)?;
        check_same_size(image_path, image.size(), label_path, ids.size())?;
        let mut classes = Vec::with_capacity(ids.data.len());
        for (p, &id) in ids.data.iter().enumerate() {
            let Some(&train) = LABEL_ID_TO_TRAIN_ID.get(id as usize) else {
                return Err(DataError::invalid(
                    label_path,
                    "Cityscapes label ids 0..=33",
                    format!(
                        "id {id} at pixel (y {}, x {})",
                        p / ids.width,
                        p % ids.width
                    ),
                ));
            };
            classes.push(u32::from(train));
        }
        Ok(Sample {
            image,
            target: Target::Segmentation {
                classes: Grid {
                    height: ids.height,
                    width: ids.width,
                    data: classes,
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fixtures::{grey16_png, grey8_png, rgb_png};

    fn pair(root: &Path, city: &str, stem: &str, w: u32, ids: &[u8]) {
        rgb_png(
            &root.join(format!("leftImg8bit/val/{city}/{stem}_leftImg8bit.png")),
            w,
            1,
            0,
        );
        grey8_png(
            &root.join(format!("gtFine/val/{city}/{stem}_gtFine_labelIds.png")),
            ids.len() as u32,
            1,
            ids,
        );
    }

    #[test]
    fn label_ids_map_to_train_ids() {
        let dir = tempfile::tempdir().unwrap();
        pair(
            dir.path(),
            "lindau",
            "lindau_000000_000019",
            5,
            &[7, 26, 0, 33, 23],
        );
        pair(
            dir.path(),
            "frankfurt",
            "frankfurt_000000_000294",
            2,
            &[11, 24],
        );
        let ds = Cityscapes::open(dir.path(), "val").unwrap();
        assert_eq!(ds.len(), 2);
        // Sorted by city: frankfurt first.
        let Target::Segmentation { classes } = ds.get(1).unwrap().target else {
            panic!("segmentation expected")
        };
        // road 0, car 13, unlabeled ignored, bicycle 18, sky 10 (Cityscapes label table).
        assert_eq!(classes.data, vec![0, 13, 255, 18, 10]);
        assert_eq!(CITYSCAPES_TRAIN_CLASSES[13], "car");
        let train_ids: Vec<u8> = LABEL_ID_TO_TRAIN_ID
            .iter()
            .copied()
            .filter(|&t| t != I)
            .collect();
        assert_eq!(train_ids, (0..19).collect::<Vec<u8>>());
    }

    #[test]
    fn bad_labels_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        pair(dir.path(), "a", "a_0", 2, &[7, 34]);
        pair(dir.path(), "b", "b_0", 3, &[7, 7]);
        rgb_png(
            &dir.path().join("leftImg8bit/val/c/c_0_leftImg8bit.png"),
            2,
            1,
            0,
        );
        grey16_png(
            &dir.path().join("gtFine/val/c/c_0_gtFine_labelIds.png"),
            2,
            1,
            &[7, 7],
        );
        let ds = Cityscapes::open(dir.path(), "val").unwrap();
        let err = ds.get(0).unwrap_err();
        assert!(
            err.to_string().contains("id 34") && err.to_string().contains("a_0_gtFine"),
            "{err}"
        );
        let err = ds.get(1).unwrap_err();
        assert!(matches!(err, DataError::SizeMismatch { .. }), "{err}");
        let err = ds.get(2).unwrap_err();
        assert!(err.to_string().contains("8-bit"), "{err}");
        rgb_png(
            &dir.path().join("leftImg8bit/val/d/d_0_leftImg8bit.png"),
            2,
            1,
            0,
        );
        let err = Cityscapes::open(dir.path(), "val").err().unwrap();
        assert!(err.to_string().contains("d_0_gtFine_labelIds.png"), "{err}");
    }
}
