//! A plain row-major f64 matrix: the host-side currency of the linear-algebra routines.

use crate::{Error, Result};

/// A dense `rows × cols` matrix of f64, stored row-major: element `(i, j)` is `data[i * cols + j]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row-major elements, `rows * cols` of them.
    pub data: Vec<f64>,
}

impl Matrix {
    /// Wraps row-major `data` as a `rows × cols` matrix, checking the length.
    pub fn from_row_major(data: Vec<f64>, rows: usize, cols: usize) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::InvalidArgument {
                op: "Matrix::from_row_major",
                message: format!(
                    "expected {rows}×{cols} = {} elements, got {}",
                    rows * cols,
                    data.len()
                ),
            });
        }
        Ok(Self { rows, cols, data })
    }

    /// The `rows × cols` zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// The `n × n` identity.
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }

    /// Element `(i, j)`. Panics when out of range, like slice indexing.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The transpose `Aᵀ`.
    pub fn transpose(&self) -> Self {
        let mut t = Self::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                t.data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        t
    }

    /// The product `A · B`; errors when the inner dimensions differ.
    pub fn matmul(&self, other: &Matrix) -> Result<Matrix> {
        if self.cols != other.rows {
            return Err(Error::InvalidArgument {
                op: "Matrix::matmul",
                message: format!(
                    "inner dimensions differ: {}×{} times {}×{}",
                    self.rows, self.cols, other.rows, other.cols
                ),
            });
        }
        let mut out = Matrix::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            let out_row = &mut out.data[i * other.cols..(i + 1) * other.cols];
            for (k, &a) in self.row(i).iter().enumerate() {
                if a == 0.0 {
                    continue;
                }
                for (o, &b) in out_row.iter_mut().zip(other.row(k)) {
                    *o += a * b;
                }
            }
        }
        Ok(out)
    }

    /// The Frobenius norm `sqrt(Σ a_ij²)`.
    pub fn frobenius_norm(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum::<f64>().sqrt()
    }
}

/// Checks that `data` holds `rows * cols` finite numbers; `op` names the caller in the error.
pub(crate) fn check_finite_matrix(
    op: &'static str,
    data: &[f64],
    rows: usize,
    cols: usize,
) -> Result<()> {
    if data.len() != rows * cols {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "expected {rows}×{cols} = {} elements, got {}",
                rows * cols,
                data.len()
            ),
        });
    }
    if let Some(pos) = data.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "matrix contains a non-finite value ({}) at ({}, {})",
                data[pos],
                pos / cols.max(1),
                pos % cols.max(1)
            ),
        });
    }
    Ok(())
}

/// Dot product of two equally long slices.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
