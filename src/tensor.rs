//! A host tensor: f32 values in row-major (NCHW) order with their shape.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Input(format!("tensor of shape {shape:?} needs {n} values, got {}", data.len())));
        }
        Ok(Tensor { shape, data })
    }

    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor { shape, data: vec![0.0; n] }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }

    /// Largest absolute difference to `other` (infinite if the shapes differ or a value is NaN).
    /// How far `self` is from `want` (images in −1 … 1): (RMSE, max |err|, PSNR in dB over the range 2).
    pub fn reconstruction_error(&self, want: &Tensor) -> (f32, f32, f32) {
        let n = self.data.len().max(1) as f32;
        let rmse = (self.data.iter().zip(&want.data).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / n).sqrt();
        (rmse, self.max_abs_diff(want), 20.0 * (2.0 / rmse).log10())
    }

    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        if self.shape != other.shape {
            return f32::INFINITY;
        }
        self.data.iter().zip(&other.data).fold(0.0f32, |m, (a, b)| {
            let d = (a - b).abs();
            if d.is_nan() {
                f32::INFINITY
            } else {
                m.max(d)
            }
        })
    }
}
