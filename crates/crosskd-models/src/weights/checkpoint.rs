//! Reading PyTorch checkpoints: the zip format (torch >= 1.6) and the legacy format (pre-1.6).
//!
//! Zip format: `<top>/data.pkl` is the state-dict pickle; a storage with key `k` is the raw
//! little-endian member `<top>/data/k` (`<top>/byteorder` says `big` on big-endian writers).
//! Its persistent ids are `('storage', torch.<T>Storage, key, location, numel)`.
//!
//! Legacy format: five things back to back in one file: the pickled magic number
//! `0x1950a86a20f9469cfc6c`, the pickled protocol version `1001`, a pickled system-info dict
//! (`little_endian`, `type_sizes`), the state-dict pickle, the pickled list of storage keys; then,
//! for each key in that order, an i64 little-endian element count and the storage's raw bytes.
//! Its persistent ids are `('storage', torch.<T>Storage, root_key, location, numel, view)`, where
//! `view` is `None` or `(view_key, element_offset, view_numel)`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{Result, WeightsError};
use super::pickle::{unpickle, Global, StorageRef, TensorRef, Value};
use super::tensor::{materialise, swap_bytes, NamedTensor, StorageDtype};

/// The legacy format's magic number, the first pickle of the file.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The legacy format's protocol version, the second pickle of the file.
const LEGACY_PROTOCOL: i128 = 1001;
/// Keys under which training scripts commonly nest the state dict, tried in this order when no
/// key is given and the top level is not itself a state dict.
pub const NESTED_STATE_DICT_KEYS: [&str; 5] =
    ["state_dict", "model_state_dict", "model", "net", "module"];

/// The two container formats of `torch.save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// A zip archive (`_use_new_zipfile_serialization=True`, default since torch 1.6).
    Zip,
    /// The legacy concatenated-pickles format (torch < 1.6).
    Legacy,
}

/// How to find the state dict inside a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Path of dict keys from the top-level object to the state dict, separated by `/`
    /// (e.g. `state_dict` or `ema/model`). `None`: the top level if it is a state dict, else the
    /// first of [`NESTED_STATE_DICT_KEYS`] that holds one.
    pub key: Option<String>,
}

/// The tensors of a checkpoint in state-dict order.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The container format found.
    pub format: CheckpointFormat,
    /// `(state-dict key, tensor)` in the order they were saved.
    pub tensors: Vec<(String, NamedTensor)>,
}

/// Reads the state dict of a PyTorch checkpoint (either format) without executing pickle code.
pub fn read_pytorch_checkpoint(path: &Path) -> Result<Vec<(String, NamedTensor)>> {
    Ok(read_pytorch_checkpoint_with(path, &ReadOptions::default())?.tensors)
}

