//! Reading a diffusers `scheduler_config.json` the way `from_config` does: each class reads its
//! own keys with its own defaults and ignores the others; a value it cannot use is an error naming
//! the key. Also the noise schedule every class builds from betas (`alphas_cumprod`, f32 as torch).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::sampler::schedule::{linspace_f32, quote_python_floats};

/// A parsed `scheduler_config.json`, read key by key.
#[derive(Clone, Debug)]
pub struct Cfg {
    map: Map<String, Value>,
}

fn bad(key: &str, value: &Value, want: &str) -> Error {
    Error::Scheduler(format!("`{key}` = {value}: expected {want}"))
}

impl Cfg {
    pub fn parse(json: &str) -> Result<Self> {
        // Python's json writes -inf as a bare `-Infinity` (DPMSolverMultistepScheduler's
        // lambda_min_clipped): read such tokens as strings.
        let text = quote_python_floats(json);
        let value = crate::json::parse_json(&text).map_err(|e| Error::Scheduler(format!("scheduler_config.json: {e}")))?;
        match value {
            Value::Object(map) => Ok(Cfg { map }),
            other => Err(Error::Scheduler(format!("scheduler_config.json: expected a JSON object, got {other}"))),
        }
    }

    /// The value of `key`; a JSON null counts as absent (diffusers writes `None` as null).
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn class_name(&self) -> Option<&str> {
        self.map.get("_class_name").and_then(Value::as_str)
    }

    pub fn usize(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| bad(key, v, "a non-negative integer")),
        }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s == "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            Some(Value::String(s)) if s == "Infinity" => Ok(Some(f64::INFINITY)),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| bad(key, v, "a number")),
        }
    }

    pub fn f64(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| bad(key, v, "true or false")),
        }
    }

    /// A string key restricted to `allowed` (diffusers' spellings).
    pub fn choice(&self, key: &str, default: &'static str, allowed: &[&'static str]) -> Result<&'static str> {
        let text = match self.get(key) {
            None => return Ok(default),
            Some(Value::String(s)) => s.as_str(),
            Some(v) => return Err(bad(key, v, &format!("one of {}", allowed.join(", ")))),
        };
        allowed
            .iter()
            .find(|a| **a == text)
            .copied()
            .ok_or_else(|| Error::Scheduler(format!("`{key}` = {text:?}: expected one of {}", allowed.join(", "))))
    }

    /// A string key restricted to `allowed`, or absent/null.
    pub fn get_str_or_null(&self, key: &str, allowed: &[&'static str]) -> Result<Option<&'static str>> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.choice(key, allowed[0], allowed).map(Some),
        }
    }

    pub fn opt_f64_list(&self, key: &str) -> Result<Option<Vec<f64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                items.iter().map(|v| v.as_f64().ok_or_else(|| bad(key, v, "a list of numbers"))).collect::<Result<Vec<_>>>().map(Some)
            }
            Some(v) => Err(bad(key, v, "a list of numbers")),
        }
    }

    pub fn usize_list(&self, key: &str) -> Result<Vec<usize>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                items.iter().map(|v| v.as_u64().map(|n| n as usize).ok_or_else(|| bad(key, v, "a list of non-negative integers"))).collect()
            }
            Some(v) => Err(bad(key, v, "a list of non-negative integers")),
        }
    }

    /// Whether `key` is set to something other than null.
    pub fn is_set(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Refuses a key whose value this port does not implement (never a silent substitute).
    pub fn refuse_true(&self, key: &str) -> Result<()> {
        if self.bool(key, false)? {
            return Err(Error::Scheduler(format!("`{key}` = true is not implemented")));
        }
        Ok(())
    }
}

/// `prediction_type` as diffusers spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
    Sample,
}

