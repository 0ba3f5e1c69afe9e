//! What the VP (ᾱ-space) classes share: integer timestep spacing, x0/ε from the model output,
//! and x0's clipping or dynamic thresholding.

use super::config::{threshold_sample, Cfg, Prediction};
use super::sigmas::Spacing;
use crate::error::{Error, Result};
use crate::sampler::solvers::linspace;

/// `set_timesteps(n)` of DDIM, DDPM and PNDM-style classes: integer timesteps, noisiest first.
pub fn spaced_timesteps(spacing: Spacing, t: usize, n: usize, steps_offset: usize, class: &str) -> Result<Vec<i64>> {
    if n == 0 || n > t {
        return Err(Error::Scheduler(format!("{class}: {n} inference steps: must be from 1 to num_train_timesteps = {t}")));
    }
    let ts: Vec<i64> = match spacing {
        Spacing::Linspace => linspace(0.0, (t - 1) as f64, n).iter().rev().map(|v| v.round_ties_even() as i64).collect(),
        Spacing::Leading => (0..n).rev().map(|i| (i * (t / n) + steps_offset) as i64).collect(),
        Spacing::Trailing => {
            let ratio = t as f64 / n as f64;
            let len = (t as f64 / ratio).ceil() as usize;
            (0..len).map(|i| (t as f64 - i as f64 * ratio).round_ties_even() as i64 - 1).collect()
        }
    };
    if let Some(bad) = ts.iter().find(|&&v| v < 0 || v as usize >= t) {
        return Err(Error::Scheduler(format!("{class}: timestep {bad} outside 0..{t} (`steps_offset` too large?)")));
    }
    Ok(ts)
}

/// How x0 is bounded: `thresholding` (dynamic, per batch item) wins over `clip_sample`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum X0Bound {
    None,
    Clip(f32),
    Threshold { ratio: f64, max: f64 },
}

impl X0Bound {
    /// `clip_default` is the class's default of clip_sample.
    pub fn read(cfg: &Cfg, clip_default: bool) -> Result<Self> {
        Ok(if cfg.bool("thresholding", false)? {
            let ratio = cfg.f64("dynamic_thresholding_ratio", 0.995)?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err(Error::Scheduler(format!("`dynamic_thresholding_ratio` = {ratio}: must be in [0, 1]")));
            }
            X0Bound::Threshold { ratio, max: cfg.f64("sample_max_value", 1.0)? }
        } else if cfg.bool("clip_sample", clip_default)? {
            X0Bound::Clip(cfg.f64("clip_sample_range", 1.0)? as f32)
        } else {
            X0Bound::None
        })
    }

    /// Bounds x0 in place; `batch` is the number of items in the flat sample (thresholding's
    /// quantile is per item).
    pub fn apply(self, x0: &mut [f32], batch: usize, class: &str) -> Result<()> {
        match self {
            X0Bound::None => {}
            X0Bound::Clip(r) => x0.iter_mut().for_each(|v| *v = v.clamp(-r, r)),
            X0Bound::Threshold { ratio, max } => {
                if batch == 0 || !x0.len().is_multiple_of(batch) {
                    return Err(Error::Input(format!("{class}: a sample of {} values is not {batch} equal batch items", x0.len())));
                }
                threshold_sample(x0, ratio, max, batch)
            }
        }
        Ok(())
    }
}

/// (x0, ε) from the model output at ᾱ_t = a, as DDIM/DDPM compute them in f32.
pub fn x0_eps(prediction: Prediction, a: f32, sample: &[f32], model_output: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
    sample
        .iter()
        .zip(model_output)
        .map(|(&x, &m)| match prediction {
            Prediction::Epsilon => ((x - sb * m) / sa, m),
            Prediction::Sample => (m, (x - sa * m) / sb),
            Prediction::VPrediction => (sa * x - sb * m, sa * m + sb * x),
        })
        .unzip()
}

/// ᾱ at timestep t (an error naming t outside the schedule).
pub fn alpha_at(alphas_cumprod: &[f32], t: i64, class: &str) -> Result<f32> {
    usize::try_from(t)
        .ok()
        .and_then(|i| alphas_cumprod.get(i).copied())
        .ok_or_else(|| Error::Scheduler(format!("{class}: timestep {t} outside 0..{}", alphas_cumprod.len())))
}
