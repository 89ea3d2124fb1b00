//! The scene class table: ids, names and the palette used for label images.

/// One semantic class of the procedural scenes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SceneClass {
    /// Class id (index in [`SCENE_CLASSES`]).
    pub id: u32,
    /// Human-readable name.
    pub name: &'static str,
    /// Colour of the class in palette images (RGB, 8 bit).
    pub colour: [u8; 3],
}

/// Class id of the floor plane.
pub const FLOOR: u8 = 0;
/// Class id of the four walls.
pub const WALL: u8 = 1;
/// Class id of the ceiling plane.
pub const CEILING: u8 = 2;
/// Class id of oriented boxes.
pub const BOX: u8 = 3;
/// Class id of spheres.
pub const SPHERE: u8 = 4;
/// Class id of upright cylinders.
pub const CYLINDER: u8 = 5;

/// All scene classes, indexed by id. The palette colours are far apart in RGB so a model (or a
/// reader) can tell them apart in translation inputs.
pub const SCENE_CLASSES: [SceneClass; 6] = [
    SceneClass {
        id: 0,
        name: "floor",
        colour: [140, 90, 40],
    },
    SceneClass {
        id: 1,
        name: "wall",
        colour: [70, 130, 180],
    },
    SceneClass {
        id: 2,
        name: "ceiling",
        colour: [225, 225, 225],
    },
    SceneClass {
        id: 3,
        name: "box",
        colour: [220, 40, 40],
    },
    SceneClass {
        id: 4,
        name: "sphere",
        colour: [40, 200, 70],
    },
    SceneClass {
        id: 5,
        name: "cylinder",
        colour: [250, 210, 30],
    },
];

/// Number of scene classes (the output channels of a segmentation head).
pub const NUM_SCENE_CLASSES: usize = SCENE_CLASSES.len();
