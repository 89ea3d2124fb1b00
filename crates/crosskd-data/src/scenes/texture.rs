//! Procedural surface textures evaluated at 2-D texture coordinates (metres on the surface).

use rand::Rng;

use super::config::TextureKind;

/// A surface's appearance: a texture family, two colours and a feature size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Material {
    kind: TextureKind,
    a: [f32; 3],
    b: [f32; 3],
    /// Features per metre.
    frequency: f32,
    /// Stripe direction (unit vector in texture space).
    dir: (f32, f32),
    /// Lattice seed of the value noise.
    seed: u32,
}

/// A saturated random colour: hue uniform, saturation and value in useful bands.
fn random_colour(rng: &mut impl Rng) -> [f32; 3] {
    let h = rng.gen_range(0.0f32..6.0);
    let s = rng.gen_range(0.25f32..0.85);
    let v = rng.gen_range(0.45f32..0.95);
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

impl Material {
    /// Draws a material whose family is one of `kinds` (non-empty).
    pub fn random(rng: &mut impl Rng, kinds: &[TextureKind]) -> Self {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let a = random_colour(rng);
        let mut b = random_colour(rng);
        // Second colour darker or lighter than the first so the pattern is visible.
        let shade = rng.gen_range(0.35f32..0.7);
        for (bc, ac) in b.iter_mut().zip(a) {
            *bc = 0.5 * (*bc + ac * shade);
        }
        let angle = rng.gen_range(0.0f32..std::f32::consts::PI);
        Self {
            kind,
            a,
            b,
            frequency: rng.gen_range(1.0f32..4.0),
            dir: (angle.cos(), angle.sin()),
            seed: rng.gen(),
        }
    }

    /// Albedo (RGB in [0, 1]) at texture coordinates `(u, v)`.
    pub fn albedo(&self, u: f32, v: f32) -> [f32; 3] {
        let w = match self.kind {
            TextureKind::Flat => 0.0,
            TextureKind::Checker => {
                let i = (u * self.frequency).floor() as i64 + (v * self.frequency).floor() as i64;
                (i & 1) as f32
            }
            TextureKind::Stripes => {
                let s = (u * self.dir.0 + v * self.dir.1) * self.frequency;
                ((s.floor() as i64) & 1) as f32
            }
            TextureKind::Noise => {
                let f = self.frequency * 1.5;
                0.65 * value_noise(u * f, v * f, self.seed)
                    + 0.35 * value_noise(u * f * 2.3, v * f * 2.3, self.seed ^ 0x9e37_79b9)
            }
        };
        [
            self.a[0] + (self.b[0] - self.a[0]) * w,
            self.a[1] + (self.b[1] - self.a[1]) * w,
            self.a[2] + (self.b[2] - self.a[2]) * w,
        ]
    }
}

/// Hash of a lattice point to [0, 1] (integer mixing, no tables).
fn lattice(ix: i32, iy: i32, seed: u32) -> f32 {
    let mut h = (ix as u32).wrapping_mul(0x8da6_b343)
        ^ (iy as u32).wrapping_mul(0xd816_3841)
        ^ seed.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297a_2d39);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// Bilinear value noise with smoothstep weights, in [0, 1].
fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i32, fy as i32);
    let (tx, ty) = (x - fx, y - fy);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let top = lattice(ix, iy, seed) + (lattice(ix + 1, iy, seed) - lattice(ix, iy, seed)) * sx;
    let bottom = lattice(ix, iy + 1, seed)
        + (lattice(ix + 1, iy + 1, seed) - lattice(ix, iy + 1, seed)) * sx;
    top + (bottom - top) * sy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_bounded_and_continuous() {
        for i in 0..200 {
            let x = i as f32 * 0.173 - 10.0;
            let n = value_noise(x, 0.5 * x, 3);
            assert!((0.0..=1.0).contains(&n));
            let m = value_noise(x + 1e-3, 0.5 * x, 3);
            assert!((n - m).abs() < 0.01);
        }
        // Lattice points take the lattice values exactly.
        assert_eq!(value_noise(2.0, -3.0, 5), lattice(2, -3, 5));
    }

    #[test]
    fn checker_alternates() {
        let m = Material {
            kind: TextureKind::Checker,
            a: [1.0, 0.0, 0.0],
            b: [0.0, 0.0, 1.0],
            frequency: 1.0,
            dir: (1.0, 0.0),
            seed: 0,
        };
        assert_eq!(m.albedo(0.5, 0.5), [1.0, 0.0, 0.0]);
        assert_eq!(m.albedo(1.5, 0.5), [0.0, 0.0, 1.0]);
        assert_eq!(m.albedo(1.5, 1.5), [1.0, 0.0, 0.0]);
    }
}
