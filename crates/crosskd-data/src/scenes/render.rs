//! Scene sampling (a room, objects, light and camera drawn from a [`SceneConfig`]) and the ray
//! caster that produces RGB, z-depth and class ids in one pass.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::classes::{BOX, CEILING, CYLINDER, FLOOR, SCENE_CLASSES, SPHERE, WALL};
use super::config::SceneConfig;
use super::geometry::{v3, Hit, Shape, V3};
use super::texture::Material;
use crate::{DataError, Grid, Image, Result, Target};

/// One rendered view: interleaved 8-bit RGB, z-depth in metres, validity and class ids.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneFrame {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height * width * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
    /// Depth along the optical axis (z-depth, the NYUv2 convention), metres.
    pub depth: Vec<f32>,
    /// True where the depth lies in the config's `depth_range`.
    pub valid: Vec<bool>,
    /// Class id per pixel (index into [`SCENE_CLASSES`]).
    pub classes: Vec<u8>,
}

impl SceneFrame {
    fn empty(height: usize, width: usize) -> Self {
        let n = height * width;
        Self {
            height,
            width,
            rgb: vec![0; n * 3],
            depth: vec![0.0; n],
            valid: vec![false; n],
            classes: vec![0; n],
        }
    }

    /// The RGB image as floats in [0, 1].
    pub fn image(&self) -> Image {
        Image::from_interleaved_u8(3, self.height, self.width, &self.rgb)
    }

    /// The class-id map drawn with the palette of [`SCENE_CLASSES`] (the translation input).
    pub fn palette_rgb(&self) -> Vec<u8> {
        self.classes
            .iter()
            .flat_map(|&c| SCENE_CLASSES[c as usize].colour)
            .collect()
    }

    /// The palette image as floats in [0, 1].
    pub fn palette_image(&self) -> Image {
        Image::from_interleaved_u8(3, self.height, self.width, &self.palette_rgb())
    }

    /// The depth target (metres + validity).
    pub fn depth_target(&self) -> Target {
        Target::Depth {
            depth: Grid {
                height: self.height,
                width: self.width,
                data: self.depth.clone(),
            },
            valid: Grid {
                height: self.height,
                width: self.width,
                data: self.valid.clone(),
            },
        }
    }

    /// The segmentation target (class ids as u32).
    pub fn segmentation_target(&self) -> Target {
        Target::Segmentation {
            classes: Grid {
                height: self.height,
                width: self.width,
                data: self.classes.iter().map(|&c| u32::from(c)).collect(),
            },
        }
    }
}

/// A surface's class and appearance.
#[derive(Clone, Copy, Debug)]
struct Object {
    shape: Shape,
    class: u8,
    material: Material,
}

/// Pinhole camera: rays `d = forward + sx right + sy up` have unit forward component, so the ray
/// parameter of a hit is its z-depth.
#[derive(Clone, Copy, Debug)]
struct Camera {
    position: V3,
    forward: V3,
    right: V3,
    up: V3,
    tan_half_fov: f32,
}

/// Everything needed to render one view.
#[derive(Clone, Debug)]
struct Scene {
    /// Room extents: x in [0, W], y in [0, H], z in [0, L].
    room: V3,
    floor: Material,
    wall: Material,
    ceiling: Material,
    objects: Vec<Object>,
    light: V3,
    light_intensity: f32,
    ambient: f32,
    camera: Camera,
    depth_range: [f32; 2],
}

fn uniform(rng: &mut ChaCha8Rng, [lo, hi]: [f32; 2]) -> f32 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

fn count(rng: &mut ChaCha8Rng, [lo, hi]: [u32; 2]) -> u32 {
    rng.gen_range(lo..=hi)
}

/// Renders procedural indoor scenes; a scene is a pure function of `(config, seed, index)`.
#[derive(Clone, Debug)]
pub struct SceneRenderer {
    config: SceneConfig,
}

