//! Paired augmentation: geometric changes (random crop, resize, horizontal flip) applied to the
//! image and a dense target alike; photometric changes (colour jitter) to the image only.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, Grid, Image, Result, Sample, Target};

/// Augmentation settings (all off by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Size `[height, width]` every sample is resized to after cropping (default: keep).
    pub output_size: Option<[usize; 2]>,
    /// Crop side as a fraction of the image side, drawn from `[lo, hi]`, at a random position
    /// (default `[1, 1]`: no crop).
    pub crop_scale: [f32; 2],
    /// Flip left–right with probability 1/2 (default false).
    pub horizontal_flip: bool,
    /// Brightness factor drawn from `[1 - b, 1 + b]`: `x ← b x` (default 0).
    pub brightness: f32,
    /// Contrast factor `c` from `[1 - c, 1 + c]`: `x ← m + c (x - m)`, `m` the mean grey (default 0).
    pub contrast: f32,
    /// Saturation factor `s` from `[1 - s, 1 + s]`: `x ← g + s (x - g)`, `g` the pixel's grey (default 0).
    pub saturation: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            output_size: None,
            crop_scale: [1.0, 1.0],
            horizontal_flip: false,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }
}

impl AugmentConfig {
    /// Checks ranges (crop fractions in (0, 1], jitter amounts in [0, 1], non-zero sizes).
    pub fn validate(&self) -> Result<()> {
        let [lo, hi] = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(DataError::Config(format!(
                "augment crop_scale must satisfy 0 < lo <= hi <= 1, found [{lo}, {hi}]"
            )));
        }
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(DataError::Config(format!(
                    "augment {name} must be in [0, 1], found {v}"
                )));
            }
        }
        if let Some([h, w]) = self.output_size {
            if h == 0 || w == 0 {
                return Err(DataError::Config(format!(
                    "augment output_size must be positive, found [{h}, {w}]"
                )));
            }
        }
        Ok(())
    }

    /// True when `apply` would return the sample unchanged.
    pub fn is_identity(&self) -> bool {
        self.output_size.is_none()
            && self.crop_scale == [1.0, 1.0]
            && !self.horizontal_flip
            && self.brightness == 0.0
            && self.contrast == 0.0
            && self.saturation == 0.0
    }

    /// Augments one sample with randomness from `rng` (the caller seeds it per sample).
    pub fn apply(&self, sample: Sample, rng: &mut impl Rng) -> Result<Sample> {
        let Sample { image, target } = sample;
        let (h, w) = image.size();
        let [lo, hi] = self.crop_scale;
        let scale = if hi > lo { rng.gen_range(lo..=hi) } else { lo };
        let (ch, cw) = (
            ((h as f32 * scale).round() as usize).clamp(1, h.max(1)),
            ((w as f32 * scale).round() as usize).clamp(1, w.max(1)),
        );
        let top = rng.gen_range(0..=h - ch);
        let left = rng.gen_range(0..=w - cw);
        let window = Window {
            top,
            left,
            height: ch,
            width: cw,
        };
        let [oh, ow] = self.output_size.unwrap_or([ch, cw]);
        let flip = self.horizontal_flip && rng.gen_bool(0.5);

        let mut image = resample_image(&image, window, oh, ow, flip);
        let target = match target {
            Target::Depth { depth, valid } => Target::Depth {
                depth: resample_grid(&depth, window, oh, ow, flip),
                valid: resample_grid(&valid, window, oh, ow, flip),
            },
            Target::Segmentation { classes } => Target::Segmentation {
                classes: resample_grid(&classes, window, oh, ow, flip),
            },
            Target::Translation { target } => Target::Translation {
                target: resample_image(&target, window, oh, ow, flip),
            },
            Target::Class(c) => Target::Class(c),
        };
        self.jitter(&mut image, rng);
        Ok(Sample { image, target })
    }

    fn jitter(&self, image: &mut Image, rng: &mut impl Rng) {
        let factor = |amount: f32, rng: &mut dyn rand::RngCore| {
            if amount > 0.0 {
                rng.gen_range(1.0 - amount..=1.0 + amount)
            } else {
                1.0
            }
        };
        let b = factor(self.brightness, rng);
        let c = factor(self.contrast, rng);
        let s = factor(self.saturation, rng);
        if b == 1.0 && c == 1.0 && s == 1.0 {
            return;
        }
        let plane = image.height * image.width;
        for v in image.data.iter_mut() {
            *v = (*v * b).clamp(0.0, 1.0);
        }
        if image.channels == 3 && plane > 0 {
            let grey: Vec<f32> = (0..plane)
                .map(|p| {
                    0.299 * image.data[p]
                        + 0.587 * image.data[plane + p]
                        + 0.114 * image.data[2 * plane + p]
                })
                .collect();
            let mean = grey.iter().sum::<f32>() / plane as f32;
            for ch in 0..3 {
                for (p, &g) in grey.iter().enumerate() {
                    let v = &mut image.data[ch * plane + p];
                    let saturated = g + s * (*v - g);
                    *v = (mean + c * (saturated - mean)).clamp(0.0, 1.0);
                }
            }
        } else if plane > 0 {
            let mean = image.data.iter().sum::<f32>() / image.data.len() as f32;
            for v in image.data.iter_mut() {
                *v = (mean + c * (*v - mean)).clamp(0.0, 1.0);
            }
        }
    }
}

