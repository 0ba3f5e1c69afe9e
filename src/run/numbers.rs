//! The per-step numbers of a frame (the page's numbers row, `FrameInfo.numbers`): the noise level
//! σ_t and log-SNR of its timestep on the model's VP schedule, the norm of x_t, and how far the
//! prediction x̂₀ moved since the previous frame — what the sampler does, step by step, in numbers.

use crate::Tensor;

/// One frame's numbers. Norms are L2 over an image, averaged over the batch (a unit Gaussian
/// x_T of D values has ‖x‖ ≈ √D).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepNumbers {
    /// √(1 − ᾱ_t).
    pub sigma: f32,
    /// log(ᾱ_t / (1 − ᾱ_t)).
    pub log_snr: f32,
    pub x_norm: f32,
    /// ‖x̂₀ − x̂₀(previous frame)‖; None at the first frame.
    pub x0_change: Option<f32>,
}

/// Keeps the previous frame's x̂₀ across a run.
pub struct NumbersTracker {
    alphas_cumprod: Vec<f32>,
    prev_x0: Option<Tensor>,
}

impl NumbersTracker {
    pub fn new(alphas_cumprod: Vec<f32>) -> Self {
        NumbersTracker { alphas_cumprod, prev_x0: None }
    }

    /// The numbers of a frame at model timestep `t` showing `x` and `x0` ([N, …]).
    pub fn frame(&mut self, t: f32, x: &Tensor, x0: &Tensor) -> StepNumbers {
        let sigma = crate::sampler::schedule::vp_sigma(&self.alphas_cumprod, t);
        let (s2, a2) = ((sigma as f64).powi(2), 1.0 - (sigma as f64).powi(2));
        let log_snr = (a2 / s2.max(f64::MIN_POSITIVE)).ln() as f32;
        let x0_change = self.prev_x0.as_ref().filter(|p| p.shape == x0.shape).map(|p| mean_item_norm(x0, Some(p)));
        self.prev_x0 = Some(x0.clone());
        StepNumbers { sigma, log_snr, x_norm: mean_item_norm(x, None), x0_change }
    }
}

/// The L2 norm of each item of `a` (minus `b`), averaged over the batch.
fn mean_item_norm(a: &Tensor, b: Option<&Tensor>) -> f32 {
    let n = a.shape.first().copied().unwrap_or(1).max(1);
    let per = a.data.len() / n;
    if per == 0 {
        return 0.0;
    }
    let norms: f64 = (0..n)
        .map(|i| {
            let range = i * per..(i + 1) * per;
            let sq: f64 = match b {
                Some(b) => a.data[range.clone()].iter().zip(&b.data[range]).map(|(x, y)| ((x - y) as f64).powi(2)).sum(),
                None => a.data[range].iter().map(|&x| (x as f64).powi(2)).sum(),
            };
            sq.sqrt()
        })
        .sum();
    (norms / n as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_schedule_and_the_tensors() {
        let acp = vec![0.99, 0.5, 0.01];
        let mut t = NumbersTracker::new(acp);
        let x = Tensor::new(vec![2, 1, 1, 2], vec![3.0, 4.0, 0.0, 0.0]).unwrap();
        let first = t.frame(1.0, &x, &x);
        assert!((first.sigma - 0.5f32.sqrt()).abs() < 1e-6 && first.log_snr.abs() < 1e-5, "{first:?}");
        assert_eq!((first.x_norm, first.x0_change), (2.5, None)); // (5 + 0) / 2
        let moved = Tensor::new(vec![2, 1, 1, 2], vec![3.0, 4.0, 6.0, 8.0]).unwrap();
        let second = t.frame(0.0, &x, &moved);
        assert_eq!(second.x0_change, Some(5.0)); // (0 + 10) / 2
        assert!((second.log_snr - (0.99f64 / 0.01).ln() as f32).abs() < 1e-3, "{second:?}");
    }
}
