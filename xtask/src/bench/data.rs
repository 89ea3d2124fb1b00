//! Data benchmarks: scene rendering speed (images/s at 64×64 and 128×128) and loader
//! throughput (render + augment + normalise + stack, with background workers).

use std::sync::Arc;
use std::time::Instant;

use crosskd_data::scenes::{SceneConfig, SceneDataset, SceneRenderer, SceneTask};
use crosskd_data::{AugmentConfig, DataLoader, Dataset, LoaderConfig};

/// Renders scenes on `threads` threads for at least `min_seconds`; returns images per second.
fn render_rate(
    renderer: &SceneRenderer,
    size: usize,
    threads: usize,
    min_seconds: f64,
) -> anyhow::Result<(usize, f64)> {
    // Warm-up: page in code and allocator.
    let warm: Vec<u64> = (0..(threads as u64 * 4)).collect();
    renderer.render_many(1, &warm, size, size, threads)?;
    let chunk = (threads * 64).max(64) as u64;
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed().as_secs_f64() < min_seconds {
        let indices: Vec<u64> = (done..done + chunk).collect();
        renderer.render_many(0, &indices, size, size, threads)?;
        done += chunk;
    }
    Ok((done as usize, done as f64 / start.elapsed().as_secs_f64()))
}

/// `cargo xtask bench render`: images/s of the scene renderer at 64×64 and 128×128.
pub fn render(threads: usize) -> anyhow::Result<()> {
    let renderer = SceneRenderer::new(SceneConfig::default())?;
    let mut rows = Vec::new();
    for size in [64, 128] {
        let (n, rate) = render_rate(&renderer, size, threads, 3.0)?;
        println!("render {size}x{size}: {n} images, {rate:.0} images/s on {threads} threads");
        rows.push(format!("| {size}×{size} | {threads} | {n} | {rate:.0} |"));
    }
    let markdown = format!(
        "Scene renderer (`SceneRenderer::render_many`, default `SceneConfig`, RGB + z-depth + class ids \
         in one pass), `cargo xtask`'s optimised dev profile, command `cargo xtask bench render --threads {threads}`.\n\n\
         | size | threads | images rendered | images/s |\n|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    crate::bench::report::write_section("render", &markdown)?;
    Ok(())
}

/// `cargo xtask bench loader`: batches of rendered, augmented, normalised scenes per second.
pub fn loader(threads: usize) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for (size, samples) in [(64usize, 2048usize), (128, 512)] {
        let dataset: Arc<dyn Dataset> = Arc::new(SceneDataset::new(
            SceneTask::Depth,
            SceneConfig::default(),
            0,
            samples,
            size,
        )?);
        for augment in [false, true] {
            let config = LoaderConfig {
                batch_size: 32,
                workers: threads,
                prefetch: 2 * threads.max(1),
                augment: if augment {
                    AugmentConfig {
                        crop_scale: [0.6, 1.0],
                        output_size: Some([size, size]),
                        horizontal_flip: true,
                        brightness: 0.2,
                        contrast: 0.2,
                        saturation: 0.2,
                    }
                } else {
                    AugmentConfig::default()
                },
                ..LoaderConfig::default()
            };
            let loader = DataLoader::new(dataset.clone(), config)?;
            let start = Instant::now();
            let mut images = 0usize;
            for batch in loader.epoch(0) {
                images += batch?.indices.len();
            }
            let secs = start.elapsed().as_secs_f64();
            let rate = images as f64 / secs;
            let aug = if augment { "crop+flip+jitter" } else { "none" };
            println!("loader depth {size}x{size}, batch 32, {threads} workers, augment {aug}: {rate:.0} images/s ({:.1} batches/s)", rate / 32.0);
            rows.push(format!(
                "| {size}×{size} | {aug} | {threads} | {images} | {rate:.0} | {:.1} |",
                rate / 32.0
            ));
        }
    }
    let markdown = format!(
        "DataLoader over `SceneDataset` (depth task, rendered on demand, no cache), batch 32, \
         ImageNet normalisation, tensors stacked on the CPU; `cargo xtask`'s optimised dev profile, command \
         `cargo xtask bench loader --threads {threads}`.\n\n\
         | size | augmentation | workers | images | images/s | batches/s |\n|---|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    crate::bench::report::write_section("loader", &markdown)?;
    Ok(())
}
