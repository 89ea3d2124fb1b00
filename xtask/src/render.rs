//! `cargo xtask render`: procedural scenes as PNGs a person can look at — RGB, colourised depth
//! and palette labels side by side, one file per scene, plus an optional grid of all of them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use crosskd_data::scenes::preview::{grid, triptych};
use crosskd_data::scenes::{SceneConfig, SceneRenderer, SCENE_CLASSES};

/// Options of `cargo xtask render`.
#[derive(clap::Args)]
pub struct RenderArgs {
    /// Output folder for the PNGs.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of scenes.
    #[arg(long, default_value_t = 8)]
    pub count: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Seed of the scene stream (scene i of seed s is the same everywhere).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Scene config (TOML, keys of `SceneConfig`); defaults when omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also write all scenes as one grid image to this path (two scenes per row).
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// Render threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Renders scenes into `args.out`.
pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading scene config {}", path.display()))?;
            toml::from_str::<SceneConfig>(&text)
                .with_context(|| format!("parsing scene config {}", path.display()))?
        }
        None => SceneConfig::default(),
    };
    let renderer = SceneRenderer::new(config)?;
    let indices: Vec<u64> = (0..args.count as u64).collect();
    let frames = renderer.render_many(args.seed, &indices, args.size, args.size, args.threads)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut panels = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let panel = triptych(frame, None);
        let path = args.out.join(format!("scene_{i:04}.png"));
        save(&path, &panel)?;
        panels.push(panel);
    }
    println!(
        "wrote {} scenes ({}x{}, seed {}) to {} — columns: RGB | depth (bright = near, scaled to each scene's farthest point) | labels",
        frames.len(),
        args.size,
        args.size,
        args.seed,
        args.out.display(),
    );
    println!(
        "classes: {}",
        SCENE_CLASSES
            .iter()
            .map(|c| format!("{} {:?}", c.name, c.colour))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(grid_path) = &args.grid {
        let picture = grid(&panels, 2);
        save(grid_path, &picture)?;
        println!("wrote grid {}", grid_path.display());
    }
    Ok(())
}

fn save(path: &Path, image: &image::RgbImage) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    image
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}