/// [`read_pytorch_checkpoint`] with options (which nested key holds the state dict).
pub fn read_pytorch_checkpoint_with(path: &Path, options: &ReadOptions) -> Result<Checkpoint> {
    let io = |source| WeightsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut file, &mut head).map_err(io)?;
    let head = &head[..n];
    if head == b"PK\x03\x04" {
        read_zip(path, file, options)
    } else if head.len() >= 3 && head[0] == 0x80 && head[1] >= 2 && head[2] == 0x8a {
        let mut data = head.to_vec();
        file.read_to_end(&mut data).map_err(io)?;
        read_legacy(path, &data, options)
    } else {
        Err(WeightsError::Format {
            path: path.to_owned(),
            message: format!(
                "not a PyTorch checkpoint: expected a zip archive (PK\\x03\\x04) or a legacy pickle (80 02 8a ...), found bytes {}",
                head.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
            ),
        })
    }
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn format_error(path: &Path, message: impl Into<String>) -> WeightsError {
    WeightsError::Format {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Parses a persistent id tuple of either format into a storage reference.
fn storage_from_pid(pid: &Value) -> std::result::Result<Value, String> {
    let items = match pid {
        Value::Tuple(t) => t.as_ref().clone(),
        other => {
            return Err(format!(
                "persistent id is a {}, expected a ('storage', ...) tuple",
                other.kind()
            ))
        }
    };
    let [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), numel, rest @ ..] =
        items.as_slice()
    else {
        return Err(
            "persistent id is not ('storage', torch.<T>Storage, key, location, numel[, view])"
                .into(),
        );
    };
    if tag != "storage" {
        return Err(format!("persistent id tag `{tag}`, expected `storage`"));
    }
    let numel = numel
        .as_usize()
        .ok_or("persistent id: storage size is not a non-negative int")?;
    let view_offset = match rest {
        [] | [Value::None] => 0,
        [view] => match view.items().as_deref() {
            Some([Value::Str(_), offset, _]) => offset
                .as_usize()
                .ok_or("storage view offset is not a non-negative int")?,
            _ => return Err("storage view metadata is not (key, offset, size)".into()),
        },
        _ => {
            return Err(format!(
                "persistent id has {} fields, expected 5 or 6",
                items.len()
            ))
        }
    };
    Ok(Value::Storage(StorageRef {
        key: key.clone(),
        dtype: *dtype,
        view_offset,
        numel,
    }))
}

/// The `(name, tensor view)` pairs of a state dict, or why `value` is not one.
fn as_state_dict(value: &Value) -> std::result::Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(dict) = value else {
        return Err(format!("a {}, expected a dict of tensors", value.kind()));
    };
    let mut out = Vec::new();
    for (k, v) in dict.borrow().iter() {
        let Value::Str(name) = k else {
            return Err(format!(
                "a dict with a {} key, expected string keys",
                k.kind()
            ));
        };
        match v {
            Value::Tensor(t) => out.push((name.clone(), t.clone())),
            other => {
                return Err(format!(
                    "entry `{name}` is a {}, expected a tensor",
                    other.kind()
                ))
            }
        }
    }
    Ok(out)
}

