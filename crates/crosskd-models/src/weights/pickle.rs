//! A restricted pickle reader: the opcodes and globals of a PyTorch state dict, nothing else.
//!
//! A pickle is a program for a stack machine; `pickle.load` runs it and may call any importable
//! function (`os.system` included). This reader never calls anything: it recognises the handful
//! of callables a state dict is built from (`collections.OrderedDict`, the `torch._utils` tensor
//! rebuilders, the `torch.*Storage` types) and evaluates them itself into plain data. Every other
//! opcode or global is refused with its name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::error::{Result, WeightsError};
use super::tensor::StorageDtype;

/// A global the reader agrees to name; everything else is refused at `GLOBAL`/`STACK_GLOBAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)` (torch < 0.4).
    RebuildTensor,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state(data, requires_grad, hooks, state)`.
    RebuildParameterWithState,
    /// `torch.Size(tuple)`.
    TorchSize,
    /// `torch.FloatStorage` and friends: only used inside persistent ids.
    Storage(StorageDtype),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Result<Self> {
        let global = match (module, name) {
            ("collections", "OrderedDict") => Self::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Self::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor") => Self::RebuildTensor,
            ("torch._utils", "_rebuild_parameter") => Self::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Self::RebuildParameterWithState,
            ("torch", "Size") => Self::TorchSize,
            ("torch", storage) => match StorageDtype::from_storage_name(storage) {
                Some(dtype) => Self::Storage(dtype),
                None => return Err(WeightsError::ForbiddenGlobal(format!("{module}.{name}"))),
            },
            _ => return Err(WeightsError::ForbiddenGlobal(format!("{module}.{name}"))),
        };
        Ok(global)
    }
}

/// A storage named by a persistent id: where its bytes are and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// The storage key (`archive/data/<key>` in zip files, the legacy key list otherwise).
    pub key: String,
    /// The element type.
    pub dtype: StorageDtype,
    /// Element offset of this view into the root storage (legacy `view_metadata`, else 0).
    pub view_offset: usize,
    /// Number of elements declared by the persistent id.
    pub numel: usize,
}

/// A tensor rebuilt from `_rebuild_tensor_v2`: a strided view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    /// The storage viewed.
    pub storage: StorageRef,
    /// Element offset into the storage.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
}

/// A value on the pickle stack. Lists and dicts are shared (`Rc`) because the memo refers to the
/// same object that later `APPENDS`/`SETITEMS` fill, as in Python.
///
/// A hostile pickle can nest containers millions deep (one `TUPLE1` byte per level) or make them
/// contain themselves, so `Value` is never walked recursively: `Debug` prints only the kind and
/// `Drop` unlinks children iteratively.
#[derive(Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i128),
    // State dicts carry floats only in metadata we skip; the value is kept for the tests.
    #[allow(dead_code)]
    Float(f64),
    Str(String),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        detach_children(self, &mut pending);
        while let Some(mut child) = pending.pop() {
            detach_children(&mut child, &mut pending);
        }
    }
}

/// Moves the children of a container this value solely owns into `pending`, so that dropping it
/// does not recurse.
fn detach_children(value: &mut Value, pending: &mut Vec<Value>) {
    match value {
        Value::Tuple(t) => {
            if let Some(items) = Rc::get_mut(t) {
                pending.append(items);
            }
        }
        Value::List(l) => {
            if let Some(items) = Rc::get_mut(l) {
                pending.append(items.get_mut());
            }
        }
        Value::Dict(d) => {
            if let Some(items) = Rc::get_mut(d) {
                for (k, v) in items.get_mut().drain(..) {
                    pending.push(k);
                    pending.push(v);
                }
            }
        }
        _ => {}
    }
}

impl Value {
    /// A short type name for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    /// The elements of a tuple or list.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// A non-negative integer.
    pub fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
    }
}

/// The opcode names of `pickletools`, for error messages.
fn opcode_name(code: u8) -> &'static str {
    match code {
        0x28 => "MARK",
        0x2e => "STOP",
        0x30 => "POP",
        0x31 => "POP_MARK",
        0x32 => "DUP",
        0x46 => "FLOAT",
        0x49 => "INT",
        0x4a => "BININT",
        0x4b => "BININT1",
        0x4c => "LONG",
        0x4d => "BININT2",
        0x4e => "NONE",
        0x50 => "PERSID",
        0x51 => "BINPERSID",
        0x52 => "REDUCE",
        0x53 => "STRING",
        0x54 => "BINSTRING",
        0x55 => "SHORT_BINSTRING",
        0x56 => "UNICODE",
        0x58 => "BINUNICODE",
        0x61 => "APPEND",
        0x62 => "BUILD",
        0x63 => "GLOBAL",
        0x64 => "DICT",
        0x7d => "EMPTY_DICT",
        0x65 => "APPENDS",
        0x67 => "GET",
        0x68 => "BINGET",
        0x69 => "INST",
        0x6a => "LONG_BINGET",
        0x6c => "LIST",
        0x5d => "EMPTY_LIST",
        0x6f => "OBJ",
        0x70 => "PUT",
        0x71 => "BINPUT",
        0x72 => "LONG_BINPUT",
        0x73 => "SETITEM",
        0x74 => "TUPLE",
        0x29 => "EMPTY_TUPLE",
        0x75 => "SETITEMS",
        0x47 => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x42 => "BINBYTES",
        0x43 => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

/// Turns a persistent id (the value before `BINPERSID`) into the object it stands for.
pub(crate) type PersistentLoad<'a> = dyn FnMut(&Value) -> std::result::Result<Value, String> + 'a;

/// Runs one pickle starting at `data[start]` and returns the value left by `STOP` and the offset
/// just after it (legacy checkpoints hold several pickles back to back).
pub(crate) fn unpickle(
    data: &[u8],
    start: usize,
    persistent_load: &mut PersistentLoad<'_>,
) -> Result<(Value, usize)> {
    Machine {
        data,
        pos: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run(persistent_load)
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn malformed(&self, message: impl Into<String>) -> WeightsError {
        WeightsError::MalformedPickle {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                self.malformed(format!(
                    "truncated: needed {n} more bytes, {} left",
                    self.data.len() - self.pos
                ))
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.malformed("truncated: unterminated line"))?;
        let text = std::str::from_utf8(&rest[..len])
            .map_err(|_| self.malformed("line is not UTF-8"))?
            .to_owned();
        self.pos += len + 1;
        Ok(text)
    }

    fn string(&mut self, len: u64) -> Result<Value> {
        let len = usize::try_from(len).map_err(|_| self.malformed("string length overflows"))?;
        let bytes = self.take(len)?;
        let decoded = std::str::from_utf8(bytes).map(str::to_owned).ok();
        let text = decoded.ok_or_else(|| self.malformed("string is not UTF-8"))?;
        Ok(Value::Str(text))
    }

    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.malformed("stack underflow (popped past a MARK)"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Value> {
        let pos = self.pos;
        self.stack.last_mut().ok_or(WeightsError::MalformedPickle {
            offset: pos,
            message: "stack underflow".into(),
        })
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&mut self, index: u32) -> Result<()> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo key {index} not set")))?;
        self.stack.push(value);
        Ok(())
    }

    fn memo_put(&mut self, index: u32) -> Result<()> {
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of items"));
        }
        let pos = self.pos;
        match self.top()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    match d.iter_mut().find(|(old, _)| same_key(old, &k)) {
                        Some(slot) => slot.1 = v,
                        None => d.push((k, v)),
                    }
                }
                Ok(())
            }
            other => Err(WeightsError::MalformedPickle {
                offset: pos,
                message: format!("SETITEM(S) on a {}, expected a dict", other.kind()),
            }),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        let pos = self.pos;
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => Err(WeightsError::MalformedPickle {
                offset: pos,
                message: format!("APPEND(S) on a {}, expected a list", other.kind()),
            }),
        }
    }

    fn run(mut self, persistent_load: &mut PersistentLoad<'_>) -> Result<(Value, usize)> {
        loop {
            let op_pos = self.pos;
            let code = self.u8()?;
            match code {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(
                            self.malformed(format!("pickle protocol {proto}, expected at most 5"))
                        );
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                0x7d => self.stack.push(Value::Dict(Rc::default())),
                0x5d => self.stack.push(Value::List(Rc::default())),
                0x29 => self.stack.push(Value::Tuple(Rc::default())),
                0x28 => self.marks.push(self.stack.len()),
                0x58 => {
                    let n = self.u32()?;
                    let v = self.string(n.into())?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()?;
                    let v = self.string(n.into())?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x4a => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v.into()));
                }
                0x4b => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()));
                }
                0x4d => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v.into()));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    if n > 16 {
                        return Err(
                            self.malformed(format!("LONG1 of {n} bytes, at most 16 supported"))
                        );
                    }
                    let bytes = self.take(n)?;
                    // Little-endian two's complement, sign-extended to 128 bits.
                    let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
                    let mut wide = [fill; 16];
                    wide[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i128::from_le_bytes(wide)));
                }
                0x47 => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                0x4e => self.stack.push(Value::None),
                0x74 => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(code - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x73 => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                0x75 => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                0x61 => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                0x65 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                0x68 => {
                    let i = self.u8()?;
                    self.memo_get(i.into())?;
                }
                0x6a => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                0x71 => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?;
                }
                0x72 => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| self.malformed("memo overflow"))?;
                    self.memo_put(i)?;
                }
                0x63 => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack
                        .push(Value::Global(Global::resolve(&module, &name)?));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.stack.push(Value::Global(Global::resolve(m, n)?))
                        }
                        (m, n) => {
                            return Err(self.malformed(format!(
                                "STACK_GLOBAL expects two strings, found {} and {}",
                                m.kind(),
                                n.kind()
                            )))
                        }
                    }
                }
                0x52 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value =
                        reduce(callable, args).map_err(|m| WeightsError::MalformedPickle {
                            offset: op_pos,
                            message: m,
                        })?;
                    self.stack.push(value);
                }
                0x51 => {
                    let pid = self.pop()?;
                    let value =
                        persistent_load(&pid).map_err(|m| WeightsError::MalformedPickle {
                            offset: op_pos,
                            message: m,
                        })?;
                    self.stack.push(value);
                }
                0x50 => {
                    let pid = Value::Str(self.line()?);
                    let value =
                        persistent_load(&pid).map_err(|m| WeightsError::MalformedPickle {
                            offset: op_pos,
                            message: m,
                        })?;
                    self.stack.push(value);
                }
                0x62 => {
                    let state = self.pop()?;
                    let pos = self.pos;
                    match (self.top()?, &state) {
                        // An OrderedDict's instance attributes: torch stores `_metadata` (module
                        // versions) there. They are not items of the dict and carry no weights.
                        (Value::Dict(_), Value::Dict(_) | Value::None) => {}
                        (obj, _) => {
                            return Err(WeightsError::MalformedPickle {
                                offset: pos,
                                message: format!(
                                    "BUILD of a {} with a {} state is not supported",
                                    obj.kind(),
                                    state.kind()
                                ),
                            })
                        }
                    }
                }
                0x2e => {
                    let value = self.pop()?;
                    if !self.stack.is_empty() || !self.marks.is_empty() {
                        return Err(self.malformed("STOP with values left on the stack"));
                    }
                    return Ok((value, self.pos));
                }
                other => {
                    return Err(WeightsError::UnsupportedOpcode {
                        name: opcode_name(other),
                        code: other,
                        offset: op_pos,
                    });
                }
            }
        }
    }
}

/// Dict keys compare by value for the scalar types a state dict uses; anything else never matches
/// (so a duplicate key of another type is kept twice rather than guessed at).
fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::None, Value::None) => true,
        _ => false,
    }
}

fn usize_list(value: &Value, what: &str) -> std::result::Result<Vec<usize>, String> {
    let items = value
        .items()
        .ok_or_else(|| format!("{what}: expected a tuple, found {}", value.kind()))?;
    items
        .iter()
        .map(|v| {
            v.as_usize()
                .ok_or_else(|| format!("{what}: expected non-negative ints, found {}", v.kind()))
        })
        .collect()
}

/// Evaluates `REDUCE` for the allow-listed callables.
fn reduce(callable: Value, args: Value) -> std::result::Result<Value, String> {
    let Value::Global(global) = callable else {
        return Err(format!(
            "REDUCE on a {}, expected an allow-listed global",
            callable.kind()
        ));
    };
    let args = match &args {
        Value::Tuple(t) => t.clone(),
        other => {
            return Err(format!(
                "REDUCE arguments are a {}, expected a tuple",
                other.kind()
            ))
        }
    };
    match global {
        Global::OrderedDict => match args.as_slice() {
            [] => Ok(Value::Dict(Rc::default())),
            [pairs] => {
                let pairs = pairs
                    .items()
                    .ok_or("OrderedDict(arg): expected a list of pairs")?;
                let mut dict = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    match pair.items().as_deref() {
                        Some([k, v]) => dict.push((k.clone(), v.clone())),
                        _ => return Err("OrderedDict(arg): expected (key, value) pairs".into()),
                    }
                }
                Ok(Value::Dict(Rc::new(RefCell::new(dict))))
            }
            _ => Err(format!(
                "OrderedDict with {} arguments, expected 0 or 1",
                args.len()
            )),
        },
        Global::RebuildTensorV2 | Global::RebuildTensor => {
            let min_args = if global == Global::RebuildTensorV2 {
                6
            } else {
                4
            };
            if args.len() < min_args || args.len() > min_args + 1 {
                return Err(format!(
                    "tensor rebuild with {} arguments, expected {min_args}",
                    args.len()
                ));
            }
            let Value::Storage(storage) = &args[0] else {
                return Err(format!(
                    "tensor rebuild: first argument is a {}, expected a storage",
                    args[0].kind()
                ));
            };
            let offset = args[1]
                .as_usize()
                .ok_or("tensor rebuild: storage offset is not a non-negative int")?;
            let shape = usize_list(&args[2], "tensor size")?;
            let stride = usize_list(&args[3], "tensor stride")?;
            if shape.len() != stride.len() {
                return Err(format!(
                    "tensor rebuild: size {shape:?} and stride {stride:?} differ in rank"
                ));
            }
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset,
                shape,
                stride,
            }))
        }
        Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Err("parameter rebuild: first argument is not a tensor".into()),
        },
        Global::TorchSize => match args.as_slice() {
            [t @ Value::Tuple(_)] => Ok(t.clone()),
            _ => Err("torch.Size expects one tuple".into()),
        },
        Global::Storage(dtype) => Err(format!("a storage type ({dtype:?}) cannot be called")),
    }
}
