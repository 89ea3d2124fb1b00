//! Fashion-MNIST from IDX files (gzipped or not), e.g. the Debian package
//! `dataset-fashion-mnist` under [`FashionMnist::DEFAULT_DIR`].
//!
//! IDX layout: magic `0x0000_08NN` (0x08 = unsigned bytes, NN = number of dimensions), then NN
//! big-endian u32 dimensions, then the bytes. Images are `0x00000803` (count, rows, cols), labels
//! `0x00000801` (count).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::dataset::check_index;
use crate::sources::read;
use crate::{DataError, Dataset, Image, Result, Sample, Target};

/// Names of the ten Fashion-MNIST classes, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Which half of the data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// 60,000 training images (`train-*`).
    Train,
    /// 10,000 test images (`t10k-*`).
    Test,
}

/// How samples are presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FashionMnistOptions {
    /// Repeat the grey channel three times, so models built for RGB input read it (default false).
    pub rgb: bool,
    /// Upsample to `size × size` by pixel replication / nearest neighbour (default: 28 × 28).
    pub size: Option<usize>,
}

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// `product(dims)` bytes.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (gunzipping when it starts with the gzip magic) and
/// checks it has `expected_dims` dimensions and exactly the bytes they announce.
pub fn read_idx(path: &Path, expected_dims: usize) -> Result<IdxArray> {
    let raw = read(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::Decode {
                path: path.to_path_buf(),
                expected: "a complete gzip stream".into(),
                message: e.to_string(),
            })?;
        out
    } else {
        raw
    };
    let expected_magic = 0x0800 + expected_dims as u32;
    if bytes.len() < 4 {
        return Err(DataError::invalid(
            path,
            format!("an IDX header (magic 0x{expected_magic:08x})"),
            format!("{} bytes", bytes.len()),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != expected_magic {
        return Err(DataError::invalid(
            path,
            format!("IDX magic 0x{expected_magic:08x} (u8 data, {expected_dims} dimensions)"),
            format!("0x{magic:08x}"),
        ));
    }
    let header = 4 + 4 * expected_dims;
    if bytes.len() < header {
        return Err(DataError::invalid(
            path,
            format!("{expected_dims} dimensions in a {header}-byte header"),
            format!("{} bytes", bytes.len()),
        ));
    }
    let dims: Vec<usize> = (0..expected_dims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected_len = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let found = bytes.len() - header;
    if expected_len != Some(found) {
        return Err(DataError::invalid(
            path,
            format!("{dims:?} = {expected_len:?} data bytes after the header"),
            format!("{found} bytes"),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Fashion-MNIST held in memory (images as bytes, 47 MB for the training split).
pub struct FashionMnist {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    options: FashionMnistOptions,
}

/// `dir/name.gz` when it exists, else `dir/name`.
fn find(dir: &Path, name: &str) -> PathBuf {
    let gz = dir.join(format!("{name}.gz"));
    if gz.exists() {
        gz
    } else {
        dir.join(name)
    }
}

impl FashionMnist {
    /// Where Debian's `dataset-fashion-mnist` installs the files.
    pub const DEFAULT_DIR: &'static str = "/usr/share/datasets/fashion-mnist";

    /// Loads `split` from `dir` (files `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`).
    pub fn load(dir: &Path, split: Split, options: FashionMnistOptions) -> Result<Self> {
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        Self::from_files(
            &find(dir, &format!("{prefix}-images-idx3-ubyte")),
            &find(dir, &format!("{prefix}-labels-idx1-ubyte")),
            options,
        )
    }

    /// Loads a pair of IDX files and checks them against each other (counts, label range).
    pub fn from_files(images: &Path, labels: &Path, options: FashionMnistOptions) -> Result<Self> {
        if options.size == Some(0) {
            return Err(DataError::Config(
                "Fashion-MNIST size must be positive".into(),
            ));
        }
        let img = read_idx(images, 3)?;
        let lab = read_idx(labels, 1)?;
        if img.dims[0] != lab.dims[0] {
            return Err(DataError::invalid(
                labels,
                format!(
                    "{} labels, one per image in {}",
                    img.dims[0],
                    images.display()
                ),
                format!("{} labels", lab.dims[0]),
            ));
        }
        // Empty images would leave `get` nothing to sample from when upsampling.
        if img.dims[1] == 0 || img.dims[2] == 0 {
            return Err(DataError::invalid(
                images,
                "images of at least 1 x 1 pixels",
                format!("{} x {} (rows x cols)", img.dims[1], img.dims[2]),
            ));
        }
        if let Some(bad) = lab.data.iter().position(|&l| l >= 10) {
            return Err(DataError::invalid(
                labels,
                "labels 0..=9 (the Fashion-MNIST class table)",
                format!("label {} at position {bad}", lab.data[bad]),
            ));
        }
        Ok(Self {
            rows: img.dims[1],
            cols: img.dims[2],
            images: img.data,
            labels: lab.data,
            options,
        })
    }

    /// The label of sample `index` without building the image.
    pub fn label(&self, index: usize) -> Option<u8> {
        self.labels.get(index).copied()
    }
}

impl Dataset for FashionMnist {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.labels.len())?;
        let plane = self.rows * self.cols;
        let pixels = &self.images[index * plane..(index + 1) * plane];
        let (h, w) = match self.options.size {
            Some(s) => (s, s),
            None => (self.rows, self.cols),
        };
        let mut data = Vec::with_capacity(h * w);
        for y in 0..h {
            let sy = y * self.rows / h;
            for x in 0..w {
                let sx = x * self.cols / w;
                data.push(f32::from(pixels[sy * self.cols + sx]) / 255.0);
            }
        }
        let image = Image {
            channels: 1,
            height: h,
            width: w,
            data,
        };
        Ok(Sample {
            image: if self.options.rgb {
                image.to_rgb()
            } else {
                image
            },
            target: Target::Class(u32::from(self.labels[index])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// Three 2x2 images with pixel values 10 * image + pixel, labels 7, 0, 9.
    fn write_fixture(dir: &Path, gzipped: bool) {
        let pixels: Vec<u8> = (0..3u8)
            .flat_map(|i| (0..4u8).map(move |p| 10 * i + p))
            .collect();
        let images = idx_bytes(0x803, &[3, 2, 2], &pixels);
        let labels = idx_bytes(0x801, &[3], &[7, 0, 9]);
        let (images, labels, ext) = if gzipped {
            (gzip(&images), gzip(&labels), ".gz")
        } else {
            (images, labels, "")
        };
        std::fs::write(dir.join(format!("t10k-images-idx3-ubyte{ext}")), images).unwrap();
        std::fs::write(dir.join(format!("t10k-labels-idx1-ubyte{ext}")), labels).unwrap();
    }

    #[test]
    fn reads_plain_and_gzipped_idx() {
        for gz in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_fixture(dir.path(), gz);
            let ds = FashionMnist::load(dir.path(), Split::Test, FashionMnistOptions::default())
                .unwrap();
            assert_eq!(ds.len(), 3);
            let s = ds.get(1).unwrap();
            assert_eq!(s.target, Target::Class(0));
            assert_eq!(s.image.size(), (2, 2));
            assert_eq!(
                s.image.data,
                vec![10.0 / 255.0, 11.0 / 255.0, 12.0 / 255.0, 13.0 / 255.0]
            );
        }
    }

    #[test]
    fn upsamples_and_replicates_channels() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), false);
        let options = FashionMnistOptions {
            rgb: true,
            size: Some(4),
        };
        let s = FashionMnist::load(dir.path(), Split::Test, options)
            .unwrap()
            .get(2)
            .unwrap();
        assert_eq!((s.image.channels, s.image.height, s.image.width), (3, 4, 4));
        // Pixel replication: output (y, x) = source (y / 2, x / 2); all channels equal.
        assert_eq!(s.image.data[5], 20.0 / 255.0);
        assert_eq!(s.image.data[2], 21.0 / 255.0);
        assert_eq!(s.image.data[15], 23.0 / 255.0);
        assert_eq!(s.image.channel(0), s.image.channel(2));
    }

    #[test]
    fn counts_magic_and_truncation_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let images = p.join("i");
        let labels = p.join("l");
        let opts = FashionMnistOptions::default();
        std::fs::write(&images, idx_bytes(0x803, &[2, 2, 2], &[0; 8])).unwrap();
        // Counts disagree: 2 images, 3 labels.
        std::fs::write(&labels, idx_bytes(0x801, &[3], &[0, 1, 2])).unwrap();
        let err = FashionMnist::from_files(&images, &labels, opts)
            .err()
            .unwrap();
        assert!(
            matches!(&err, DataError::Invalid { path, .. } if path == &labels),
            "{err}"
        );
        assert!(err.to_string().contains("2 labels"), "{err}");
        // Label outside the class table.
        std::fs::write(&labels, idx_bytes(0x801, &[2], &[0, 10])).unwrap();
        let err = FashionMnist::from_files(&images, &labels, opts)
            .err()
            .unwrap();
        assert!(err.to_string().contains("label 10"), "{err}");
        // Images and labels swapped: wrong magic.
        std::fs::write(&labels, idx_bytes(0x801, &[2], &[0, 1])).unwrap();
        let err = FashionMnist::from_files(&labels, &images, opts)
            .err()
            .unwrap();
        assert!(err.to_string().contains("magic 0x00000803"), "{err}");
        // Truncated data: header announces 8 bytes, 5 present.
        std::fs::write(&images, idx_bytes(0x803, &[2, 2, 2], &[0; 5])).unwrap();
        let err = FashionMnist::from_files(&images, &labels, opts)
            .err()
            .unwrap();
        assert!(err.to_string().contains("found 5 bytes"), "{err}");
        // Truncated gzip stream.
        let gz = gzip(&idx_bytes(0x803, &[2, 2, 2], &[0; 8]));
        std::fs::write(&images, &gz[..gz.len() / 2]).unwrap();
        let err = FashionMnist::from_files(&images, &labels, opts)
            .err()
            .unwrap();
        assert!(matches!(err, DataError::Decode { .. }), "{err}");
        // Missing file.
        let err = FashionMnist::from_files(&p.join("nope"), &labels, opts)
            .err()
            .unwrap();
        assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("nope"));
    }

    /// Images of 0 columns passed the size check (0
    /// bytes expected, 0 found) and `get` with `size` indexed an empty pixel slice (a panic).
    #[test]
    fn empty_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("i");
        let labels = dir.path().join("l");
        std::fs::write(&images, idx_bytes(0x803, &[2, 5, 0], &[])).unwrap();
        std::fs::write(&labels, idx_bytes(0x801, &[2], &[0, 1])).unwrap();
        let options = FashionMnistOptions {
            rgb: false,
            size: Some(7),
        };
        let err = FashionMnist::from_files(&images, &labels, options)
            .err()
            .unwrap();
        assert!(err.to_string().contains("5 x 0 (rows x cols)"), "{err}");
    }

    /// Uses the real data set when `dataset-fashion-mnist` is installed (skips otherwise).
    #[test]
    fn debian_package_when_installed() {
        let dir = Path::new(FashionMnist::DEFAULT_DIR);
        if !dir.join("t10k-images-idx3-ubyte.gz").exists() {
            eprintln!("skipped: {} not installed", dir.display());
            return;
        }
        let ds = FashionMnist::load(dir, Split::Test, FashionMnistOptions::default()).unwrap();
        assert_eq!(ds.len(), 10_000);
        let s = ds.get(0).unwrap();
        assert_eq!(s.image.size(), (28, 28));
        let mut counts = [0usize; 10];
        for i in 0..ds.len() {
            counts[ds.label(i).unwrap() as usize] += 1;
        }
        // The test split is balanced: 1,000 images per class.
        assert!(counts.iter().all(|&c| c == 1000), "{counts:?}");
    }
}
