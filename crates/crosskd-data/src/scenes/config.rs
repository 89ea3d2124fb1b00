//! Scene parameters: every range the scene sampler draws from, so held-out variants (other
//! textures, more objects, darker rooms) are a config change.

use serde::{Deserialize, Serialize};

use crate::{DataError, Result};

/// A procedural texture family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextureKind {
    /// One colour.
    Flat,
    /// Two colours in squares.
    Checker,
    /// Two colours in parallel bands.
    Stripes,
    /// Smooth two-colour value noise (two octaves).
    Noise,
}

/// Ranges the scene sampler draws from; each `[lo, hi]` is sampled uniformly (counts inclusive).
/// Lengths in metres, angles in degrees. `SceneConfig::default()` documents the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SceneConfig {
    /// Room extent along x (default [4, 8]).
    pub room_width: [f32; 2],
    /// Room extent along z (default [4, 8]).
    pub room_length: [f32; 2],
    /// Floor-to-ceiling height (default [2.4, 3.2]).
    pub room_height: [f32; 2],
    /// Number of oriented boxes (default [1, 3]).
    pub boxes: [u32; 2],
    /// Number of spheres (default [1, 2]).
    pub spheres: [u32; 2],
    /// Number of upright cylinders (default [0, 2]).
    pub cylinders: [u32; 2],
    /// Object size (box edge, sphere/cylinder diameter, cylinder height up to 2x) (default [0.3, 1.0]).
    pub object_size: [f32; 2],
    /// Distance of object centres in front of the camera (default [1.5, 5.0]).
    pub object_distance: [f32; 2],
    /// Texture families surfaces draw from (default: all four).
    pub textures: Vec<TextureKind>,
    /// Camera height above the floor (default [0.8, 1.8]).
    pub camera_height: [f32; 2],
    /// Camera pitch, negative looks down (default [-25, 5]).
    pub camera_pitch: [f32; 2],
    /// Horizontal field of view (default [55, 75]).
    pub field_of_view: [f32; 2],
    /// Depths outside this interval are marked invalid, like a sensor's range (default [0.1, 10]).
    pub depth_range: [f32; 2],
    /// Ambient light level (default [0.15, 0.35]).
    pub ambient: [f32; 2],
    /// Point-light intensity at 1 m (default [0.8, 1.3]).
    pub light_intensity: [f32; 2],
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            room_width: [4.0, 8.0],
            room_length: [4.0, 8.0],
            room_height: [2.4, 3.2],
            boxes: [1, 3],
            spheres: [1, 2],
            cylinders: [0, 2],
            object_size: [0.3, 1.0],
            object_distance: [1.5, 5.0],
            textures: vec![
                TextureKind::Flat,
                TextureKind::Checker,
                TextureKind::Stripes,
                TextureKind::Noise,
            ],
            camera_height: [0.8, 1.8],
            camera_pitch: [-25.0, 5.0],
            field_of_view: [55.0, 75.0],
            depth_range: [0.1, 10.0],
            ambient: [0.15, 0.35],
            light_intensity: [0.8, 1.3],
        }
    }
}

impl SceneConfig {
    /// Checks every range (`lo <= hi`, positive sizes, a non-empty texture set, a camera that
    /// fits under the lowest ceiling).
    pub fn validate(&self) -> Result<()> {
        let ranges = [
            ("room_width", self.room_width, 1.0),
            ("room_length", self.room_length, 1.0),
            ("room_height", self.room_height, 0.5),
            ("object_size", self.object_size, 0.01),
            ("object_distance", self.object_distance, 0.1),
            ("camera_height", self.camera_height, 0.01),
            ("field_of_view", self.field_of_view, 1.0),
            ("depth_range", self.depth_range, 0.0),
            ("ambient", self.ambient, 0.0),
            ("light_intensity", self.light_intensity, 0.0),
        ];
        for (name, [lo, hi], min) in ranges {
            if !(lo.is_finite() && hi.is_finite() && lo >= min && lo <= hi) {
                return Err(DataError::Config(format!(
                    "scene {name} must be [lo, hi] with {min} <= lo <= hi, found [{lo}, {hi}]"
                )));
            }
        }
        if self.field_of_view[1] >= 170.0 {
            return Err(DataError::Config(format!(
                "scene field_of_view must stay below 170 degrees, found {}",
                self.field_of_view[1]
            )));
        }
        let [plo, phi] = self.camera_pitch;
        if !(plo <= phi && plo > -89.0 && phi < 89.0) {
            return Err(DataError::Config(format!(
                "scene camera_pitch must be [lo, hi] within (-89, 89), found [{plo}, {phi}]"
            )));
        }
        for (name, [lo, hi]) in [
            ("boxes", self.boxes),
            ("spheres", self.spheres),
            ("cylinders", self.cylinders),
        ] {
            if lo > hi || hi > 64 {
                return Err(DataError::Config(format!(
                    "scene {name} must be [lo, hi] with lo <= hi <= 64, found [{lo}, {hi}]"
                )));
            }
        }
        if self.textures.is_empty() {
            return Err(DataError::Config(
                "scene textures must name at least one texture kind".into(),
            ));
        }
        if self.camera_height[1] >= self.room_height[0] {
            return Err(DataError::Config(format!(
                "scene camera_height {:?} must stay below the lowest ceiling {}",
                self.camera_height, self.room_height[0]
            )));
        }
        Ok(())
    }
}
