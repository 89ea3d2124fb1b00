//! Headers announcing about 10^12 bytes are refused with an error before anything that size is
//! allocated: each input runs under the counting allocator with the fuzz memory cap
//! (`runner::memory_cap`), so an attempt to allocate it fails the test instead of passing unseen.

use std::time::Duration;

use crosskd_fuzz::{run_one, CountingAllocator, FailureKind, MakeTarget, TARGETS};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const TERA: u64 = 1_000_000_000_000;

fn target(name: &str) -> MakeTarget {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Runs `input` through `name` and returns the refusal message (failing on acceptance, panic,
/// hang or over-allocation).
fn refusal(name: &str, input: &[u8]) -> String {
    assert!(crosskd_fuzz::alloc::is_installed());
    match run_one(target(name), input, Duration::from_secs(20)) {
        Ok(Err(message)) => message,
        Ok(Ok(())) => panic!("{name}: a 10^12-byte announcement was accepted"),
        Err(kind @ FailureKind::OverAllocation { .. }) => {
            panic!("{name}: allocated before refusing: {kind}")
        }
        Err(kind) => panic!("{name}: {kind}"),
    }
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = 0x0803u32.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

#[test]
fn idx_announcing_a_terabyte() {
    // 10^4 · 10^4 · 10^4 = 10^12 image bytes announced, 16 present.
    let m = refusal("idx", &idx(&[10_000, 10_000, 10_000], &[0; 16]));
    assert!(
        m.contains("1000000000000") && m.contains("found 16 bytes"),
        "{m}"
    );
}

/// A safetensors file: 8-byte little-endian header length, JSON header, data.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[test]
fn safetensors_announcing_a_terabyte() {
    for name in ["train-checkpoint", "model-checkpoint", "cache-shard"] {
        // The header-length field itself.
        let mut file = TERA.to_le_bytes().to_vec();
        file.extend(b"{}");
        let m = refusal(name, &file);
        assert!(!m.is_empty(), "{name}");
        // A tensor of 10^6 x 10^6 f32 (4 * 10^12 bytes) over 8 bytes of data.
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,{}]}}}}"#,
            4 * TERA
        );
        let m = refusal(name, &safetensors(&header, &[0; 8]));
        assert!(!m.is_empty(), "{name}");
    }
}

/// A legacy checkpoint whose first pickle is a BINUNICODE8 string of 10^12 bytes.
#[test]
fn pickle_string_announcing_a_terabyte() {
    let mut file = vec![0x80, 0x02, 0x8a, 0x0a];
    file.extend([0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    file.push(0x2e);
    file.push(0x8d);
    file.extend(TERA.to_le_bytes());
    file.extend(b"abc");
    let m = refusal("pth", &file);
    assert!(m.contains("truncated") || m.contains("malformed"), "{m}");
}

/// A PNG whose header announces 10^6 x 10^6 pixels (CRC fixed, so the header itself is valid).
fn huge_png(seed: &[u8]) -> Vec<u8> {
    let mut png = seed.to_vec();
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ..., CRC after 13 bytes.
    png[16..20].copy_from_slice(&1_000_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&1_000_000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    png
}

#[test]
fn png_announcing_a_terabyte() {
    for name in ["png-depth", "png-labels", "png-image"] {
        let seed = (target(name)()).seeds().remove(0);
        let m = refusal(name, &huge_png(&seed));
        assert!(!m.is_empty(), "{name}");
    }
}

#[test]
fn cache_manifest_announcing_a_terabyte_of_samples() {
    let seed = String::from_utf8((target("cache-manifest")()).seeds().remove(0)).unwrap();
    let start = seed.find("\"num-samples\":").unwrap() + "\"num-samples\":".len();
    let end = start + seed[start..].find([',', '}']).unwrap();
    let huge = format!("{}{TERA}{}", &seed[..start], &seed[end..]);
    let m = refusal("cache-manifest", huge.as_bytes());
    assert!(m.contains("num-samples") || m.contains("samples"), "{m}");
}
