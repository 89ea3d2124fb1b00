//! PNG plots of a run: loss curves, metric curves, singular-value spectra over training, and a
//! grid of sample predictions.
//!
//! Drawing uses plotters' bitmap backend with the DejaVu Sans font embedded in the binary
//! (`assets/`, Bitstream Vera licence), so no system font library is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Result, TrainError};
use crate::metrics_log::{EvalRecord, Record, TrainRecord};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER_FONT: Once = Once::new();

fn ensure_font() {
    REGISTER_FONT.call_once(|| {
        // The embedded font is known to parse; if it did not, text would simply be missing.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Draws with `draw` into a `w × h` RGB buffer and saves it as PNG.
fn render_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(
        DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>,
) -> Result<()> {
    ensure_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        draw(root.clone()).map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    let img = RgbImage::from_raw(w, h, buf).ok_or_else(|| plot_err(path, "buffer size"))?;
    img.save(path).map_err(|e| plot_err(path, e))
}

/// A short axis label: three significant digits, scientific notation outside [0.01, 10⁴).
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(0.01..10_000.0).contains(&a) {
        format!("{v:.1e}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let text = format!("{v:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }
}

/// One panel: named series of `(x, y)` points on linear axes (log y when `log_y`).
fn draw_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> std::result::Result<(), String> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let pts: Vec<(f64, f64)> = if log_y {
        pts.into_iter().filter(|p| p.1 > 0.0).collect()
    } else {
        pts
    };
    if pts.is_empty() {
        area.titled(&format!("{title} (no data)"), ("sans-serif", 16))
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in &pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if log_y {
        y0 = (y0 * 0.8).max(1e-12);
        y1 = if y1 <= y0 { y0 * 10.0 } else { y1 * 1.25 };
    } else {
        let pad = ((y1 - y0).abs() * 0.05).max(1e-9);
        y0 -= pad;
        y1 += pad;
    }
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(56);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_label_formatter(&|v: &f64| tick_label(*v))
                .label_style(("sans-serif", 11))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, (name, points)) in series.iter().enumerate() {
                let colour = COLOURS[i % COLOURS.len()];
                let pts: Vec<(f64, f64)> = points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
                if pts.len() < 40 {
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                        .map_err(|e| e.to_string())?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    if log_y {
        finish!(builder
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(|e| e.to_string())?);
    } else {
        finish!(builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// One panel of [`plot_panels`]: a title, an x-axis label, named `(x, y)` series, log y or not.
pub struct Panel {
    /// Caption above the panel.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Named series of points.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// Logarithmic y axis (non-positive values are dropped).
    pub log_y: bool,
}

/// Saves `panels` side by side (one row) as a PNG at `path`, each `panel_size` pixels.
pub fn plot_panels(path: &Path, panels: &[Panel], panel_size: (u32, u32)) -> Result<()> {
    let count = panels.len().max(1) as u32;
    render_png(path, (panel_size.0 * count, panel_size.1), |root| {
        let areas = root.split_evenly((1, count as usize));
        for (area, panel) in areas.iter().zip(panels) {
            draw_panel(
                area,
                &panel.title,
                &panel.x_label,
                &panel.series,
                panel.log_y,
            )?;
        }
        Ok(())
    })
}

fn train_series(records: &[&TrainRecord]) -> Vec<(String, Vec<(f64, f64)>)> {
    let pick = |f: &dyn Fn(&TrainRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.step as f64, v)))
            .collect()
    };
    let mut out = vec![("task loss".to_string(), pick(&|r| Some(r.task_loss)))];
    if records.iter().any(|r| r.distill_total != 0.0) {
        out.push((
            "distill (total)".to_string(),
            pick(&|r| Some(r.distill_total)),
        ));
        out.push(("transfer".to_string(), pick(&|r| r.transfer)));
        out.push(("spectral".to_string(), pick(&|r| r.spectral)));
        out.push(("logit KD".to_string(), pick(&|r| r.logit_kd)));
    }
    if records.iter().any(|r| r.regulariser != 0.0) {
        out.push(("regulariser".to_string(), pick(&|r| Some(r.regulariser))));
    }
    out.retain(|(_, p)| !p.is_empty());
    out
}

/// Writes `loss_curves.png`, `metric_curves.png` and `spectra.png` into `dir` from the records
/// of `metrics.jsonl`. Returns the files written.
pub fn plot_records(dir: &Path, records: &[Record]) -> Result<Vec<PathBuf>> {
    let train: Vec<&TrainRecord> = records
        .iter()
        .filter_map(|r| {
            if let Record::Train(t) = r {
                Some(t)
            } else {
                None
            }
        })
        .collect();
    let evals: Vec<&EvalRecord> = records
        .iter()
        .filter_map(|r| {
            if let Record::Eval(e) = r {
                Some(e)
            } else {
                None
            }
        })
        .filter(|e| e.split == "val")
        .collect();
    let mut written = Vec::new();

    let loss_path = dir.join("loss_curves.png");
    let series = train_series(&train);
    let lr: Vec<(f64, f64)> = train.iter().map(|r| (r.step as f64, r.lr)).collect();
    render_png(&loss_path, (960, 420), |root| {
        let panels = root.split_evenly((1, 2));
        draw_panel(&panels[0], "training losses", "step", &series, true)?;
        draw_panel(
            &panels[1],
            "learning rate",
            "step",
            &[("lr".to_string(), lr)],
            false,
        )
    })?;
    written.push(loss_path);

    let metric_path = dir.join("metric_curves.png");
    let mut by_metric: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for e in &evals {
        for (k, v) in &e.metrics {
            by_metric
                .entry(k.clone())
                .or_default()
                .push((e.step as f64, *v));
        }
    }
    let n = by_metric.len().max(1);
    let cols = n.min(3);
    let rows = n.div_ceil(cols);
    render_png(
        &metric_path,
        (360 * cols as u32, 300 * rows as u32),
        |root| {
            let panels = root.split_evenly((rows, cols));
            if by_metric.is_empty() {
                return draw_panel(&panels[0], "validation metrics", "step", &[], false);
            }
            for (panel, (name, pts)) in panels.iter().zip(by_metric.iter()) {
                draw_panel(
                    panel,
                    &format!("val {name}"),
                    "step",
                    &[(name.clone(), pts.clone())],
                    false,
                )?;
            }
            Ok(())
        },
    )?;
    written.push(metric_path);

    let spectra_path = dir.join("spectra.png");
    let spectra = |f: &dyn Fn(&EvalRecord) -> &Vec<f64>| -> Vec<(String, Vec<(f64, f64)>)> {
        let with_data: Vec<&&EvalRecord> = evals.iter().filter(|e| !f(e).is_empty()).collect();
        // At most five curves: the first, the last and evenly spaced ones between.
        let picks: Vec<usize> = if with_data.len() <= 5 {
            (0..with_data.len()).collect()
        } else {
            (0..5).map(|i| i * (with_data.len() - 1) / 4).collect()
        };
        picks
            .into_iter()
            .map(|i| {
                let e = with_data[i];
                let pts = f(e)
                    .iter()
                    .enumerate()
                    .map(|(j, v)| ((j + 1) as f64, *v))
                    .collect();
                (format!("step {}", e.step), pts)
            })
            .collect()
    };
    let proj = spectra(&|e| &e.projector_singular_values);
    let stud = spectra(&|e| &e.student_singular_values);
    render_png(&spectra_path, (960, 420), |root| {
        let panels = root.split_evenly((1, 2));
        draw_panel(
            &panels[0],
            "projector singular values",
            "index",
            &proj,
            true,
        )?;
        draw_panel(
            &panels[1],
            "student feature singular values",
            "index",
            &stud,
            true,
        )
    })?;
    written.push(spectra_path);
    Ok(written)
}

/// Saves a grid of equally sized tiles (rows of images, e.g. input | target | prediction) with
/// 2-pixel white gutters, scaling every tile up by an integer `zoom` (nearest neighbour) so
/// small images stay visible.
pub fn save_image_grid(path: &Path, rows: &[Vec<RgbImage>], zoom: u32) -> Result<()> {
    let gutter = 2u32;
    let zoom = zoom.max(1);
    let (tw, th) = rows
        .iter()
        .flatten()
        .next()
        .map(|t| (t.width() * zoom, t.height() * zoom))
        .unwrap_or((1, 1));
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let (w, h) = (
        cols * (tw + gutter) + gutter,
        rows.len() as u32 * (th + gutter) + gutter,
    );
    let mut canvas = RgbImage::from_pixel(w.max(1), h.max(1), Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            let (ox, oy) = (
                gutter + c as u32 * (tw + gutter),
                gutter + r as u32 * (th + gutter),
            );
            for y in 0..th.min(tile.height() * zoom) {
                for x in 0..tw.min(tile.width() * zoom) {
                    canvas.put_pixel(ox + x, oy + y, *tile.get_pixel(x / zoom, y / zoom));
                }
            }
        }
    }
    canvas.save(path).map_err(|e| plot_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics_log::{EvalRecord, TrainRecord};

    #[test]
    fn plots_are_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = Vec::new();
        for s in 1..=20u64 {
            records.push(Record::Train(TrainRecord {
                step: s,
                epoch: 0,
                task_loss: 1.0 / s as f64,
                distill_total: 0.5 / s as f64,
                transfer: Some(0.3 / s as f64),
                spectral: Some(0.2 / s as f64),
                logit_kd: None,
                regulariser: 0.0,
                total_loss: 1.5 / s as f64,
                lr: 0.01,
                samples_per_s: 100.0,
            }));
            if s % 5 == 0 {
                let mut metrics = BTreeMap::new();
                metrics.insert("loss".to_string(), 1.0 / s as f64);
                metrics.insert("miou".to_string(), s as f64 / 20.0);
                records.push(Record::Eval(EvalRecord {
                    step: s,
                    epoch: 0,
                    split: "val".into(),
                    metrics,
                    projector_singular_values: (1..=8).map(|i| 1.0 / (i * s) as f64).collect(),
                    student_singular_values: (1..=8).map(|i| 2.0 / i as f64).collect(),
                }));
            }
        }
        let files = plot_records(dir.path(), &records).unwrap();
        assert_eq!(files.len(), 3);
        for f in files {
            let img = image::open(&f).unwrap().to_rgb8();
            // Something besides the white background was drawn.
            assert!(
                img.pixels().any(|p| p.0 != [255, 255, 255]),
                "{}",
                f.display()
            );
        }
        let tile = RgbImage::from_pixel(4, 4, Rgb([10, 20, 30]));
        let grid = dir.path().join("grid.png");
        save_image_grid(&grid, &[vec![tile.clone(), tile.clone()], vec![tile]], 2).unwrap();
        let g = image::open(&grid).unwrap().to_rgb8();
        assert_eq!((g.width(), g.height()), (2 * (8 + 2) + 2, 2 * (8 + 2) + 2));
        assert_eq!(g.get_pixel(2, 2).0, [10, 20, 30]);
    }
}
