//! NYUv2 depth in the common folder layout: RGB images plus 16-bit PNG depth maps in
//! millimetres (0 = no measurement), listed by a text file of `rgb_path depth_path` lines
//! relative to a root folder (extra columns, e.g. a focal length, are ignored).

use std::path::{Path, PathBuf};

use crate::dataset::check_index;
use crate::sources::{check_same_size, load_grey16, load_rgb, read};
use crate::{DataError, Dataset, Grid, Result, Sample, Target};

/// NYUv2 pairs listed in a file list.
pub struct NyuDepth {
    pairs: Vec<(PathBuf, PathBuf)>,
    depth_scale: f32,
}

impl NyuDepth {
    /// Depth PNG units per metre (millimetres).
    pub const MILLIMETRES_PER_METRE: f32 = 1000.0;

    /// Reads the file list `list` (paths relative to `root`). Blank lines and `#` comments are
    /// skipped; a line with fewer than two paths, or naming a file that does not exist, is an
    /// error naming the line.
    pub fn open(root: &Path, list: &Path) -> Result<Self> {
        let text = String::from_utf8(read(list)?).map_err(|e| DataError::Decode {
            path: list.to_path_buf(),
            expected: "a UTF-8 file list".into(),
            message: e.to_string(),
        })?;
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next()) {
                (Some(rgb), Some(depth)) => {
                    let pair = (root.join(rgb), root.join(depth));
                    // Checked here, not at the first batch that needs it: a long run should not
                    // fail hours in on a file the list names but the folder lacks.
                    for path in [&pair.0, &pair.1] {
                        if !path.is_file() {
                            return Err(DataError::io(
                                path,
                                std::io::Error::new(
                                    std::io::ErrorKind::NotFound,
                                    format!("listed on line {} of {}", n + 1, list.display()),
                                ),
                            ));
                        }
                    }
                    pairs.push(pair);
                }
                _ => {
                    return Err(DataError::invalid(
                        list,
                        format!("`rgb_path depth_path` on line {}", n + 1),
                        format!("{line:?}"),
                    ))
                }
            }
        }
        Ok(Self {
            pairs,
            depth_scale: Self::MILLIMETRES_PER_METRE,
        })
    }

    /// Uses `units_per_metre` instead of millimetres (e.g. 5000 for TUM-style depth).
    pub fn with_depth_scale(mut self, units_per_metre: f32) -> Self {
        self.depth_scale = units_per_metre;
        self
    }

    /// The (RGB, depth) file pairs.
    pub fn pairs(&self) -> &[(PathBuf, PathBuf)] {
        &self.pairs
    }
}

impl Dataset for NyuDepth {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.pairs.len())?;
        let (rgb_path, depth_path) = &self.pairs[index];
        let image = load_rgb(rgb_path)?;
        let raw = load_grey16(depth_path)?;
        check_same_size(rgb_path, image.size(), depth_path, raw.size())?;
        let depth = raw
            .data
            .iter()
            .map(|&v| f32::from(v) / self.depth_scale)
            .collect();
        let valid = raw.data.iter().map(|&v| v > 0).collect();
        Ok(Sample {
            image,
            target: Target::Depth {
                depth: Grid {
                    height: raw.height,
                    width: raw.width,
                    data: depth,
                },
                valid: Grid {
                    height: raw.height,
                    width: raw.width,
                    data: valid,
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fixtures::{grey16_png, grey8_png, rgb_png, truncated_png};

    fn fixture(root: &Path) -> PathBuf {
        rgb_png(&root.join("rgb/0.png"), 3, 2, 0);
        grey16_png(
            &root.join("depth/0.png"),
            3,
            2,
            &[0, 1000, 2500, 65535, 1, 300],
        );
        rgb_png(&root.join("rgb/1.png"), 3, 2, 9);
        grey8_png(&root.join("depth/1.png"), 3, 2, &[1; 6]);
        rgb_png(&root.join("rgb/2.png"), 4, 2, 9);
        grey16_png(&root.join("depth/2.png"), 3, 2, &[1; 6]);
        truncated_png(&root.join("rgb/3.png"), 40);
        grey16_png(&root.join("depth/3.png"), 8, 8, &[1; 64]);
        let list = root.join("list.txt");
        std::fs::write(
            &list,
            "# rgb depth focal\nrgb/0.png depth/0.png 518.8\n\nrgb/1.png depth/1.png\nrgb/2.png depth/2.png\nrgb/3.png depth/3.png\n",
        )
        .unwrap();
        list
    }

    #[test]
    fn reads_millimetres_as_metres_with_validity() {
        let dir = tempfile::tempdir().unwrap();
        let ds = NyuDepth::open(dir.path(), &fixture(dir.path())).unwrap();
        assert_eq!(ds.len(), 4);
        let s = ds.get(0).unwrap();
        assert_eq!(s.image.size(), (2, 3));
        let Target::Depth { depth, valid } = s.target else {
            panic!("depth target expected")
        };
        assert_eq!(depth.data, vec![0.0, 1.0, 2.5, 65.535, 0.001, 0.3]);
        assert_eq!(valid.data, vec![false, true, true, true, true, true]);
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ds = NyuDepth::open(dir.path(), &fixture(dir.path())).unwrap();
        // 8-bit depth PNG: wrong bit depth.
        let err = ds.get(1).unwrap_err();
        assert!(
            matches!(&err, DataError::Invalid { path, .. } if path.ends_with("depth/1.png")),
            "{err}"
        );
        assert!(err.to_string().contains("16-bit"), "{err}");
        // Image 2x4 vs depth 2x3.
        let err = ds.get(2).unwrap_err();
        assert!(matches!(err, DataError::SizeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("rgb/2.png"));
        // Truncated RGB.
        let err = ds.get(3).unwrap_err();
        assert!(
            matches!(&err, DataError::Decode { path, .. } if path.ends_with("rgb/3.png")),
            "{err}"
        );
        // A listed file that is missing fails at open, naming the file and the line.
        let missing = dir.path().join("missing.txt");
        std::fs::write(&missing, "rgb/0.png depth/0.png\nrgb/0.png depth/4.png\n").unwrap();
        let err = NyuDepth::open(dir.path(), &missing).err().unwrap();
        assert!(
            matches!(&err, DataError::Io { path, .. } if path.ends_with("depth/4.png")),
            "{err}"
        );
        assert!(err.to_string().contains("line 2"), "{err}");
        // Bad list line.
        let list = dir.path().join("bad.txt");
        std::fs::write(&list, "rgb/0.png\n").unwrap();
        let err = NyuDepth::open(dir.path(), &list).err().unwrap();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
