//! Targets of crosskd-data: IDX (Fashion-MNIST) and the PNG/JPEG readers of the real-data
//! sources (NYUv2 depth maps, Cityscapes label maps, pix2pix and ImageFolder images).

use std::io::Write;
use std::path::Path;

use crosskd_data::sources::fashion_mnist::read_idx;
use crosskd_data::{
    Cityscapes, Dataset, Direction, FashionMnist, FashionMnistOptions, ImageFolder, NyuDepth,
    PairedFolder,
};

use super::{put, refused, Target};

/// An IDX file: magic, big-endian dimensions, bytes.
pub(crate) fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

fn png(image: impl Into<image::DynamicImage>, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    // Encoding a small in-memory image cannot fail.
    let _ = image.into().write_to(&mut out, format);
    out.into_inner()
}

fn rgb(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 40) as u8, (y * 60) as u8, 7]))
}

/// Fashion-MNIST images through [`FashionMnist::from_files`] and every sample's `get`, plus the
/// one-dimensional reading of the same bytes (the labels' layout).
pub(crate) struct Idx;

const IDX_COUNT: u32 = 4;

impl Target for Idx {
    fn name(&self) -> &'static str {
        "idx"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let pixels: Vec<u8> = (0..IDX_COUNT * 5 * 4).map(|i| (i * 13) as u8).collect();
        let images = idx_bytes(0x803, &[IDX_COUNT, 5, 4], &pixels);
        let labels = idx_bytes(0x801, &[IDX_COUNT], &[3, 0, 9, 1]);
        vec![gzip(&images), images, labels.clone(), gzip(&labels)]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\x00\x00\x08\x03",
            b"\x00\x00\x08\x01",
            b"\x1f\x8b",
            b"\x00\x00\x00\x00",
        ]
    }

    fn prepare(&mut self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(
            dir.join("labels"),
            idx_bytes(0x801, &[IDX_COUNT], &[3, 0, 9, 1]),
        )
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        let path = put(dir, "input", input)?;
        // The same bytes as a labels file (one dimension) and as an images file (three, paired
        // with four valid labels); accepted when either reading accepts them.
        let as_labels = read_idx(&path, 1).map(|_| ()).map_err(refused);
        let as_images = (|| -> Result<(), String> {
            for options in [
                FashionMnistOptions::default(),
                FashionMnistOptions {
                    rgb: true,
                    size: Some(7),
                },
            ] {
                let ds = FashionMnist::from_files(&path, &dir.join("labels"), options)
                    .map_err(refused)?;
                for i in 0..ds.len().min(8) {
                    ds.get(i).map_err(refused)?;
                }
            }
            Ok(())
        })();
        as_images.or_else(|images_error| as_labels.map_err(|_| images_error))
    }
}

/// A NYUv2 depth map (16-bit grey PNG) paired with a valid RGB image, through `get`.
pub(crate) struct PngDepth;

impl Target for PngDepth {
    fn name(&self) -> &'static str {
        "png-depth"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let depth = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(6, 4, |x, y| {
            image::Luma([(x * 1000 + y * 7) as u16])
        });
        vec![png(depth, image::ImageFormat::Png)]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        PNG_TOKENS
    }

    fn prepare(&mut self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("rgb.png"), png(rgb(6, 4), image::ImageFormat::Png))?;
        std::fs::write(dir.join("list.txt"), "rgb.png depth.png 518.8\n")
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        put(dir, "depth.png", input)?;
        let ds = NyuDepth::open(dir, &dir.join("list.txt")).map_err(refused)?;
        ds.get(0).map(|_| ()).map_err(refused)
    }
}

/// Chunk names and the signature, for the PNG targets.
const PNG_TOKENS: &[&[u8]] = &[
    b"\x89PNG\r\n\x1a\n",
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"PLTE",
    b"tRNS",
    b"acTL",
    b"fcTL",
    b"\xff\xd8\xff",
];

/// A Cityscapes label-id map (8-bit grey PNG) paired with a valid image, through `get`.
pub(crate) struct PngLabels;

impl Target for PngLabels {
    fn name(&self) -> &'static str {
        "png-labels"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let ids = image::GrayImage::from_fn(6, 4, |x, y| image::Luma([((x + y * 6) % 34) as u8]));
        vec![png(ids, image::ImageFormat::Png)]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        PNG_TOKENS
    }

    fn prepare(&mut self, dir: &Path) -> std::io::Result<()> {
        let image = dir.join("leftImg8bit/val/c/c_0_leftImg8bit.png");
        std::fs::create_dir_all(image.parent().unwrap_or(dir))?;
        std::fs::write(image, png(rgb(6, 4), image::ImageFormat::Png))
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        put(dir, "gtFine/val/c/c_0_gtFine_labelIds.png", input)?;
        let ds = Cityscapes::open(dir, "val").map_err(refused)?;
        ds.get(0).map(|_| ()).map_err(refused)
    }
}

/// An RGB image file (PNG or JPEG) through pix2pix (split in halves) and ImageFolder (resized).
pub(crate) struct PngImage;

impl Target for PngImage {
    fn name(&self) -> &'static str {
        "png-image"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let grey16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(4, 3, |x, _| {
            image::Luma([x as u16 * 9000])
        });
        vec![
            png(rgb(8, 4), image::ImageFormat::Png),
            png(rgb(8, 8), image::ImageFormat::Jpeg),
            png(grey16, image::ImageFormat::Png),
        ]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        PNG_TOKENS
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        put(dir, "cls/a.png", input)?;
        let pairs = PairedFolder::open(&dir.join("cls"), Direction::AToB).map_err(refused)?;
        let paired = pairs.get(0).map(|_| ());
        let folder = ImageFolder::open(dir).map_err(refused)?.with_size(5, 3);
        folder.get(0).map_err(refused)?;
        paired.map_err(refused)
    }
}
