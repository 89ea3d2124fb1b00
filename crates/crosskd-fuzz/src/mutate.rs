//! Seeded structured mutation of byte strings: what parsers of binary headers and text formats
//! get wrong is lengths, counts and boundaries, so most operators aim there rather than at
//! uniformly random bytes.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Values that break integer fields: zero, one, the signed and unsigned extremes of each width,
/// and sizes around 2^31, 2^32 and 10^12 (a header announcing a terabyte).
const BOUNDARIES: [u64; 14] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1_000_000_000_000,
    i64::MAX as u64,
    u64::MAX,
];

/// Text fragments that break numbers and structure in TOML and JSON.
const TEXT_TOKENS: [&[u8]; 16] = [
    b"-1",
    b"0",
    b"1e999",
    b"-0.0",
    b"nan",
    b"inf",
    b"18446744073709551616",
    b"9223372036854775807",
    b"1000000000000",
    b"\"",
    b"[",
    b"{",
    b"]",
    b"}",
    b"\n",
    b"\"\\u0000\"",
];

/// The mutation operators, each named for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Flip 1–4 random bits.
    BitFlip,
    /// Overwrite one byte with a random value.
    ByteSet,
    /// Insert 1–16 random bytes.
    Insert,
    /// Delete a range.
    Delete,
    /// Replace a range with a range of another corpus entry.
    Splice,
    /// Overwrite a 1/2/4/8-byte field (either endianness) with a boundary value.
    Boundary,
    /// Cut the input short.
    Truncate,
    /// Multiply or offset an existing 4- or 8-byte field so that a length or count grows huge.
    Inflate,
    /// Copy a range elsewhere (repeated structures: dict entries, tensors, lines).
    Duplicate,
    /// Insert a token of the target's dictionary or a text token.
    Token,
    /// Replace a run of ASCII digits with a boundary number.
    Digits,
}

const OPERATORS: [Operator; 11] = [
    Operator::BitFlip,
    Operator::ByteSet,
    Operator::Insert,
    Operator::Delete,
    Operator::Splice,
    Operator::Boundary,
    Operator::Truncate,
    Operator::Inflate,
    Operator::Duplicate,
    Operator::Token,
    Operator::Digits,
];

/// Mutates inputs deterministically from a seeded generator.
pub struct Mutator<'a> {
    /// Target-specific tokens (names, magic numbers, opcodes) inserted by [`Operator::Token`].
    pub dictionary: &'a [&'a [u8]],
    /// Inputs never grow beyond this many bytes.
    pub max_len: usize,
}

fn range(rng: &mut ChaCha8Rng, len: usize) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let start = rng.gen_range(0..len);
    // Mostly short ranges: a field, a token; sometimes long ones.
    let max = if rng.gen_bool(0.8) { 16 } else { len - start };
    let n = rng.gen_range(1..=max.min(len - start));
    (start, start + n)
}