impl SceneRenderer {
    /// A renderer for `config` (validated).
    pub fn new(config: SceneConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &SceneConfig {
        &self.config
    }

    /// Renders scene `index` of the stream `seed` at `height × width` pixels.
    pub fn render(&self, seed: u64, index: u64, height: usize, width: usize) -> Result<SceneFrame> {
        if !(1..=4096).contains(&height) || !(1..=4096).contains(&width) {
            return Err(DataError::Config(format!(
                "scene image size must be 1..=4096 pixels a side, found {height}x{width}"
            )));
        }
        let scene = self.sample(seed, index, width as f32 / height as f32);
        let mut frame = SceneFrame::empty(height, width);
        scene.render_into(&mut frame);
        Ok(frame)
    }

    /// Renders scenes `indices` of stream `seed` on `threads` threads (results in index order,
    /// identical for any thread count).
    pub fn render_many(
        &self,
        seed: u64,
        indices: &[u64],
        height: usize,
        width: usize,
        threads: usize,
    ) -> Result<Vec<SceneFrame>> {
        let threads = threads.clamp(1, indices.len().max(1));
        let chunk = indices.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = indices
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|&i| self.render(seed, i, height, width))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut frames = Vec::with_capacity(indices.len());
            for handle in handles {
                let part = handle
                    .join()
                    .map_err(|_| DataError::Config("a render thread panicked".into()))??;
                frames.extend(part);
            }
            Ok(frames)
        })
    }

    fn sample(&self, seed: u64, index: u64, aspect: f32) -> Scene {
        let cfg = &self.config;
        // One ChaCha stream per index: scenes are independent of each other and of render order.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let room = v3(
            uniform(&mut rng, cfg.room_width),
            uniform(&mut rng, cfg.room_height),
            uniform(&mut rng, cfg.room_length),
        );
        let floor = Material::random(&mut rng, &cfg.textures);
        let wall = Material::random(&mut rng, &cfg.textures);
        let ceiling = Material::random(&mut rng, &cfg.textures);

        let margin = 0.4;
        let cam_pos = v3(
            rng.gen_range(margin..room.x - margin),
            uniform(&mut rng, cfg.camera_height).min(room.y - 0.1),
            rng.gen_range(margin..room.z - margin),
        );
        // Look roughly towards the room centre so the view is not a wall at arm's length.
        let to_centre = v3(room.x * 0.5 - cam_pos.x, 0.0, room.z * 0.5 - cam_pos.z);
        let yaw = to_centre.x.atan2(to_centre.z) + rng.gen_range(-1.0f32..1.0);
        let pitch = uniform(&mut rng, cfg.camera_pitch).to_radians();
        let fov = uniform(&mut rng, cfg.field_of_view).to_radians();
        let (sy, cy) = yaw.sin_cos();
        let (sp, cp) = pitch.sin_cos();
        let forward = v3(sy * cp, sp, cy * cp);
        let right = v3(cy, 0.0, -sy);
        let up = forward.cross(right);
        let camera = Camera {
            position: cam_pos,
            forward,
            right,
            up,
            tan_half_fov: (fov * 0.5).tan(),
        };

        let mut objects: Vec<Object> = Vec::new();
        let kinds = [
            (BOX, count(&mut rng, cfg.boxes)),
            (SPHERE, count(&mut rng, cfg.spheres)),
            (CYLINDER, count(&mut rng, cfg.cylinders)),
        ];
        let half_fov_h = (camera.tan_half_fov * aspect.min(1.0)).atan();
        for (class, n) in kinds {
            for _ in 0..n {
                let material = Material::random(&mut rng, &cfg.textures);
                let size = uniform(&mut rng, cfg.object_size);
                // A few placement attempts; an object that fits nowhere is left out.
                for _attempt in 0..8 {
                    let shape = random_shape(&mut rng, class, size, cfg, &camera, yaw, half_fov_h);
                    if fits(&shape, room, cam_pos, &objects) {
                        objects.push(Object {
                            shape,
                            class,
                            material,
                        });
                        break;
                    }
                }
            }
        }
        let light = v3(
            rng.gen_range(margin..room.x - margin),
            room.y - rng.gen_range(0.1f32..0.5),
            rng.gen_range(margin..room.z - margin),
        );
        Scene {
            room,
            floor,
            wall,
            ceiling,
            objects,
            light,
            light_intensity: uniform(&mut rng, cfg.light_intensity),
            ambient: uniform(&mut rng, cfg.ambient),
            camera,
            depth_range: cfg.depth_range,
        }
    }
}

/// A shape of `class` and `size` standing on the floor in front of the camera.
fn random_shape(
    rng: &mut ChaCha8Rng,
    class: u8,
    size: f32,
    cfg: &SceneConfig,
    camera: &Camera,
    yaw: f32,
    half_fov: f32,
) -> Shape {
    let distance = uniform(rng, cfg.object_distance);
    let angle = yaw + rng.gen_range(-1.0f32..1.0) * half_fov;
    let x = camera.position.x + distance * angle.sin();
    let z = camera.position.z + distance * angle.cos();
    match class {
        BOX => {
            let half = v3(
                size * rng.gen_range(0.3f32..0.6),
                size * rng.gen_range(0.25f32..0.6),
                size * rng.gen_range(0.3f32..0.6),
            );
            let (s, c) = rng.gen_range(0.0f32..std::f32::consts::TAU).sin_cos();
            Shape::Cuboid {
                centre: v3(x, half.y, z),
                half,
                cos_yaw: c,
                sin_yaw: s,
            }
        }
        SPHERE => {
            let radius = size * 0.5;
            Shape::Sphere {
                centre: v3(x, radius, z),
                radius,
            }
        }
        _ => Shape::Cylinder {
            x,
            z,
            radius: size * rng.gen_range(0.25f32..0.5),
            height: size * rng.gen_range(0.8f32..2.0),
        },
    }
}