impl Prediction {
    /// The prediction types a class accepts (`allowed` ⊆ epsilon, v_prediction, sample).
    pub fn read(cfg: &Cfg, allowed: &[&'static str]) -> Result<Self> {
        Ok(match cfg.choice("prediction_type", "epsilon", allowed)? {
            "v_prediction" => Prediction::VPrediction,
            "sample" => Prediction::Sample,
            _ => Prediction::Epsilon,
        })
    }
}

/// The betas → alphas_cumprod of a class, from the keys every class reads: num_train_timesteps,
/// beta_start, beta_end, beta_schedule, trained_betas (and rescale_betas_zero_snr where the
/// class reads it).
#[derive(Clone, Debug)]
pub struct NoiseSchedule {
    pub betas: Vec<f32>,
    pub alphas_cumprod: Vec<f32>,
    /// rescale_betas_zero_snr was applied: ᾱ_T = 0.
    pub zero_snr: bool,
}

impl NoiseSchedule {
    /// `beta_start`/`beta_end` defaults are the class's; `schedules` the beta_schedule values it
    /// implements; `zero_snr` whether it reads rescale_betas_zero_snr.
    pub fn read(cfg: &Cfg, beta_start: f64, beta_end: f64, schedules: &[&'static str], zero_snr: bool) -> Result<Self> {
        let t = cfg.usize("num_train_timesteps", 1000)?;
        if !(2..=1_000_000).contains(&t) {
            return Err(Error::Scheduler(format!("`num_train_timesteps` = {t}: must be from 2 to 1000000")));
        }
        let (start, end) = (cfg.f64("beta_start", beta_start)?, cfg.f64("beta_end", beta_end)?);
        let schedule = cfg.choice("beta_schedule", "linear", schedules)?;
        let mut betas: Vec<f32> = match cfg.opt_f64_list("trained_betas")? {
            Some(b) if b.len() != t => {
                return Err(Error::Scheduler(format!("`trained_betas` has {} entries, num_train_timesteps is {t}", b.len())))
            }
            Some(b) => b.iter().map(|&v| v as f32).collect(),
            None => match schedule {
                "linear" => linspace_f32(start, end, t),
                "scaled_linear" => linspace_f32(start.sqrt(), end.sqrt(), t).iter().map(|v| v * v).collect(),
                "squaredcos_cap_v2" => betas_for_alpha_bar(t, |s| ((s + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2)),
                "laplace" => betas_for_alpha_bar(t, |s| {
                    let lmb = -0.5 * (0.5 - s).signum() * (1.0 - 2.0 * (0.5 - s).abs() + 1e-6).ln();
                    let snr = lmb.exp();
                    (snr / (1.0 + snr)).sqrt()
                }),
                "sigmoid" => {
                    // torch.sigmoid(linspace(-6, 6)) · (end − start) + start, in f32.
                    let (scale, start32) = ((end - start) as f32, start as f32);
                    linspace_f32(-6.0, 6.0, t).iter().map(|x| 1.0 / (1.0 + (-x).exp()) * scale + start32).collect()
                }
                _ => betas_for_alpha_bar(t, |s| (s * -12.0).exp()), // "exp"
            },
        };
        if let Some((i, v)) = betas.iter().enumerate().find(|(_, v)| !(0.0..1.0).contains(*v)) {
            return Err(Error::Scheduler(format!("beta {i} = {v} (from `beta_schedule`/`trained_betas`): betas must be in [0, 1)")));
        }
        let rescale = zero_snr && cfg.bool("rescale_betas_zero_snr", false)?;
        if rescale {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let alphas_cumprod = cumprod(&betas);
        Ok(NoiseSchedule { betas, alphas_cumprod, zero_snr: rescale })
    }

    /// What the sigma-space classes do after a zero-SNR rescale: ᾱ_T = 2⁻²⁴, "close to 0
    /// without being 0 so first sigma is not inf".
    pub fn terminal_not_zero(mut self) -> Self {
        if self.zero_snr {
            *self.alphas_cumprod.last_mut().expect("T ≥ 2") = 2f32.powi(-24);
        }
        self
    }

    pub fn num_train_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// σ_t = √((1 − ᾱ_t)/ᾱ_t) over the train timesteps, in f32 as torch computes it.
    pub fn train_sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
    }

    /// `add_noise` of the VP schedulers: √ᾱ_t·x0 + √(1−ᾱ_t)·noise in f32.
    pub fn add_noise_vp(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
        let a = *(t >= 0.0 && t.fract() == 0.0)
            .then(|| self.alphas_cumprod.get(t as usize))
            .flatten()
            .ok_or_else(|| Error::Scheduler(format!("add_noise: timestep {t} is not an integer in 0..{}", self.alphas_cumprod.len())))?;
        check_len("noise", noise, x0.len())?;
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        Ok(x0.iter().zip(noise).map(|(x, z)| sa * x + sb * z).collect())
    }
}

/// `torch.cumprod` of 1 − β in f32: accumulate in f64 and round once per entry (bit-exact with
/// torch's CPU kernel for these lengths, as `Schedule` checks).
fn cumprod(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= (1.0f32 - b) as f64;
            acc as f32
        })
        .collect()
}

/// `betas_for_alpha_bar`: Python floats, stored as f32, capped at 0.999.
fn betas_for_alpha_bar(t: usize, alpha_bar: impl Fn(f64) -> f64) -> Vec<f32> {
    (0..t)
        .map(|i| {
            let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1) in f32 as torch: shift and scale
/// √ᾱ so that the last timestep has zero SNR while the first keeps its value.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let mut sqrt: Vec<f32> = cumprod(betas).iter().map(|a| a.sqrt()).collect();
    let (first, last) = (sqrt[0], sqrt[sqrt.len() - 1]);
    let scale = first / (first - last);
    for s in &mut sqrt {
        *s = (*s - last) * scale;
    }
    let bar: Vec<f32> = sqrt.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    out.extend(bar.windows(2).map(|w| 1.0 - w[1] / w[0]));
    out
}

pub(crate) fn check_len(what: &str, values: &[f32], n: usize) -> Result<()> {
    if values.len() != n {
        return Err(Error::Input(format!("{what} has {} values, the sample has {n}", values.len())));
    }
    Ok(())
}

/// The noise a stochastic step needs: required when `adds` (the step adds noise), refused only
/// for a wrong length otherwise.
pub(crate) fn need_noise<'a>(noise: Option<&'a [f32]>, adds: bool, n: usize, class: &str, t: f64) -> Result<Option<&'a [f32]>> {
    match noise {
        Some(z) => check_len("noise", z, n).map(|_| Some(z)),
        None if adds => Err(Error::Input(format!(
            "{class}.step at timestep {t} adds noise: pass the `noise` argument (standard normal, one value per sample element)"
        ))),
        None => Ok(None),
    }
}

