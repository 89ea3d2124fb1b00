//! pix2pix paired folders: each file holds the two images side by side (A left, B right), as in
//! the facades/maps/cityscapes releases of pix2pix.

use std::path::{Path, PathBuf};

use crate::dataset::check_index;
use crate::sources::{is_image_file, load_rgb, sorted_entries};
use crate::{DataError, Dataset, Image, Result, Sample, Target};

/// Which half is the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Left half → right half.
    AToB,
    /// Right half → left half.
    BToA,
}

/// Side-by-side image pairs in one folder (sorted by file name).
pub struct PairedFolder {
    files: Vec<PathBuf>,
    direction: Direction,
}

impl PairedFolder {
    /// Lists the PNG/JPEG files of `dir`.
    pub fn open(dir: &Path, direction: Direction) -> Result<Self> {
        let files: Vec<PathBuf> = sorted_entries(dir)?
            .into_iter()
            .filter(|p| is_image_file(p))
            .collect();
        Ok(Self { files, direction })
    }

    /// The files, in sample order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// Columns `[from, from + width)` of `image`.
fn columns(image: &Image, from: usize, width: usize) -> Image {
    let mut data = Vec::with_capacity(image.channels * image.height * width);
    for c in 0..image.channels {
        for y in 0..image.height {
            let row = (c * image.height + y) * image.width;
            data.extend_from_slice(&image.data[row + from..row + from + width]);
        }
    }
    Image {
        channels: image.channels,
        height: image.height,
        width,
        data,
    }
}

impl Dataset for PairedFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.files.len())?;
        let path = &self.files[index];
        let both = load_rgb(path)?;
        if both.width % 2 != 0 || both.width == 0 {
            return Err(DataError::invalid(
                path,
                "an even width (two images of equal size side by side)",
                format!("width {}", both.width),
            ));
        }
        let half = both.width / 2;
        let (a, b) = (columns(&both, 0, half), columns(&both, half, half));
        let (image, target) = match self.direction {
            Direction::AToB => (a, b),
            Direction::BToA => (b, a),
        };
        Ok(Sample {
            image,
            target: Target::Translation { target },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fixtures::{rgb_png, truncated_png};

    #[test]
    fn splits_in_the_middle_in_both_directions() {
        let dir = tempfile::tempdir().unwrap();
        rgb_png(&dir.path().join("1.png"), 6, 2, 5);
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        let ab = PairedFolder::open(dir.path(), Direction::AToB).unwrap();
        assert_eq!(ab.len(), 1);
        let s = ab.get(0).unwrap();
        let Target::Translation { target } = &s.target else {
            panic!("translation target expected")
        };
        // Red channel is 20 * x: A holds columns 0..3, B columns 3..6.
        assert_eq!(s.image.size(), (2, 3));
        assert_eq!(s.image.data[..3], [0.0, 20.0 / 255.0, 40.0 / 255.0]);
        assert_eq!(
            target.data[..3],
            [60.0 / 255.0, 80.0 / 255.0, 100.0 / 255.0]
        );
        let ba = PairedFolder::open(dir.path(), Direction::BToA)
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(ba.image, *target);
    }

    #[test]
    fn odd_width_and_truncated_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        rgb_png(&dir.path().join("a.png"), 5, 2, 5);
        truncated_png(&dir.path().join("b.png"), 30);
        let ds = PairedFolder::open(dir.path(), Direction::AToB).unwrap();
        let err = ds.get(0).unwrap_err();
        assert!(
            err.to_string().contains("a.png") && err.to_string().contains("width 5"),
            "{err}"
        );
        let err = ds.get(1).unwrap_err();
        assert!(
            matches!(&err, DataError::Decode { path, .. } if path.ends_with("b.png")),
            "{err}"
        );
        assert!(PairedFolder::open(&dir.path().join("missing"), Direction::AToB).is_err());
    }
}
