//! Feature tensors as row matrices: one row per sample (pooled features) or per sample × spatial
//! position (dense features), one column per channel.

use candle_core::Tensor;

use crate::{Error, Result};

/// `(N, C) → (N, C)`; `(N, C, H, W) → (N·H·W, C)` with rows ordered `(n, h, w)`.
///
/// This is the matrix view in which a 1×1 convolution is a matrix product and in which the
/// decomposition of `docs/method.md` is stated.
pub fn feature_rows(x: &Tensor, what: &str) -> Result<Tensor> {
    match x.rank() {
        2 => Ok(x.clone()),
        4 => {
            let (n, c, h, w) = x.dims4()?;
            Ok(x.permute((0, 2, 3, 1))?
                .contiguous()?
                .reshape((n * h * w, c))?)
        }
        _ => Err(Error::Shape {
            context: what.to_string(),
            expected: "pooled features (N, C) or dense features (N, C, H, W)".into(),
            got: x.dims().to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn dense_rows_are_positions_and_columns_are_channels() {
        let x = Tensor::arange(0f32, 2. * 3. * 2. * 2., &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 2, 2))
            .unwrap();
        let rows = feature_rows(&x, "test").unwrap();
        assert_eq!(rows.dims(), &[8, 3]);
        // Row (n=1, h=0, w=1) is index 1·4 + 0·2 + 1 = 5; its channels are x[1, :, 0, 1].
        let expect: Vec<f32> = x.i((1, .., 0, 1)).unwrap().to_vec1().unwrap();
        let got: Vec<f32> = rows.i(5).unwrap().to_vec1().unwrap();
        assert_eq!(got, expect);
    }

    #[test]
    fn rejects_other_ranks() {
        let x = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            feature_rows(&x, "student feature"),
            Err(Error::Shape { .. })
        ));
    }
}
