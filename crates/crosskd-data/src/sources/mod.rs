//! Readers for data sets on disk, and the file helpers they share (every failure names the file).

pub mod cityscapes;
pub mod fashion_mnist;
pub mod image_folder;
pub mod nyu;
pub mod pix2pix;

use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::{DataError, Grid, Image, Result};

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Decodes an image file (PNG or JPEG).
pub(crate) fn decode(path: &Path) -> Result<DynamicImage> {
    let bytes = read(path)?;
    image::load_from_memory(&bytes).map_err(|e| DataError::Decode {
        path: path.to_path_buf(),
        expected: "a PNG or JPEG image".into(),
        message: e.to_string(),
    })
}

/// Loads an image as 3-channel floats in [0, 1] (grey and 16-bit images are converted).
pub(crate) fn load_rgb(path: &Path) -> Result<Image> {
    let rgb = decode(path)?.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(Image::from_interleaved_u8(
        3,
        h as usize,
        w as usize,
        rgb.as_raw(),
    ))
}

/// Loads a single-channel 16-bit PNG (depth maps); any other pixel format is an error.
pub(crate) fn load_grey16(path: &Path) -> Result<Grid<u16>> {
    match decode(path)? {
        DynamicImage::ImageLuma16(img) => {
            let (w, h) = img.dimensions();
            Ok(Grid {
                height: h as usize,
                width: w as usize,
                data: img.into_raw(),
            })
        }
        other => Err(DataError::invalid(
            path,
            "a single-channel 16-bit PNG (depth in millimetres)",
            format!("{:?}", other.color()),
        )),
    }
}

/// Loads a single-channel 8-bit PNG (label maps); any other pixel format is an error.
pub(crate) fn load_grey8(path: &Path) -> Result<Grid<u8>> {
    match decode(path)? {
        DynamicImage::ImageLuma8(img) => {
            let (w, h) = img.dimensions();
            Ok(Grid {
                height: h as usize,
                width: w as usize,
                data: img.into_raw(),
            })
        }
        other => Err(DataError::invalid(
            path,
            "a single-channel 8-bit PNG (label ids)",
            format!("{:?}", other.color()),
        )),
    }
}

/// The entries of a directory, sorted by name.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        out.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// True for file names ending in .png, .jpg or .jpeg (any case).
pub(crate) fn is_image_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Errors unless `image` and a target of `size` match; names both files.
pub(crate) fn check_same_size(
    image_path: &Path,
    image: (usize, usize),
    target_path: &Path,
    size: (usize, usize),
) -> Result<()> {
    if image == size {
        Ok(())
    } else {
        Err(DataError::SizeMismatch {
            what: format!("{} vs {}", image_path.display(), target_path.display()),
            expected: format!("target of the image's size {image:?} (height, width)"),
            found: format!("{size:?}"),
        })
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Tiny image files written by the tests.

    use std::path::Path;

    /// Writes an RGB PNG whose pixel (x, y) is `(x * 20, y * 20, base)`.
    pub fn rgb_png(path: &Path, w: u32, h: u32, base: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 20) as u8, (y * 20) as u8, base])
        });
        img.save(path).unwrap();
    }

    /// Writes a 16-bit grey PNG with the given values (row-major).
    pub fn grey16_png(path: &Path, w: u32, h: u32, values: &[u16]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(w, h, values.to_vec())
            .unwrap();
        img.save(path).unwrap();
    }

    /// Writes an 8-bit grey PNG with the given values (row-major).
    pub fn grey8_png(path: &Path, w: u32, h: u32, values: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::GrayImage::from_raw(w, h, values.to_vec()).unwrap();
        img.save(path).unwrap();
    }

    /// Writes the first `keep` bytes of a valid PNG (a truncated file).
    pub fn truncated_png(path: &Path, keep: usize) {
        rgb_png(path, 8, 8, 1);
        let bytes = std::fs::read(path).unwrap();
        std::fs::write(path, &bytes[..keep.min(bytes.len())]).unwrap();
    }
}