/// Inside the room, clear of the camera and of the objects placed so far.
fn fits(shape: &Shape, room: V3, camera: V3, objects: &[Object]) -> bool {
    let r = shape.footprint();
    let (x, z) = centre_xz(shape);
    let inside = x - r > 0.05 && x + r < room.x - 0.05 && z - r > 0.05 && z + r < room.z - 0.05;
    let clear_of_camera = ((x - camera.x).powi(2) + (z - camera.z).powi(2)).sqrt() > r + 0.5;
    inside
        && clear_of_camera
        && objects.iter().all(|o| {
            let (ox, oz) = centre_xz(&o.shape);
            ((x - ox).powi(2) + (z - oz).powi(2)).sqrt() > r + o.shape.footprint() + 0.05
        })
}

fn centre_xz(shape: &Shape) -> (f32, f32) {
    match *shape {
        Shape::Cuboid { centre, .. } | Shape::Sphere { centre, .. } => (centre.x, centre.z),
        Shape::Cylinder { x, z, .. } => (x, z),
    }
}

impl Scene {
    /// Where a ray from inside the room leaves it: (hit, class).
    fn room_hit(&self, o: V3, d: V3) -> (Hit, u8, &Material) {
        let r = self.room;
        let tx = if d.x > 0.0 {
            (r.x - o.x) / d.x
        } else if d.x < 0.0 {
            -o.x / d.x
        } else {
            f32::INFINITY
        };
        let ty = if d.y > 0.0 {
            (r.y - o.y) / d.y
        } else if d.y < 0.0 {
            -o.y / d.y
        } else {
            f32::INFINITY
        };
        let tz = if d.z > 0.0 {
            (r.z - o.z) / d.z
        } else if d.z < 0.0 {
            -o.z / d.z
        } else {
            f32::INFINITY
        };
        if ty <= tx && ty <= tz {
            let p = o + d * ty;
            if d.y < 0.0 {
                let hit = Hit {
                    t: ty,
                    normal: v3(0.0, 1.0, 0.0),
                    u: p.x,
                    v: p.z,
                };
                (hit, FLOOR, &self.floor)
            } else {
                let hit = Hit {
                    t: ty,
                    normal: v3(0.0, -1.0, 0.0),
                    u: p.x,
                    v: p.z,
                };
                (hit, CEILING, &self.ceiling)
            }
        } else if tx <= tz {
            let p = o + d * tx;
            let n = v3(-d.x.signum(), 0.0, 0.0);
            let hit = Hit {
                t: tx,
                normal: n,
                u: p.z,
                v: p.y,
            };
            (hit, WALL, &self.wall)
        } else {
            let p = o + d * tz;
            let n = v3(0.0, 0.0, -d.z.signum());
            let hit = Hit {
                t: tz,
                normal: n,
                u: p.x,
                v: p.y,
            };
            (hit, WALL, &self.wall)
        }
    }

    /// True when an object blocks the segment from `p` to the light.
    fn shadowed(&self, p: V3, to_light: V3) -> bool {
        // The room is convex and the light is inside it, so only objects can cast shadows.
        self.objects
            .iter()
            .any(|o| o.shape.intersect(p, to_light, 1.0).is_some())
    }

    fn render_into(&self, frame: &mut SceneFrame) {
        let (h, w) = (frame.height, frame.width);
        let cam = &self.camera;
        let tan_x = cam.tan_half_fov;
        let tan_y = tan_x * h as f32 / w as f32;
        for py in 0..h {
            let sy = (1.0 - 2.0 * (py as f32 + 0.5) / h as f32) * tan_y;
            for px in 0..w {
                let sx = (2.0 * (px as f32 + 0.5) / w as f32 - 1.0) * tan_x;
                let d = cam.forward + cam.right * sx + cam.up * sy;
                let (mut hit, mut class, mut material) = self.room_hit(cam.position, d);
                for object in &self.objects {
                    if let Some(h) = object.shape.intersect(cam.position, d, hit.t) {
                        hit = h;
                        class = object.class;
                        material = &object.material;
                    }
                }
                let p = cam.position + d * hit.t;
                let n = if hit.normal.dot(d) > 0.0 {
                    -hit.normal
                } else {
                    hit.normal
                };
                let to_light = self.light - p;
                let dist2 = to_light.dot(to_light);
                let lambert = n.dot(to_light) / dist2.sqrt();
                let mut light = self.ambient;
                if lambert > 0.0 && !self.shadowed(p + n * 1e-3, to_light) {
                    light += self.light_intensity * lambert * 3.0 / (2.0 + 0.3 * dist2);
                }
                let albedo = material.albedo(hit.u, hit.v);
                let i = py * w + px;
                for (out, a) in frame.rgb[i * 3..i * 3 + 3].iter_mut().zip(albedo) {
                    // sqrt approximates display gamma so shadows are not crushed to black.
                    let v = (a * light).clamp(0.0, 1.0).sqrt();
                    *out = (v * 255.0 + 0.5) as u8;
                }
                frame.depth[i] = hit.t;
                frame.valid[i] = hit.t >= self.depth_range[0] && hit.t <= self.depth_range[1];
                frame.classes[i] = class;
            }
        }
    }
}
