//! Element types of PyTorch storages and materialised tensors.

use candle_core::{DType, Device, Tensor};

use super::error::{Result, WeightsError};
use super::pickle::TensorRef;

/// The element type of a PyTorch storage (`torch.FloatStorage` is [`StorageDtype::F32`], ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StorageDtype {
    /// `torch.float32` (`FloatStorage`).
    F32,
    /// `torch.float64` (`DoubleStorage`).
    F64,
    /// `torch.float16` (`HalfStorage`).
    F16,
    /// `torch.bfloat16` (`BFloat16Storage`).
    BF16,
    /// `torch.int64` (`LongStorage`).
    I64,
    /// `torch.int32` (`IntStorage`).
    I32,
    /// `torch.int16` (`ShortStorage`).
    I16,
    /// `torch.int8` (`CharStorage`).
    I8,
    /// `torch.uint8` (`ByteStorage`).
    U8,
    /// `torch.bool` (`BoolStorage`), one byte per element.
    Bool,
}

impl StorageDtype {
    /// The dtype of a `torch.<name>` storage class, if it is one this reader supports.
    pub fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// The safetensors name of the type (`F32`, `BF16`, `BOOL`, ...).
    pub fn safetensors_dtype(self) -> safetensors::Dtype {
        match self {
            Self::F32 => safetensors::Dtype::F32,
            Self::F64 => safetensors::Dtype::F64,
            Self::F16 => safetensors::Dtype::F16,
            Self::BF16 => safetensors::Dtype::BF16,
            Self::I64 => safetensors::Dtype::I64,
            Self::I32 => safetensors::Dtype::I32,
            Self::I16 => safetensors::Dtype::I16,
            Self::I8 => safetensors::Dtype::I8,
            Self::U8 => safetensors::Dtype::U8,
            Self::Bool => safetensors::Dtype::BOOL,
        }
    }
}

/// A tensor read from a checkpoint: contiguous row-major little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTensor {
    /// Element type.
    pub dtype: StorageDtype,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// `numel · dtype.size_in_bytes()` bytes, row-major, little-endian.
    pub data: Vec<u8>,
}

impl NamedTensor {
    /// Number of elements, `∏ shape`.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The tensor as a candle tensor on `device`, keeping its type where candle has it
    /// (`bool` becomes `u8`, `int8` becomes `int16`). `name` only labels errors.
    pub fn to_candle(&self, name: &str, device: &Device) -> Result<Tensor> {
        let wrap = |source| WeightsError::Candle {
            name: name.to_owned(),
            source,
        };
        let (dtype, widened);
        let bytes: &[u8] = match self.dtype {
            StorageDtype::I8 => {
                widened = self
                    .data
                    .iter()
                    .flat_map(|&b| i16::from(b as i8).to_le_bytes())
                    .collect::<Vec<u8>>();
                dtype = DType::I16;
                &widened
            }
            other => {
                dtype = match other {
                    StorageDtype::F32 => DType::F32,
                    StorageDtype::F64 => DType::F64,
                    StorageDtype::F16 => DType::F16,
                    StorageDtype::BF16 => DType::BF16,
                    StorageDtype::I64 => DType::I64,
                    StorageDtype::I32 => DType::I32,
                    StorageDtype::I16 => DType::I16,
                    StorageDtype::U8 | StorageDtype::Bool | StorageDtype::I8 => DType::U8,
                };
                &self.data
            }
        };
        Tensor::from_raw_buffer(bytes, dtype, &self.shape, device).map_err(wrap)
    }
}

impl safetensors::View for &NamedTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.safetensors_dtype()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Copies the elements a strided view selects out of its storage into a contiguous tensor.
///
/// `storage` holds the root storage's little-endian bytes; the view's first element is at element
/// `view.storage.view_offset + view.offset` and element `(i_0, …, i_{n-1})` at that plus
/// `Σ_k i_k · stride_k`. Every index is bounds-checked before any copy.
pub(crate) fn materialise(name: &str, view: &TensorRef, storage: &[u8]) -> Result<NamedTensor> {
    let bad = |message: String| WeightsError::BadTensor {
        name: name.to_owned(),
        message,
    };
    let dtype = view.storage.dtype;
    let elem = dtype.size_in_bytes();
    let storage_numel = storage.len() / elem;
    let numel = view
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {:?} overflows", view.shape)))?;
    // A view selecting more elements than its storage holds must reuse elements (stride 0 or
    // overlapping strides): state dicts never hold one, and copying it out would let a few bytes
    // of pickle announce a terabyte-sized tensor.
    if numel > storage_numel {
        return Err(bad(format!(
            "view of shape {:?} (stride {:?}) selects {numel} elements, more than its storage `{}` holds ({storage_numel}); broadcast or overlapping views are not supported",
            view.shape, view.stride, view.storage.key
        )));
    }
    let shape = view.shape.clone();
    if numel == 0 {
        return Ok(NamedTensor {
            dtype,
            shape,
            data: Vec::new(),
        });
    }
    let start = view
        .storage
        .view_offset
        .checked_add(view.offset)
        .ok_or_else(|| bad("storage offset overflows".into()))?;
    let last = view
        .shape
        .iter()
        .zip(&view.stride)
        .try_fold(start, |acc, (&d, &s)| {
            (d - 1)
                .checked_mul(s)
                .and_then(|step| acc.checked_add(step))
        });
    match last {
        Some(last) if last < storage_numel => {}
        _ => {
            return Err(bad(format!(
                "view (offset {start}, shape {:?}, stride {:?}) reaches past its storage `{}` of {storage_numel} {:?} elements",
                view.shape, view.stride, view.storage.key, dtype
            )))
        }
    }
    let mut expected_stride = 1usize;
    let mut contiguous = true;
    for (&d, &s) in view.shape.iter().zip(&view.stride).rev() {
        if d != 1 && s != expected_stride {
            contiguous = false;
        }
        expected_stride *= d;
    }
    if contiguous {
        let data = storage[start * elem..(start + numel) * elem].to_vec();
        return Ok(NamedTensor { dtype, shape, data });
    }
    let mut data = Vec::with_capacity(numel * elem);
    let mut index = vec![0usize; view.shape.len()];
    for _ in 0..numel {
        let at = start
            + index
                .iter()
                .zip(&view.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        data.extend_from_slice(&storage[at * elem..(at + 1) * elem]);
        for k in (0..index.len()).rev() {
            index[k] += 1;
            if index[k] < view.shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    Ok(NamedTensor { dtype, shape, data })
}

/// Reverses the byte order of every `elem`-byte element (checkpoints written on big-endian hosts).
pub(crate) fn swap_bytes(data: &mut [u8], elem: usize) {
    if elem > 1 {
        for chunk in data.chunks_exact_mut(elem) {
            chunk.reverse();
        }
    }
}