/// A crop rectangle in source pixels.
#[derive(Clone, Copy, Debug)]
struct Window {
    top: usize,
    left: usize,
    height: usize,
    width: usize,
}

/// Source coordinate (continuous, pixel centres at k + 0.5) of output pixel `o` of `n` over a
/// window of `len` pixels starting at `start`.
fn source_coord(o: usize, n: usize, start: usize, len: usize) -> f32 {
    start as f32 + (o as f32 + 0.5) * len as f32 / n as f32
}

/// Crops `window`, resizes bilinearly to `oh × ow` (half-pixel centres), optionally mirrored.
fn resample_image(image: &Image, window: Window, oh: usize, ow: usize, flip: bool) -> Image {
    let (h, w) = image.size();
    let identity = window.top == 0
        && window.left == 0
        && window.height == h
        && window.width == w
        && (oh, ow) == (h, w);
    if identity && !flip {
        return image.clone();
    }
    let plane = h * w;
    let mut data = vec![0.0f32; image.channels * oh * ow];
    for oy in 0..oh {
        let sy = (source_coord(oy, oh, window.top, window.height) - 0.5).clamp(0.0, (h - 1) as f32);
        let y0 = sy.floor() as usize;
        let y1 = (y0 + 1).min(h - 1);
        let fy = sy - y0 as f32;
        for ox in 0..ow {
            let src_x = if flip { ow - 1 - ox } else { ox };
            let sx = (source_coord(src_x, ow, window.left, window.width) - 0.5)
                .clamp(0.0, (w - 1) as f32);
            let x0 = sx.floor() as usize;
            let x1 = (x0 + 1).min(w - 1);
            let fx = sx - x0 as f32;
            for c in 0..image.channels {
                let src = &image.data[c * plane..(c + 1) * plane];
                let top = src[y0 * w + x0] + (src[y0 * w + x1] - src[y0 * w + x0]) * fx;
                let bottom = src[y1 * w + x0] + (src[y1 * w + x1] - src[y1 * w + x0]) * fx;
                data[(c * oh + oy) * ow + ox] = top + (bottom - top) * fy;
            }
        }
    }
    Image {
        channels: image.channels,
        height: oh,
        width: ow,
        data,
    }
}