impl Mutator<'_> {
    /// Applies 1–4 random operators to a copy of `input`; `corpus` supplies splice material.
    pub fn mutate(&self, rng: &mut ChaCha8Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut out = input.to_vec();
        let rounds = 1 + rng.gen_range(0..4usize).min(rng.gen_range(0..4usize));
        for _ in 0..rounds {
            let op = OPERATORS[rng.gen_range(0..OPERATORS.len())];
            self.apply(rng, op, &mut out, corpus);
        }
        out.truncate(self.max_len);
        out
    }

    /// Applies one operator in place.
    pub fn apply(
        &self,
        rng: &mut ChaCha8Rng,
        op: Operator,
        data: &mut Vec<u8>,
        corpus: &[Vec<u8>],
    ) {
        let len = data.len();
        match op {
            Operator::BitFlip if len > 0 => {
                for _ in 0..rng.gen_range(1..=4) {
                    let i = rng.gen_range(0..len);
                    data[i] ^= 1 << rng.gen_range(0..8);
                }
            }
            Operator::ByteSet if len > 0 => {
                let i = rng.gen_range(0..len);
                data[i] = rng.gen();
            }
            Operator::Insert => {
                let at = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                data.splice(at..at, bytes);
            }
            Operator::Delete if len > 0 => {
                let (a, b) = range(rng, len);
                data.drain(a..b);
            }
            Operator::Splice if !corpus.is_empty() => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                if other.is_empty() {
                    return;
                }
                let (oa, ob) = range(rng, other.len());
                let (a, b) = if len == 0 { (0, 0) } else { range(rng, len) };
                data.splice(a..b, other[oa..ob].iter().copied());
            }
            Operator::Boundary if len > 0 => {
                let width = [1usize, 2, 4, 8][rng.gen_range(0..4)].min(len);
                let at = rng.gen_range(0..=len - width);
                let mut v = BOUNDARIES[rng.gen_range(0..BOUNDARIES.len())];
                if rng.gen_bool(0.2) {
                    v = v.wrapping_add(rng.gen_range(0..3)).wrapping_sub(1);
                }
                write_int(&mut data[at..at + width], v, rng.gen_bool(0.5));
            }
            Operator::Truncate if len > 0 => {
                data.truncate(rng.gen_range(0..len));
            }
            Operator::Inflate if len >= 4 => {
                let width = if len >= 8 && rng.gen_bool(0.5) { 8 } else { 4 };
                let at = rng.gen_range(0..=len - width);
                let big_endian = rng.gen_bool(0.5);
                let old = read_int(&data[at..at + width], big_endian);
                let new = match rng.gen_range(0..4) {
                    0 => old.wrapping_mul(1 << rng.gen_range(1..20)),
                    1 => old.wrapping_add(1 << rng.gen_range(8..40)),
                    2 => old.wrapping_add(rng.gen_range(1..64)),
                    _ => old.wrapping_sub(rng.gen_range(1..64)),
                };
                write_int(&mut data[at..at + width], new, big_endian);
            }
            Operator::Duplicate if len > 0 => {
                let (a, b) = range(rng, len);
                let chunk = data[a..b].to_vec();
                let at = rng.gen_range(0..=len);
                data.splice(at..at, chunk);
            }
            Operator::Token => {
                let token: &[u8] = if !self.dictionary.is_empty() && rng.gen_bool(0.6) {
                    self.dictionary[rng.gen_range(0..self.dictionary.len())]
                } else {
                    TEXT_TOKENS[rng.gen_range(0..TEXT_TOKENS.len())]
                };
                let at = rng.gen_range(0..=len);
                if rng.gen_bool(0.5) && at + token.len() <= len {
                    data[at..at + token.len()].copy_from_slice(token);
                } else {
                    data.splice(at..at, token.iter().copied());
                }
            }
            Operator::Digits => {
                let runs: Vec<(usize, usize)> = digit_runs(data);
                if runs.is_empty() {
                    return;
                }
                let (a, b) = runs[rng.gen_range(0..runs.len())];
                let replacement = TEXT_TOKENS[rng.gen_range(0..9)];
                data.splice(a..b, replacement.iter().copied());
            }
            // Operators that need bytes the input lacks do nothing.
            _ => {}
        }
    }
}

fn digit_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i].is_ascii_digit() {
            let start = i;
            while i < data.len() && data[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    runs
}

fn write_int(field: &mut [u8], v: u64, big_endian: bool) {
    let n = field.len();
    let bytes = if big_endian {
        v.to_be_bytes()[8 - n..].to_vec()
    } else {
        v.to_le_bytes()[..n].to_vec()
    };
    field.copy_from_slice(&bytes);
}

fn read_int(field: &[u8], big_endian: bool) -> u64 {
    let mut wide = [0u8; 8];
    if big_endian {
        wide[8 - field.len()..].copy_from_slice(field);
        u64::from_be_bytes(wide)
    } else {
        wide[..field.len()].copy_from_slice(field);
        u64::from_le_bytes(wide)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn boundary_writes_either_endianness() {
        let mut f = [0u8; 4];
        write_int(&mut f, 0x0102_0304, true);
        assert_eq!(f, [1, 2, 3, 4]);
        write_int(&mut f, 0x0102_0304, false);
        assert_eq!(f, [4, 3, 2, 1]);
        assert_eq!(read_int(&f, false), 0x0102_0304);
    }

    #[test]
    fn mutation_is_deterministic_and_bounded() {
        let m = Mutator {
            dictionary: &[b"key"],
            max_len: 64,
        };
        let run = || {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut x = b"abc 123 def".to_vec();
            for _ in 0..200 {
                x = m.mutate(&mut rng, &x, &[b"zz".to_vec()]);
                assert!(x.len() <= 64);
            }
            x
        };
        assert_eq!(run(), run());
    }
}
