//! Scene renderer without the xtask: `cargo run -p crosskd-data --example scenes -- grid OUT.png
//! [COUNT SIZE SEED]` writes the preview grid (same panels as `cargo xtask render --grid`);
//! `... -- speed THREADS` prints rendering and loader throughput as markdown tables.

use std::sync::Arc;
use std::time::Instant;

use crosskd_data::scenes::preview::{grid, triptych};
use crosskd_data::scenes::{SceneConfig, SceneDataset, SceneRenderer, SceneTask};
use crosskd_data::{AugmentConfig, DataLoader, Dataset, LoaderConfig};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = SceneConfig::default();
    let renderer = SceneRenderer::new(config.clone())?;
    match args.first().map(String::as_str) {
        Some("grid") => {
            let out = args.get(1).ok_or("usage: grid OUT.png [COUNT SIZE SEED]")?;
            let (count, size, seed) = (
                arg(&args, 2, 8u64),
                arg(&args, 3, 128usize),
                arg(&args, 4, 0u64),
            );
            let indices: Vec<u64> = (0..count).collect();
            let frames = renderer.render_many(seed, &indices, size, size, 2)?;
            let panels: Vec<_> = frames.iter().map(|f| triptych(f, None)).collect();
            grid(&panels, 2).save(out)?;
            println!("wrote {out}: {count} scenes, {size}x{size}, seed {seed}");
        }
        Some("speed") => {
            let threads = arg(&args, 1, 2usize);
            println!("| size | threads | images rendered | images/s |\n|---|---|---|---|");
            for size in [64usize, 128] {
                renderer.render_many(1, &(0..8).collect::<Vec<_>>(), size, size, threads)?;
                let start = Instant::now();
                let mut done = 0u64;
                while start.elapsed().as_secs_f64() < 3.0 {
                    let chunk: Vec<u64> = (done..done + 128).collect();
                    renderer.render_many(0, &chunk, size, size, threads)?;
                    done += 128;
                }
                let rate = done as f64 / start.elapsed().as_secs_f64();
                println!("| {size}×{size} | {threads} | {done} | {rate:.0} |");
            }
            println!("\n| size | augmentation | workers | images | images/s | batches/s |\n|---|---|---|---|---|---|");
            for (size, samples) in [(64usize, 2048usize), (128, 512)] {
                let dataset: Arc<dyn Dataset> = Arc::new(SceneDataset::new(
                    SceneTask::Depth,
                    config.clone(),
                    0,
                    samples,
                    size,
                )?);
                for augment in [false, true] {
                    let loader_config = LoaderConfig {
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
                    let loader = DataLoader::new(dataset.clone(), loader_config)?;
                    let start = Instant::now();
                    let mut images = 0usize;
                    for batch in loader.epoch(0) {
                        images += batch?.indices.len();
                    }
                    let rate = images as f64 / start.elapsed().as_secs_f64();
                    let aug = if augment { "crop+flip+jitter" } else { "none" };
                    println!(
                        "| {size}×{size} | {aug} | {threads} | {images} | {rate:.0} | {:.1} |",
                        rate / 32.0
                    );
                }
            }
        }
        _ => {
            return Err(
                "usage: scenes grid OUT.png [COUNT SIZE SEED] | scenes speed THREADS".into(),
            )
        }
    }
    Ok(())
}
