//! `KDPM2DiscreteScheduler` and `KDPM2AncestralDiscreteScheduler`: k-diffusion's DPM-Solver-2
//! (Karras et al. 2022's second-order sampler with the midpoint taken at the geometric mean of
//! σ_i and σ_{i+1}), and its ancestral variant (midpoint towards σ_down, then noise of σ_up).
//! Two model evaluations per step, at σ_i and at the interpolated σ; diffusers lists both.

use super::config::{check_len, need_noise, Cfg, NoiseSchedule, Prediction};
use super::sigmas::{init_noise_sigma, scale_by_sigma, sigma_to_t_f32, sigma_x0, SigmaCore, SigmaRamp};
use super::{DiffusersScheduler, StepOutput};
use crate::error::{Error, Result};

/// [v0] + each of v[1..] twice + [v_last], as diffusers' `cat([v[:1], v[1:].repeat_interleave(2), v[-1:]])`.
fn repeat_interleave(v: &[f32]) -> Vec<f32> {
    [v[0]].into_iter().chain(v[1..].iter().flat_map(|&x| [x, x])).chain([v[v.len() - 1]]).collect()
}

/// exp(lerp(ln a, ln b, ½)) as torch's lerp at weight ½ computes it: end − (end − self)·½.
fn geometric_mid(a: f32, b: f32) -> f32 {
    let (s, e) = (a.ln(), b.ln());
    (e - (e - s) * 0.5).exp()
}

/// The state both classes share: the σ schedule, the interpolated σs, and the first-order
/// sample kept for the second evaluation.
#[derive(Clone, Debug)]
struct Kdpm2Core {
    core: SigmaCore,
    prediction: Prediction,
    /// Per listed evaluation (repeat-interleaved): σ, interpolated σ, and (ancestral) σ_up, σ_down.
    interpol: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
    sample: Option<Vec<f32>>,
}

impl Kdpm2Core {
    fn new(cfg: &Cfg) -> Result<Self> {
        let schedule = NoiseSchedule::read(cfg, 0.00085, 0.012, &["linear", "scaled_linear", "squaredcos_cap_v2"], false)?;
        let mut core = SigmaCore::new(schedule, cfg, SigmaRamp::read(cfg, true)?)?;
        core.kdpm2_timesteps = true;
        Ok(Kdpm2Core {
            core,
            prediction: Prediction::read(cfg, &["epsilon", "v_prediction"])?,
            interpol: Vec::new(),
            up: Vec::new(),
            down: Vec::new(),
            sample: None,
        })
    }

    /// `set_timesteps`: the σs of the n steps, then (per class) the interpolated σs and the
    /// interleaved timesteps.
    fn set(&mut self, n: usize, ancestral: bool, class: &str) -> Result<()> {
        self.core.set(n, 0.0, class)?;
        let s = self.core.sigmas.clone();
        let log_sigmas: Vec<f32> = self.core.schedule.train_sigmas().iter().map(|v| v.ln()).collect();
        let ts = self.core.timesteps.clone();
        let (interpol, timesteps): (Vec<f32>, Vec<f64>) = if ancestral {
            let next: Vec<f32> = (0..s.len()).map(|k| s.get(k + 1).copied().unwrap_or(0.0)).collect();
            self.up = s.iter().zip(&next).map(|(s, n)| (n * n * (s * s - n * n) / (s * s)).sqrt()).collect();
            self.down = next.iter().zip(&self.up).map(|(n, u)| (n * n - u * u).sqrt()).collect();
            *self.down.last_mut().expect("n ≥ 1") = 0.0;
            let mut interpol: Vec<f32> = s.iter().zip(&self.down).map(|(&a, &d)| geometric_mid(a, d)).collect();
            let len = interpol.len();
            interpol[len.saturating_sub(2)..].iter_mut().for_each(|v| *v = 0.0);
            let ti: Vec<f32> = interpol.iter().map(|&v| sigma_to_t_f32(v, &log_sigmas)).collect();
            let timesteps = [ts[0]].into_iter().chain(ti[..ti.len() - 2].iter().zip(&ts[1..]).flat_map(|(&a, &b)| [a as f64, b])).collect();
            (interpol, timesteps)
        } else {
            // σ_interpol[k] between σ_{k−1} and σ_k (torch's roll(1)); [0] is never used.
            let interpol: Vec<f32> = (0..s.len()).map(|k| if k == 0 { f32::NAN } else { geometric_mid(s[k], s[k - 1]) }).collect();
            let ti: Vec<f32> = interpol.iter().map(|&v| sigma_to_t_f32(v, &log_sigmas)).collect();
            let timesteps =
                [ts[0]].into_iter().chain(ti[1..ti.len() - 1].iter().zip(&ts[1..]).flat_map(|(&a, &b)| [a as f64, b])).collect();
            (interpol, timesteps)
        };
        self.interpol = repeat_interleave(&interpol);
        if ancestral {
            self.up = repeat_interleave(&self.up);
            self.down = repeat_interleave(&self.down);
        }
        self.core.sigmas = repeat_interleave(&s);
        self.core.timesteps = timesteps;
        self.sample = None;
        Ok(())
    }

    fn current(&mut self, t: f64, class: &str) -> Result<usize> {
        self.core.check_set(class)?;
        let i = self.core.index.current(&self.core.timesteps, t)?;
        if i >= self.core.timesteps.len() {
            return Err(Error::Scheduler(format!("{class}: step {i} is past the last step (call set_timesteps again)")));
        }
        Ok(i)
    }
}

