//! Procedural indoor scenes rendered by ray casting: RGB, exact z-depth and class ids from one
//! pass, deterministic from `(config, seed, index)`. Three tasks read from them: depth,
//! segmentation, and translation (palette image of the class map → RGB photo).

mod classes;
mod config;
mod geometry;
pub mod preview;
mod render;
mod texture;

use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

pub use classes::{
    SceneClass, BOX, CEILING, CYLINDER, FLOOR, NUM_SCENE_CLASSES, SCENE_CLASSES, SPHERE, WALL,
};
pub use config::{SceneConfig, TextureKind};
pub use render::{SceneFrame, SceneRenderer};

use crate::dataset::check_index;
use crate::{Dataset, Result, Sample, Target};

/// Which task a [`SceneDataset`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SceneTask {
    /// RGB image → depth (metres) with validity mask.
    Depth,
    /// RGB image → class ids of [`SCENE_CLASSES`].
    Segmentation,
    /// Palette image of the class map → RGB image ("labels → photo").
    Translation,
}

/// Scenes rendered on demand: sample `i` is scene `(seed, i)` at `size × size` pixels.
pub struct SceneDataset {
    task: SceneTask,
    renderer: SceneRenderer,
    seed: u64,
    len: usize,
    size: usize,
    /// Frames kept after the first render when caching is on (trades memory for speed).
    cache: Option<Vec<OnceLock<Arc<SceneFrame>>>>,
}

impl SceneDataset {
    /// `len` scenes of stream `seed` at `size × size` pixels (`size` in 1..=4096; 64–256 is the
    /// intended range).
    pub fn new(
        task: SceneTask,
        config: SceneConfig,
        seed: u64,
        len: usize,
        size: usize,
    ) -> Result<Self> {
        if !(1..=4096).contains(&size) {
            return Err(crate::DataError::Config(format!(
                "scene size must be in 1..=4096 pixels, found {size}"
            )));
        }
        Ok(Self {
            task,
            renderer: SceneRenderer::new(config)?,
            seed,
            len,
            size,
            cache: None,
        })
    }

    /// Keeps every frame in memory after its first render (about `size² × 9` bytes each).
    pub fn with_cache(mut self) -> Self {
        self.cache = Some((0..self.len).map(|_| OnceLock::new()).collect());
        self
    }

    /// The task served.
    pub fn task(&self) -> SceneTask {
        self.task
    }

    /// The frame of sample `index` (rendered, or from the cache).
    pub fn frame(&self, index: usize) -> Result<Arc<SceneFrame>> {
        check_index(index, self.len)?;
        let render = || {
            self.renderer
                .render(self.seed, index as u64, self.size, self.size)
                .map(Arc::new)
        };
        match &self.cache {
            Some(cache) => {
                if let Some(frame) = cache[index].get() {
                    return Ok(frame.clone());
                }
                let frame = render()?;
                Ok(cache[index].get_or_init(|| frame).clone())
            }
            None => render(),
        }
    }
}

impl Dataset for SceneDataset {
    fn len(&self) -> usize {
        self.len
    }

