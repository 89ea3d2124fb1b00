//! Vectors and ray–primitive intersection for the scene renderer. Rays are `o + t d` with `d`
//! not necessarily unit length (camera rays have unit forward component so `t` is z-depth).

use std::ops::{Add, Mul, Neg, Sub};

/// A 3-vector of f32 (x right, y up, z forward in world space).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct V3 {
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

/// Shorthand constructor.
pub(crate) const fn v3(x: f32, y: f32, z: f32) -> V3 {
    V3 { x, y, z }
}

impl V3 {
    pub fn dot(self, o: V3) -> f32 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }
    pub fn cross(self, o: V3) -> V3 {
        v3(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }
    #[cfg(test)]
    pub fn length(self) -> f32 {
        self.dot(self).sqrt()
    }
}

impl Add for V3 {
    type Output = V3;
    fn add(self, o: V3) -> V3 {
        v3(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}
impl Sub for V3 {
    type Output = V3;
    fn sub(self, o: V3) -> V3 {
        v3(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}
impl Mul<f32> for V3 {
    type Output = V3;
    fn mul(self, s: f32) -> V3 {
        v3(self.x * s, self.y * s, self.z * s)
    }
}
impl Neg for V3 {
    type Output = V3;
    fn neg(self) -> V3 {
        v3(-self.x, -self.y, -self.z)
    }
}

/// Smallest ray parameter accepted as a hit (avoids self-intersection of shadow rays).
pub(crate) const T_MIN: f32 = 1e-4;

/// A ray hit: parameter, outward normal (unit), texture coordinates in metres.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    pub t: f32,
    pub normal: V3,
    pub u: f32,
    pub v: f32,
}

/// Solid shapes standing on the floor (y = 0).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape {
    /// Box with centre, half extents, rotated by `yaw` about the vertical axis.
    Cuboid {
        centre: V3,
        half: V3,
        cos_yaw: f32,
        sin_yaw: f32,
    },
    /// Sphere.
    Sphere { centre: V3, radius: f32 },
    /// Upright finite cylinder with axis through (x, z), from y = 0 to y = height.
    Cylinder {
        x: f32,
        z: f32,
        radius: f32,
        height: f32,
    },
}

impl Shape {
    /// Nearest hit with `T_MIN < t < t_max`.
    pub fn intersect(&self, o: V3, d: V3, t_max: f32) -> Option<Hit> {
        match *self {
            Shape::Cuboid {
                centre,
                half,
                cos_yaw,
                sin_yaw,
            } => cuboid(o, d, centre, half, cos_yaw, sin_yaw, t_max),
            Shape::Sphere { centre, radius } => sphere(o, d, centre, radius, t_max),
            Shape::Cylinder {
                x,
                z,
                radius,
                height,
            } => cylinder(o, d, x, z, radius, height, t_max),
        }
    }

    /// Horizontal radius of the footprint (for placement).
    pub fn footprint(&self) -> f32 {
        match *self {
            Shape::Cuboid { half, .. } => (half.x * half.x + half.z * half.z).sqrt(),
            Shape::Sphere { radius, .. } => radius,
            Shape::Cylinder { radius, .. } => radius,
        }
    }
}

/// World → box-local rotation about y: local = R(-yaw) world.
fn to_local(p: V3, c: f32, s: f32) -> V3 {
    v3(c * p.x - s * p.z, p.y, s * p.x + c * p.z)
}

/// Box-local → world rotation about y.
fn to_world(p: V3, c: f32, s: f32) -> V3 {
    v3(c * p.x + s * p.z, p.y, -s * p.x + c * p.z)
}

fn cuboid(o: V3, d: V3, centre: V3, half: V3, c: f32, s: f32, t_max: f32) -> Option<Hit> {
    let lo = to_local(o - centre, c, s);
    let ld = to_local(d, c, s);
    let origin = [lo.x, lo.y, lo.z];
    let dir = [ld.x, ld.y, ld.z];
    let ext = [half.x, half.y, half.z];
    let (mut t_near, mut t_far) = (f32::NEG_INFINITY, f32::INFINITY);
    let mut axis = 0;
    for a in 0..3 {
        if dir[a].abs() < 1e-12 {
            if origin[a].abs() > ext[a] {
                return None;
            }
            continue;
        }
        let inv = 1.0 / dir[a];
        let mut t0 = (-ext[a] - origin[a]) * inv;
        let mut t1 = (ext[a] - origin[a]) * inv;
        if t0 > t1 {
            std::mem::swap(&mut t0, &mut t1);
        }
        if t0 > t_near {
            t_near = t0;
            axis = a;
        }
        t_far = t_far.min(t1);
    }
    if t_near > t_far || t_near <= T_MIN || t_near >= t_max {
        return None;
    }
    let mut n = [0.0f32; 3];
    n[axis] = -dir[axis].signum();
    let p = [
        origin[0] + t_near * dir[0],
        origin[1] + t_near * dir[1],
        origin[2] + t_near * dir[2],
    ];
    // Texture coordinates: the two in-face axes, offset so they start at the box corner.
    let (ua, va) = match axis {
        0 => (2, 1),
        1 => (0, 2),
        _ => (0, 1),
    };
    Some(Hit {
        t: t_near,
        normal: to_world(v3(n[0], n[1], n[2]), c, s),
        u: p[ua] + ext[ua],
        v: p[va] + ext[va],
    })
}

fn sphere(o: V3, d: V3, centre: V3, radius: f32, t_max: f32) -> Option<Hit> {
    let oc = o - centre;
    let a = d.dot(d);
    let b = oc.dot(d);
    let c = oc.dot(oc) - radius * radius;
    let disc = b * b - a * c;
    if disc < 0.0 {
        return None;
    }
    let sq = disc.sqrt();
    let mut t = (-b - sq) / a;
    if t <= T_MIN {
        t = (-b + sq) / a;
    }
    if t <= T_MIN || t >= t_max {
        return None;
    }
    let n = (oc + d * t) * (1.0 / radius);
    Some(Hit {
        t,
        normal: n,
        u: n.z.atan2(n.x) * radius,
        v: n.y * radius,
    })
}

fn cylinder(o: V3, d: V3, x: f32, z: f32, radius: f32, height: f32, t_max: f32) -> Option<Hit> {
    let (ox, oz) = (o.x - x, o.z - z);
    let mut best: Option<Hit> = None;
    let a = d.x * d.x + d.z * d.z;
    if a > 1e-12 {
        let b = ox * d.x + oz * d.z;
        let c = ox * ox + oz * oz - radius * radius;
        let disc = b * b - a * c;
        if disc >= 0.0 {
            let sq = disc.sqrt();
            for t in [(-b - sq) / a, (-b + sq) / a] {
                let y = o.y + t * d.y;
                if t > T_MIN && t < t_max && (0.0..=height).contains(&y) {
                    let (nx, nz) = ((ox + t * d.x) / radius, (oz + t * d.z) / radius);
                    best = Some(Hit {
                        t,
                        normal: v3(nx, 0.0, nz),
                        u: nz.atan2(nx) * radius,
                        v: y,
                    });
                    break;
                }
            }
        }
    }
    if d.y.abs() > 1e-12 {
        let t = (height - o.y) / d.y;
        let limit = best.map_or(t_max, |h| h.t);
        if t > T_MIN && t < limit {
            let (px, pz) = (ox + t * d.x, oz + t * d.z);
            if px * px + pz * pz <= radius * radius {
                best = Some(Hit {
                    t,
                    normal: v3(0.0, 1.0, 0.0),
                    u: px,
                    v: pz,
                });
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sphere_hit_distance_and_normal() {
        let s = Shape::Sphere {
            centre: v3(0.0, 0.0, 5.0),
            radius: 1.0,
        };
        let h = s
            .intersect(v3(0.0, 0.0, 0.0), v3(0.0, 0.0, 1.0), 100.0)
            .unwrap();
        assert!((h.t - 4.0).abs() < 1e-5);
        assert!((h.normal.z + 1.0).abs() < 1e-5);
        assert!(s
            .intersect(v3(0.0, 2.0, 0.0), v3(0.0, 0.0, 1.0), 100.0)
            .is_none());
    }

    #[test]
    fn rotated_box_hit_matches_geometry() {
        // A unit cube rotated by 45 degrees presents its edge at distance 5 - sqrt(2)/2.
        let (s, c) = std::f32::consts::FRAC_PI_4.sin_cos();
        let b = Shape::Cuboid {
            centre: v3(0.0, 0.0, 5.0),
            half: v3(0.5, 0.5, 0.5),
            cos_yaw: c,
            sin_yaw: s,
        };
        let h = b
            .intersect(v3(0.0, 0.0, 0.0), v3(0.0, 0.0, 1.0), 100.0)
            .unwrap();
        assert!((h.t - (5.0 - 0.5 * 2f32.sqrt())).abs() < 1e-4, "{}", h.t);
        assert!((h.normal.length() - 1.0).abs() < 1e-5);
        assert!(h.normal.z < 0.0);
    }

    #[test]
    fn cylinder_side_and_cap() {
        let cyl = Shape::Cylinder {
            x: 0.0,
            z: 5.0,
            radius: 1.0,
            height: 2.0,
        };
        let side = cyl
            .intersect(v3(0.0, 1.0, 0.0), v3(0.0, 0.0, 1.0), 100.0)
            .unwrap();
        assert!((side.t - 4.0).abs() < 1e-5);
        let cap = cyl
            .intersect(v3(0.0, 5.0, 5.0), v3(0.0, -1.0, 0.0), 100.0)
            .unwrap();
        assert!((cap.t - 3.0).abs() < 1e-5);
        assert!((cap.normal.y - 1.0).abs() < 1e-6);
        assert!(cyl
            .intersect(v3(0.0, 3.0, 0.0), v3(0.0, 0.0, 1.0), 100.0)
            .is_none());
    }
}