fn dict_get(value: &Value, key: &str) -> Option<Value> {
    match value {
        Value::Dict(d) => d
            .borrow()
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}

fn dict_keys(value: &Value) -> Vec<String> {
    match value {
        Value::Dict(d) => d
            .borrow()
            .iter()
            .map(|(k, _)| match k {
                Value::Str(s) => s.clone(),
                other => format!("<{}>", other.kind()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Finds the state dict in the top-level object according to `options`.
fn select_state_dict(
    path: &Path,
    top: &Value,
    options: &ReadOptions,
) -> Result<Vec<(String, TensorRef)>> {
    if let Some(key) = &options.key {
        let mut current = top.clone();
        let mut walked = Vec::new();
        for part in key.split('/') {
            let next = dict_get(&current, part).ok_or_else(|| {
                format_error(
                    path,
                    format!(
                        "key `{part}` not found under `{}` (available: {:?})",
                        if walked.is_empty() {
                            "<top>".to_owned()
                        } else {
                            walked.join("/")
                        },
                        dict_keys(&current)
                    ),
                )
            })?;
            walked.push(part);
            current = next;
        }
        return as_state_dict(&current)
            .map_err(|m| format_error(path, format!("`{key}` is not a state dict: {m}")));
    }
    let top_error = match as_state_dict(top) {
        Ok(found) => return Ok(found),
        Err(m) => m,
    };
    for key in NESTED_STATE_DICT_KEYS {
        if let Some(found) = dict_get(top, key).and_then(|v| as_state_dict(&v).ok()) {
            return Ok(found);
        }
    }
    Err(format_error(
        path,
        format!(
            "the top level is not a state dict ({top_error}) and none of {NESTED_STATE_DICT_KEYS:?} holds one; top-level keys: {:?}; pass the key that holds it",
            dict_keys(top)
        ),
    ))
}

/// Materialises every tensor, each from the bytes of its root storage.
fn materialise_all(
    views: Vec<(String, TensorRef)>,
    storages: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<(String, NamedTensor)>> {
    views
        .into_iter()
        .map(|(name, view)| {
            let bytes = storages
                .get(&view.storage.key)
                .ok_or_else(|| WeightsError::BadTensor {
                    name: name.clone(),
                    message: format!(
                        "its storage `{}` is missing from the file",
                        view.storage.key
                    ),
                })?;
            let tensor = materialise(&name, &view, bytes)?;
            Ok((name, tensor))
        })
        .collect()
}

/// The dtype and declared size of each storage the state dict uses, checking that all views of
/// one storage agree on its type.
fn storages_used(
    path: &Path,
    views: &[(String, TensorRef)],
) -> Result<BTreeMap<String, (StorageDtype, usize)>> {
    let mut used: BTreeMap<String, (StorageDtype, usize)> = BTreeMap::new();
    for (name, view) in views {
        let s = &view.storage;
        match used.get(&s.key) {
            Some(&(dtype, _)) if dtype != s.dtype => {
                return Err(format_error(
                    path,
                    format!(
                        "storage `{}` is used as {dtype:?} and as {:?} (by `{name}`)",
                        s.key, s.dtype
                    ),
                ))
            }
            Some(_) => {}
            None => {
                used.insert(s.key.clone(), (s.dtype, s.numel));
            }
        }
    }
    Ok(used)
}

fn read_zip(path: &Path, file: std::fs::File, options: &ReadOptions) -> Result<Checkpoint> {
    let zip_error = |message: String| WeightsError::Zip {
        path: path.to_owned(),
        message,
    };
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| zip_error(format!("cannot open: {e}")))?;
    let pickles: Vec<String> = archive
        .file_names()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_owned)
        .collect();
    let pickle_name = match pickles.as_slice() {
        [one] => one.clone(),
        [] => return Err(zip_error("no `<top>/data.pkl` member".into())),
        many => return Err(zip_error(format!("several data.pkl members: {many:?}"))),
    };
    let prefix = &pickle_name[..pickle_name.len() - "data.pkl".len()];
    let mut read_member = |name: &str| -> Result<Option<Vec<u8>>> {
        let mut member = match archive.by_name(name) {
            Ok(m) => m,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(zip_error(format!("member `{name}`: {e}"))),
        };
        let mut bytes =
            Vec::with_capacity(usize::try_from(member.size()).unwrap_or(0).min(1 << 30));
        member
            .read_to_end(&mut bytes)
            .map_err(|e| zip_error(format!("member `{name}`: {e}")))?;
        Ok(Some(bytes))
    };
    let big_endian = match read_member(&format!("{prefix}byteorder"))? {
        None => false,
        Some(b) => match b.as_slice() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(zip_error(format!(
                    "byteorder is {:?}, expected little or big",
                    String::from_utf8_lossy(other)
                )))
            }
        },
    };
    let pickle = read_member(&pickle_name)?
        .ok_or_else(|| zip_error(format!("member `{pickle_name}` vanished")))?;
    let (top, _) = unpickle(&pickle, 0, &mut storage_from_pid)?;
    let views = select_state_dict(path, &top, options)?;
    let mut storages = BTreeMap::new();
    for (key, (dtype, numel)) in storages_used(path, &views)? {
        let member = format!("{prefix}data/{key}");
        let mut bytes = read_member(&member)?
            .ok_or_else(|| zip_error(format!("storage member `{member}` is missing")))?;
        let elem = dtype.size_in_bytes();
        if bytes.len() / elem < numel {
            return Err(zip_error(format!(
                "storage `{member}` has {} bytes, expected {numel} {dtype:?} elements ({} bytes)",
                bytes.len(),
                numel.saturating_mul(elem)
            )));
        }
        bytes.truncate(numel * elem);
        if big_endian {
            swap_bytes(&mut bytes, elem);
        }
        storages.insert(key, bytes);
    }
    Ok(Checkpoint {
        format: CheckpointFormat::Zip,
        tensors: materialise_all(views, &storages)?,
    })
}

fn read_legacy(path: &Path, data: &[u8], options: &ReadOptions) -> Result<Checkpoint> {
    let mut refuse_pid = |_: &Value| -> std::result::Result<Value, String> {
        Err("persistent id outside the state-dict pickle".into())
    };
    let (magic, pos) = unpickle(data, 0, &mut refuse_pid)?;
    if !matches!(magic, Value::Int(LEGACY_MAGIC)) {
        return Err(format_error(
            path,
            format!("legacy magic number is {magic:?}, expected {LEGACY_MAGIC:#x}"),
        ));
    }
    let (protocol, pos) = unpickle(data, pos, &mut refuse_pid)?;
    if !matches!(protocol, Value::Int(LEGACY_PROTOCOL)) {
        return Err(format_error(
            path,
            format!("legacy protocol version is {protocol:?}, expected {LEGACY_PROTOCOL}"),
        ));
    }
    let (sys_info, pos) = unpickle(data, pos, &mut refuse_pid)?;
    let big_endian = matches!(
        dict_get(&sys_info, "little_endian"),
        Some(Value::Bool(false))
    );
    let (top, pos) = unpickle(data, pos, &mut storage_from_pid)?;
    let (keys, mut pos) = unpickle(data, pos, &mut refuse_pid)?;
    let keys = keys.items().ok_or_else(|| {
        format_error(
            path,
            format!("storage key list is a {}, expected a list", keys.kind()),
        )
    })?;
    let views = select_state_dict(path, &top, options)?;
    let used = storages_used(path, &views)?;
    // Every storage of the file must be stepped over in order, even those the chosen state dict
    // does not use (a nested checkpoint also stores optimiser state), so each needs a known dtype.
    let mut all_dtypes = BTreeMap::new();
    collect_storage_dtypes(&top, &mut all_dtypes);
    let mut storages = BTreeMap::new();
    for key in &keys {
        let Value::Str(key) = key else {
            return Err(format_error(
                path,
                format!("storage key is a {}, expected a string", key.kind()),
            ));
        };
        let key = key.clone();
        let dtype = *all_dtypes.get(&key).ok_or_else(|| {
            format_error(
                path,
                format!("storage `{key}` is listed but never referenced, its type is unknown"),
            )
        })?;
        let truncated = |what: &str| {
            format_error(
                path,
                format!("truncated: storage `{key}` {what} at byte {pos}"),
            )
        };
        let count_bytes = data
            .get(pos..pos + 8)
            .ok_or_else(|| truncated("lacks its element count"))?;
        let mut count = [0u8; 8];
        count.copy_from_slice(count_bytes);
        let count = if big_endian {
            u64::from_be_bytes(count)
        } else {
            u64::from_le_bytes(count)
        };
        let nbytes = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(dtype.size_in_bytes()))
            .ok_or_else(|| {
                format_error(path, format!("storage `{key}` declares {count} elements"))
            })?;
        let start = pos + 8;
        let end = start.checked_add(nbytes).filter(|&e| e <= data.len()).ok_or_else(|| {
            format_error(
                path,
                format!(
                    "truncated: storage `{key}` needs {nbytes} bytes at byte {start}, the file has {} left",
                    data.len().saturating_sub(start)
                ),
            )
        })?;
        if let Some(&(_, declared)) = used.get(&key) {
            if usize::try_from(count).ok() != Some(declared) {
                return Err(format_error(
                    path,
                    format!(
                        "storage `{key}` holds {count} elements, its persistent id says {declared}"
                    ),
                ));
            }
            let mut bytes = data[start..end].to_vec();
            if big_endian {
                swap_bytes(&mut bytes, dtype.size_in_bytes());
            }
            storages.insert(key, bytes);
        }
        pos = end;
    }
    Ok(Checkpoint {
        format: CheckpointFormat::Legacy,
        tensors: materialise_all(views, &storages)?,
    })
}

/// Records the dtype of every storage reachable from `value` through dicts, lists and tuples,
/// with an explicit work list (no recursion) and each container visited once.
fn collect_storage_dtypes(value: &Value, out: &mut BTreeMap<String, StorageDtype>) {
    let mut seen = std::collections::HashSet::new();
    let mut pending = vec![value.clone()];
    while let Some(v) = pending.pop() {
        match &v {
            Value::Tensor(t) => {
                out.insert(t.storage.key.clone(), t.storage.dtype);
            }
            Value::Storage(s) => {
                out.insert(s.key.clone(), s.dtype);
            }
            Value::Tuple(t) if seen.insert(std::rc::Rc::as_ptr(t) as usize) => {
                pending.extend(t.iter().cloned());
            }
            Value::List(l) if seen.insert(std::rc::Rc::as_ptr(l) as usize) => {
                pending.extend(l.borrow().iter().cloned());
            }
            Value::Dict(d) if seen.insert(std::rc::Rc::as_ptr(d) as usize) => {
                for (k, v) in d.borrow().iter() {
                    pending.push(k.clone());
                    pending.push(v.clone());
                }
            }
            _ => {}
        }
    }
}

/// The path of the temporary file [`super::convert_to_safetensors`] writes before renaming.
pub(crate) fn temp_path_for(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