    /// Renders the frames not yet cached, in parallel (nothing without [`SceneDataset::with_cache`]).
    fn preload(&self) -> Result<usize> {
        let Some(cache) = &self.cache else {
            return Ok(0);
        };
        let missing: Vec<usize> = (0..self.len)
            .filter(|&i| cache[i].get().is_none())
            .collect();
        missing
            .par_iter()
            .try_for_each(|&index| self.frame(index).map(drop))?;
        Ok(missing.len())
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let frame = self.frame(index)?;
        Ok(match self.task {
            SceneTask::Depth => Sample {
                image: frame.image(),
                target: frame.depth_target(),
            },
            SceneTask::Segmentation => Sample {
                image: frame.image(),
                target: frame.segmentation_target(),
            },
            SceneTask::Translation => Sample {
                image: frame.palette_image(),
                target: Target::Translation {
                    target: frame.image(),
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Fnv64;

    fn frame_hash(frame: &SceneFrame) -> u64 {
        let mut h = Fnv64::new();
        h.write(&frame.rgb);
        h.write(&frame.classes);
        for d in &frame.depth {
            h.write(&d.to_le_bytes());
        }
        h.finish()
    }

    #[test]
    fn same_seed_gives_byte_identical_frames_for_any_thread_count() {
        let renderer = SceneRenderer::new(SceneConfig::default()).unwrap();
        let indices: Vec<u64> = (0..6).collect();
        let one = renderer.render_many(11, &indices, 32, 32, 1).unwrap();
        let three = renderer.render_many(11, &indices, 32, 32, 3).unwrap();
        let again = renderer.render(11, 4, 32, 32).unwrap();
        assert_eq!(one, three);
        assert_eq!(frame_hash(&one[4]), frame_hash(&again));
        assert_eq!(frame_hash(&one[4]), frame_hash(&three[4]));
        // Different seeds and different indices give different scenes.
        let other = renderer.render(12, 4, 32, 32).unwrap();
        assert_ne!(frame_hash(&one[4]), frame_hash(&other));
        assert_ne!(frame_hash(&one[0]), frame_hash(&one[1]));
    }

    #[test]
    fn frames_are_plausible_rooms() {
        let renderer = SceneRenderer::new(SceneConfig::default()).unwrap();
        let mut seen = [0usize; NUM_SCENE_CLASSES];
        for i in 0..12 {
            let f = renderer.render(3, i, 48, 64).unwrap();
            assert_eq!(f.rgb.len(), 48 * 64 * 3);
            for (&c, &d) in f.classes.iter().zip(&f.depth) {
                seen[c as usize] += 1;
                assert!(d > 0.0 && d < 20.0, "depth {d}");
            }
            assert!(f.valid.iter().filter(|&&v| v).count() > f.valid.len() / 2);
            // The image is lit: not constant.
            let min = f.rgb.iter().min().unwrap();
            let max = f.rgb.iter().max().unwrap();
            assert!(max - min > 40);
        }
        for (class, &n) in SCENE_CLASSES.iter().zip(&seen) {
            assert!(n > 0, "class {} never visible", class.name);
        }
    }

    #[test]
    fn depth_is_z_depth_of_the_floor() {
        // Level camera (pitch 0) at height h = 1 with a 90 degree field of view: the ray of row
        // py has up component sy = 1 - 2 (py + 0.5) / n and unit forward component, so it meets
        // the floor y = 0 at z-depth t = h / -sy.
        let config = SceneConfig {
            camera_pitch: [0.0, 0.0],
            camera_height: [1.0, 1.0],
            field_of_view: [90.0, 90.0],
            boxes: [0, 0],
            spheres: [0, 0],
            cylinders: [0, 0],
            ..SceneConfig::default()
        };
        let renderer = SceneRenderer::new(config).unwrap();
        let n = 64;
        let f = renderer.render(5, 0, n, n).unwrap();
        let mut checked = 0;
        for py in n / 2..n {
            let i = py * n + n / 2;
            if f.classes[i] == FLOOR {
                let sy = (1.0 - 2.0 * (py as f32 + 0.5) / n as f32) * 1.0;
                let expected = 1.0 / -sy;
                assert!((f.depth[i] - expected).abs() < 1e-3 * expected, "row {py}");
                checked += 1;
            }
        }
        assert!(checked > 5);
    }

    #[test]
    fn preload_renders_every_frame_once_and_serves_the_same_samples() {
        let make = || SceneDataset::new(SceneTask::Depth, SceneConfig::default(), 3, 6, 16);
        let plain = make().unwrap();
        let cached: Arc<dyn Dataset> = Arc::new(make().unwrap().with_cache());
        assert_eq!(
            plain.preload().unwrap(),
            0,
            "without a cache there is nowhere to keep frames"
        );
        cached.get(4).unwrap();
        assert_eq!(cached.preload().unwrap(), 5, "frame 4 was already cached");
        assert_eq!(cached.preload().unwrap(), 0);
        for i in 0..6 {
            assert_eq!(cached.get(i).unwrap(), plain.get(i).unwrap(), "sample {i}");
        }
    }

    #[test]
    fn dataset_serves_three_tasks() {
        let cfg = SceneConfig::default();
        let depth = SceneDataset::new(SceneTask::Depth, cfg.clone(), 1, 4, 24).unwrap();
        let seg = SceneDataset::new(SceneTask::Segmentation, cfg.clone(), 1, 4, 24).unwrap();
        let tr = SceneDataset::new(SceneTask::Translation, cfg, 1, 4, 24)
            .unwrap()
            .with_cache();
        let d = depth.get(2).unwrap();
        let s = seg.get(2).unwrap();
        let t = tr.get(2).unwrap();
        assert_eq!(d.image, s.image);
        assert!(matches!(d.target, Target::Depth { .. }));
        let Target::Segmentation { classes } = &s.target else {
            panic!("segmentation target expected")
        };
        assert!(classes
            .data
            .iter()
            .all(|&c| (c as usize) < NUM_SCENE_CLASSES));
        // Translation: input is the palette of the class map, target the photo.
        let Target::Translation { target } = &t.target else {
            panic!("translation target expected")
        };
        assert_eq!(target, &d.image);
        let p = classes.data[0] as usize;
        assert_eq!(
            t.image.data[0],
            f32::from(SCENE_CLASSES[p].colour[0]) / 255.0
        );
        assert_eq!(tr.get(2).unwrap(), t);
        assert!(depth.get(4).is_err());
    }

    #[test]
    fn config_roundtrips_and_rejects_unknown_keys() {
        let text = serde_json::to_string(&SceneConfig::default()).unwrap();
        let back: SceneConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, SceneConfig::default());
        assert!(serde_json::from_str::<SceneConfig>(r#"{"boxs": [1, 2]}"#).is_err());
        let partial: SceneConfig = serde_json::from_str(r#"{"boxes": [4, 4]}"#).unwrap();
        assert_eq!(partial.boxes, [4, 4]);
        let bad = SceneConfig {
            textures: vec![],
            ..SceneConfig::default()
        };
        assert!(SceneRenderer::new(bad).is_err());
    }
}