/// Crops `window`, resizes by nearest neighbour (labels and depth must not be blended),
/// optionally mirrored.
fn resample_grid<T: Copy>(
    grid: &Grid<T>,
    window: Window,
    oh: usize,
    ow: usize,
    flip: bool,
) -> Grid<T> {
    let (h, w) = grid.size();
    let mut data = Vec::with_capacity(oh * ow);
    for oy in 0..oh {
        let sy = (source_coord(oy, oh, window.top, window.height).floor() as usize).min(h - 1);
        for ox in 0..ow {
            let src_x = if flip { ow - 1 - ox } else { ox };
            let sx =
                (source_coord(src_x, ow, window.left, window.width).floor() as usize).min(w - 1);
            data.push(grid.data[sy * w + sx]);
        }
    }
    Grid {
        height: oh,
        width: ow,
        data,
    }
}

/// Resizes an image to `height × width` (bilinear, half-pixel centres).
pub fn resize_image(image: &Image, height: usize, width: usize) -> Image {
    let window = Window {
        top: 0,
        left: 0,
        height: image.height,
        width: image.width,
    };
    resample_image(image, window, height, width, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A 4x6 sample whose image value, depth and class all encode the column index, so any
    /// geometric change can be checked against the target.
    fn column_sample() -> Sample {
        let (h, w) = (4, 6);
        let cols: Vec<f32> = (0..h * w).map(|i| (i % w) as f32 / 10.0).collect();
        let mut data = cols.clone();
        data.extend(&cols);
        data.extend(&cols);
        Sample {
            image: Image {
                channels: 3,
                height: h,
                width: w,
                data,
            },
            target: Target::Segmentation {
                classes: Grid {
                    height: h,
                    width: w,
                    data: (0..h * w).map(|i| (i % w) as u32).collect(),
                },
            },
        }
    }

    #[test]
    fn flip_and_crop_move_image_and_target_together() {
        let config = AugmentConfig {
            crop_scale: [0.5, 0.5],
            horizontal_flip: true,
            ..AugmentConfig::default()
        };
        let mut flips = 0;
        for seed in 0..20 {
            let out = config
                .apply(column_sample(), &mut ChaCha8Rng::seed_from_u64(seed))
                .unwrap();
            assert_eq!(out.image.size(), (2, 3));
            let Target::Segmentation { classes } = &out.target else {
                unreachable!()
            };
            // Without resizing the crop is pixel-exact: image = class / 10 everywhere.
            for (p, &c) in classes.data.iter().enumerate() {
                assert!((out.image.data[p] - c as f32 / 10.0).abs() < 1e-6);
            }
            if classes.data[0] > classes.data[1] {
                flips += 1;
            }
        }
        assert!(flips > 0 && flips < 20);
    }

    #[test]
    fn resize_keeps_labels_exact_and_interpolates_images() {
        let config = AugmentConfig {
            output_size: Some([8, 12]),
            ..AugmentConfig::default()
        };
        let out = config
            .apply(column_sample(), &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap();
        let Target::Segmentation { classes } = &out.target else {
            unreachable!()
        };
        assert_eq!(classes.size(), (8, 12));
        // Nearest: output column 2k and 2k+1 come from source column k.
        assert_eq!(&classes.data[..12], &[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        // Bilinear with half-pixel centres: output x=1 maps to source 0.75 - 0.5 = 0.25.
        assert!((out.image.data[1] - 0.025).abs() < 1e-6);
    }

    #[test]
    fn jitter_changes_only_the_image() {
        let config = AugmentConfig {
            brightness: 0.5,
            contrast: 0.5,
            saturation: 0.5,
            ..AugmentConfig::default()
        };
        let input = column_sample();
        let out = config
            .apply(input.clone(), &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        assert_eq!(out.target, input.target);
        assert_ne!(out.image, input.image);
        assert!(out.image.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(AugmentConfig {
            crop_scale: [0.0, 1.0],
            ..AugmentConfig::default()
        }
        .validate()
        .is_err());
    }
}
