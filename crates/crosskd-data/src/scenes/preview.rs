//! Pictures of rendered scenes for people: RGB | colourised depth | palette labels side by side,
//! and grids of such panels (used by `cargo xtask render` and `docs/scenes.png`).

use image::{Rgb, RgbImage};

use super::render::SceneFrame;

/// White pixels between panels.
pub const PREVIEW_GAP: u32 = 4;

/// Viridis key colours, dark to bright.
const COLOUR_MAP: [[f32; 3]; 5] = [
    [68.0, 1.0, 84.0],
    [59.0, 82.0, 139.0],
    [33.0, 145.0, 140.0],
    [94.0, 201.0, 98.0],
    [253.0, 231.0, 37.0],
];

/// Maps `t` in [0, 1] through a viridis-like colour map (piecewise linear between key colours).
pub fn colour_map(t: f32) -> [u8; 3] {
    let x = t.clamp(0.0, 1.0) * (COLOUR_MAP.len() - 1) as f32;
    let i = (x.floor() as usize).min(COLOUR_MAP.len() - 2);
    let f = x - i as f32;
    let (a, b) = (COLOUR_MAP[i], COLOUR_MAP[i + 1]);
    [0, 1, 2].map(|c| (a[c] + (b[c] - a[c]) * f).round() as u8)
}

/// RGB | depth coloured by `1 - depth / max_depth` (near bright, invalid black) | palette labels.
/// `max_depth` defaults to the frame's largest valid depth, which gives each panel full contrast.
pub fn triptych(frame: &SceneFrame, max_depth: Option<f32>) -> RgbImage {
    let max_depth = max_depth.unwrap_or_else(|| {
        frame
            .depth
            .iter()
            .zip(&frame.valid)
            .filter(|(_, &v)| v)
            .fold(f32::MIN_POSITIVE, |m, (&d, _)| m.max(d))
    });
    let (h, w) = (frame.height as u32, frame.width as u32);
    let mut out = RgbImage::from_pixel(3 * w + 2 * PREVIEW_GAP, h, Rgb([255; 3]));
    let palette = frame.palette_rgb();
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            let rgb = [frame.rgb[3 * i], frame.rgb[3 * i + 1], frame.rgb[3 * i + 2]];
            let depth = if frame.valid[i] {
                colour_map(1.0 - frame.depth[i] / max_depth)
            } else {
                [0, 0, 0]
            };
            let label = [palette[3 * i], palette[3 * i + 1], palette[3 * i + 2]];
            for (k, px) in [rgb, depth, label].into_iter().enumerate() {
                out.put_pixel(k as u32 * (w + PREVIEW_GAP) + x, y, Rgb(px));
            }
        }
    }
    out
}

/// Equal-sized panels in rows of `per_row`, separated by white gaps.
pub fn grid(panels: &[RgbImage], per_row: usize) -> RgbImage {
    let per_row = per_row.max(1);
    let (pw, ph) = panels.first().map_or((1, 1), |p| (p.width(), p.height()));
    let rows = panels.len().div_ceil(per_row).max(1) as u32;
    let cols = per_row.min(panels.len()).max(1) as u32;
    let gap = 2 * PREVIEW_GAP;
    let (w, h) = (cols * pw + (cols - 1) * gap, rows * ph + (rows - 1) * gap);
    let mut out = RgbImage::from_pixel(w, h, Rgb([255; 3]));
    for (k, panel) in panels.iter().enumerate() {
        let (r, c) = ((k / per_row) as u32, (k % per_row) as u32);
        let (x0, y0) = (c * (pw + gap), r * (ph + gap));
        image::imageops::replace(&mut out, panel, i64::from(x0), i64::from(y0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenes::{SceneConfig, SceneRenderer, SCENE_CLASSES};

    #[test]
    fn panels_hold_rgb_depth_and_labels() {
        let frame = SceneRenderer::new(SceneConfig::default())
            .unwrap()
            .render(0, 0, 8, 8)
            .unwrap();
        let t = triptych(&frame, Some(10.0));
        assert_eq!(t.dimensions(), (3 * 8 + 2 * PREVIEW_GAP, 8));
        assert_eq!(
            t.get_pixel(3, 2).0,
            [frame.rgb[57], frame.rgb[58], frame.rgb[59]]
        );
        let label = t.get_pixel(2 * (8 + PREVIEW_GAP) + 3, 2).0;
        assert_eq!(label, SCENE_CLASSES[frame.classes[19] as usize].colour);
        assert_eq!(colour_map(0.0), [68, 1, 84]);
        assert_eq!(colour_map(1.0), [253, 231, 37]);
        let g = grid(&[t.clone(), t.clone(), t], 2);
        assert_eq!(
            g.dimensions(),
            (2 * 32 + 2 * PREVIEW_GAP, 2 * 8 + 2 * PREVIEW_GAP)
        );
    }
}