macro_rules! kdpm2_surface {
    ($ty:ident, $class:literal, $ancestral:literal) => {
        impl $ty {
            pub fn new(cfg: &Cfg) -> Result<Self> {
                let mut s = $ty { k: Kdpm2Core::new(cfg)? };
                let t = s.k.core.schedule.num_train_timesteps();
                s.set_timesteps(t)?;
                Ok(s)
            }

            /// diffusers' `state_in_first_order`.
            pub fn state_in_first_order(&self) -> bool {
                self.k.sample.is_none()
            }
        }

        impl DiffusersScheduler for $ty {
            fn class_name(&self) -> &'static str {
                $class
            }

            fn set_timesteps(&mut self, n: usize) -> Result<()> {
                self.k.set(n, $ancestral, $class)
            }

            fn timesteps(&self) -> &[f64] {
                &self.k.core.timesteps
            }

            fn init_noise_sigma(&self) -> f32 {
                init_noise_sigma(&self.k.core.sigmas, self.k.core.spacing)
            }

            fn scale_model_input(&mut self, sample: &[f32], t: f64) -> Result<Vec<f32>> {
                let i = self.k.current(t, $class)?;
                Ok(scale_by_sigma(sample, self.input_sigma(i)))
            }

            fn step(&mut self, model_output: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
                check_len("model_output", model_output, sample.len())?;
                let i = self.k.current(t, $class)?;
                self.step_at(i, model_output, t, sample, noise)
            }

            fn add_noise(&self, x0: &[f32], noise: &[f32], t: f64) -> Result<Vec<f32>> {
                self.k.core.add_noise(x0, noise, t, $class)
            }

            fn order(&self) -> usize {
                2
            }

            fn set_begin_index(&mut self, begin: usize) -> Result<()> {
                self.k.core.set_begin_index(begin)
            }
        }
    };
}

#[derive(Clone, Debug)]
pub struct Kdpm2DiscreteScheduler {
    k: Kdpm2Core,
}

kdpm2_surface!(Kdpm2DiscreteScheduler, "KDPM2DiscreteScheduler", false);

impl Kdpm2DiscreteScheduler {
    /// The σ the model input is scaled by at evaluation i.
    fn input_sigma(&self, i: usize) -> f32 {
        if self.k.sample.is_none() {
            self.k.core.sigmas[i]
        } else {
            self.k.interpol[i]
        }
    }

    fn step_at(&mut self, i: usize, m: &[f32], _t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        if let Some(z) = noise {
            check_len("noise", z, sample.len())?;
        }
        let (s, ip) = (&self.k.core.sigmas, &self.k.interpol);
        let first = self.k.sample.is_none();
        let (sigma, sigma_interpol, sigma_next) = if first { (s[i], ip[i + 1], s[i + 1]) } else { (s[i - 1], ip[i], s[i]) };
        // The first evaluation reads the model at σ, the second at the interpolated σ.
        let x0 = sigma_x0(self.k.prediction, if first { sigma } else { sigma_interpol }, sample, m);
        let prev_sample = if first {
            let dt = sigma_interpol - sigma;
            self.k.sample = Some(sample.to_vec());
            sample.iter().zip(&x0).map(|(x, p)| x + (x - p) / sigma * dt).collect()
        } else {
            let dt = sigma_next - sigma;
            let start = self.k.sample.take().expect("second order");
            (0..sample.len()).map(|e| start[e] + (sample[e] - x0[e]) / sigma_interpol * dt).collect()
        };
        self.k.core.index.step = Some(i + 1);
        Ok(StepOutput { prev_sample, pred_original_sample: x0 })
    }
}

#[derive(Clone, Debug)]
pub struct Kdpm2AncestralDiscreteScheduler {
    k: Kdpm2Core,
}

kdpm2_surface!(Kdpm2AncestralDiscreteScheduler, "KDPM2AncestralDiscreteScheduler", true);

impl Kdpm2AncestralDiscreteScheduler {
    fn input_sigma(&self, i: usize) -> f32 {
        if self.k.sample.is_none() {
            self.k.core.sigmas[i]
        } else {
            self.k.interpol[i - 1]
        }
    }

    /// The second evaluation adds noise of σ_up (the first none).
    fn step_at(&mut self, i: usize, m: &[f32], t: f64, sample: &[f32], noise: Option<&[f32]>) -> Result<StepOutput> {
        let first = self.k.sample.is_none();
        let noise = need_noise(noise, !first, sample.len(), "KDPM2AncestralDiscreteScheduler", t)?;
        let (s, ip) = (&self.k.core.sigmas, &self.k.interpol);
        let (sigma, sigma_interpol, sigma_up, sigma_down) =
            if first { (s[i], ip[i], self.k.up[i], 0.0) } else { (s[i - 1], ip[i - 1], self.k.up[i - 1], self.k.down[i - 1]) };
        let x0 = sigma_x0(self.k.prediction, if first { sigma } else { sigma_interpol }, sample, m);
        let prev_sample = if first {
            let dt = sigma_interpol - sigma;
            self.k.sample = Some(sample.to_vec());
            sample.iter().zip(&x0).map(|(x, p)| x + (x - p) / sigma * dt).collect()
        } else {
            let dt = sigma_down - sigma;
            let start = self.k.sample.take().expect("second order");
            let z = noise.expect("checked");
            (0..sample.len()).map(|e| start[e] + (sample[e] - x0[e]) / sigma_interpol * dt + z[e] * sigma_up).collect()
        };
        self.k.core.index.step = Some(i + 1);
        Ok(StepOutput { prev_sample, pred_original_sample: x0 })
    }
}
