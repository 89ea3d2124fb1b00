//! Samples typed by task: an image plus a depth map, a class-id map, a second image or a label.

/// Class id that losses and metrics skip (Cityscapes convention).
pub const IGNORE_CLASS: u32 = 255;

/// A float image, channel-major (C, H, W), values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Number of channels (1 or 3).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `channels * height * width` values, index `(c * height + y) * width + x`.
    pub data: Vec<f32>,
}

impl Image {
    /// Converts interleaved 8-bit pixels (`channels` per pixel, row-major) to CHW floats `v / 255`.
    pub fn from_interleaved_u8(
        channels: usize,
        height: usize,
        width: usize,
        pixels: &[u8],
    ) -> Self {
        let plane = height * width;
        let mut data = vec![0.0f32; channels * plane];
        for (p, px) in pixels.chunks_exact(channels).take(plane).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                data[c * plane + p] = f32::from(v) / 255.0;
            }
        }
        Self {
            channels,
            height,
            width,
            data,
        }
    }

    /// Interleaved 8-bit pixels, `round(255 v)` clamped to [0, 255].
    pub fn to_interleaved_u8(&self) -> Vec<u8> {
        let plane = self.height * self.width;
        let mut out = vec![0u8; self.channels * plane];
        for c in 0..self.channels {
            for p in 0..plane {
                out[p * self.channels + c] =
                    (self.data[c * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        out
    }

    /// One channel as a slice of `height * width` values.
    pub fn channel(&self, c: usize) -> &[f32] {
        let plane = self.height * self.width;
        &self.data[c * plane..(c + 1) * plane]
    }

    /// Repeats a one-channel image into three identical channels (other images unchanged).
    pub fn to_rgb(self) -> Self {
        if self.channels != 1 {
            return self;
        }
        let mut data = Vec::with_capacity(self.data.len() * 3);
        for _ in 0..3 {
            data.extend_from_slice(&self.data);
        }
        Self {
            channels: 3,
            data,
            ..self
        }
    }

    /// `(height, width)`.
    pub fn size(&self) -> (usize, usize) {
        (self.height, self.width)
    }
}

/// A single-channel per-pixel map (depth, validity, class ids), row-major (H, W).
#[derive(Clone, Debug, PartialEq)]
pub struct Grid<T> {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height * width` values, index `y * width + x`.
    pub data: Vec<T>,
}

impl<T: Copy> Grid<T> {
    /// A grid filled with `value`.
    pub fn filled(height: usize, width: usize, value: T) -> Self {
        Self {
            height,
            width,
            data: vec![value; height * width],
        }
    }

    /// `(height, width)`.
    pub fn size(&self) -> (usize, usize) {
        (self.height, self.width)
    }
}

/// What a model should predict for one image.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Metric depth in metres along the optical axis, with the pixels where it is known.
    Depth {
        /// Depth in metres (meaningless where `valid` is false).
        depth: Grid<f32>,
        /// True where the depth is measured.
        valid: Grid<bool>,
    },
    /// Per-pixel class ids; [`IGNORE_CLASS`] marks pixels to skip.
    Segmentation {
        /// Class ids.
        classes: Grid<u32>,
    },
    /// A target image of the same size as the input (values in [0, 1]).
    Translation {
        /// The image to produce.
        target: Image,
    },
    /// One class label for the whole image.
    Class(u32),
}

impl Target {
    /// The spatial size of a dense target (`None` for a class label).
    pub fn size(&self) -> Option<(usize, usize)> {
        match self {
            Target::Depth { depth, .. } => Some(depth.size()),
            Target::Segmentation { classes } => Some(classes.size()),
            Target::Translation { target } => Some(target.size()),
            Target::Class(_) => None,
        }
    }

    /// The task's name: `depth`, `segmentation`, `translation` or `class`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Depth { .. } => "depth",
            Target::Segmentation { .. } => "segmentation",
            Target::Translation { .. } => "translation",
            Target::Class(_) => "class",
        }
    }
}

/// One input image with its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The input image.
    pub image: Image,
    /// What to predict.
    pub target: Target,
}

impl Sample {
    /// Checks that a dense target has the image's size; `what` names the sample in the error.
    pub fn check_sizes(&self, what: &str) -> crate::Result<()> {
        match self.target.size() {
            Some(size) if size != self.image.size() => Err(crate::DataError::SizeMismatch {
                what: what.to_string(),
                expected: format!("target of the image's size {:?}", self.image.size()),
                found: format!("{size:?}"),
            }),
            _ => Ok(()),
        }
    }
}