/// diffusers' `_threshold_sample` (Saharia et al. 2022, dynamic thresholding) on one batch item:
/// s = clamp(quantile(|x0|, ratio), 1, max); x0 ← clamp(x0, −s, s)/s. The quantile is torch's
/// (linear interpolation between order statistics), over the whole flat sample as diffusers
/// reshapes each batch item to one row (`batch` items of equal size in the flat sample).
pub(crate) fn threshold_sample(x0: &mut [f32], ratio: f64, max: f64, batch: usize) {
    debug_assert!(batch > 0 && x0.len().is_multiple_of(batch), "callers check the batch size");
    let n = x0.len() / batch;
    for item in x0.chunks_mut(n) {
        threshold_item(item, ratio, max);
    }
}

fn threshold_item(x0: &mut [f32], ratio: f64, max: f64) {
    let mut abs: Vec<f32> = x0.iter().map(|v| v.abs()).collect();
    abs.sort_by(f32::total_cmp);
    let pos = ratio * (abs.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, (pos - pos.floor()) as f32);
    let hi = (lo + 1).min(abs.len() - 1);
    let q = abs[lo] + (abs[hi] - abs[lo]) * frac;
    // torch.clamp(min=1, max): max wins when it is below 1 (f32::clamp would panic).
    let s = q.max(1.0).min(max as f32);
    for v in x0 {
        *v = v.clamp(-s, s) / s;
    }
}
