//! The noise schedules and step rules of diffusers' `DDIMScheduler` and `DDPMScheduler`, reduced
//! to per-step scalar coefficients that one fused kernel (or its CPU twin) applies elementwise.

use serde::Deserialize;

use super::kind::SamplerKind;
use crate::error::{Error, Result};

/// `scheduler_config.json` (DDIM or DDPM) as text fields, with diffusers' defaults; turned into the
/// typed `SchedulerConfig` (which names the field of any unknown value) right after parsing.
#[derive(Deserialize)]
struct RawSchedulerConfig {
    #[serde(rename = "_class_name", default)]
    class_name: Option<String>,
    #[serde(default = "thousand")]
    num_train_timesteps: usize,
    #[serde(default = "beta_start")]
    beta_start: f64,
    #[serde(default = "beta_end")]
    beta_end: f64,
    #[serde(default = "linear")]
    beta_schedule: String,
    #[serde(default)]
    trained_betas: Option<Vec<f64>>,
    #[serde(default = "yes")]
    clip_sample: bool,
    #[serde(default = "one")]
    clip_sample_range: f64,
    #[serde(default = "yes")]
    set_alpha_to_one: bool,
    #[serde(default)]
    steps_offset: usize,
    #[serde(default = "epsilon")]
    prediction_type: String,
    #[serde(default)]
    thresholding: bool,
    #[serde(default = "leading")]
    timestep_spacing: String,
    #[serde(default)]
    rescale_betas_zero_snr: bool,
    #[serde(default)]
    variance_type: Option<String>,
    // Euler, Heun and DPM-Solver++ keys (ignored by DDIM and DDPM, as diffusers does).
    #[serde(default)]
    use_karras_sigmas: Option<bool>,
    #[serde(default)]
    final_sigmas_type: Option<String>,
    #[serde(default = "two")]
    solver_order: usize,
    #[serde(default = "yes")]
    lower_order_final: bool,
    #[serde(default)]
    euler_at_final: bool,
    #[serde(default)]
    algorithm_type: Option<String>,
    #[serde(default)]
    solver_type: Option<String>,
    #[serde(default)]
    interpolation_type: Option<String>,
    #[serde(default)]
    timestep_type: Option<String>,
    #[serde(default)]
    sigma_min: Option<f64>,
    #[serde(default)]
    sigma_max: Option<f64>,
    #[serde(default)]
    lambda_min_clipped: Option<serde_json::Value>,
    #[serde(default)]
    use_exponential_sigmas: Option<bool>,
    #[serde(default)]
    use_beta_sigmas: Option<bool>,
    #[serde(default)]
    use_lu_lambdas: Option<bool>,
    #[serde(default)]
    use_flow_sigmas: Option<bool>,
}

fn two() -> usize {
    2
}

fn thousand() -> usize {
    1000
}
fn beta_start() -> f64 {
    0.0001
}
fn beta_end() -> f64 {
    0.02
}
fn linear() -> String {
    "linear".into()
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn epsilon() -> String {
    "epsilon".into()
}
fn leading() -> String {
    "leading".into()
}

/// Defines a config enum whose JSON spellings are diffusers' strings; an unknown string is an
/// `Error::Scheduler` naming the field and the accepted values.
macro_rules! config_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn parse(text: &str) -> Result<Self> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::Scheduler(format!(
                        "`{}` = {other:?}: expected one of {}", $field, [$($text),+].join(", ")))),
                }
            }

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
    };
}

config_enum!(/// How betas are laid out over the training timesteps.
    BetaSchedule, "beta_schedule" { Linear = "linear", ScaledLinear = "scaled_linear", SquaredcosCapV2 = "squaredcos_cap_v2" });
config_enum!(/// How `set_timesteps(n)` picks the n timesteps.
    TimestepSpacing, "timestep_spacing" { Leading = "leading", Trailing = "trailing", Linspace = "linspace" });
config_enum!(/// What the U-Net predicts.
    PredictionType, "prediction_type" { Epsilon = "epsilon", VPrediction = "v_prediction", Sample = "sample" });
config_enum!(/// DDPM's posterior variance (`learned*` parse but need a model that predicts the variance).
    VarianceType, "variance_type" { FixedSmall = "fixed_small", FixedSmallLog = "fixed_small_log", FixedLarge = "fixed_large",
                                    Learned = "learned", LearnedRange = "learned_range" });

/// A validated `scheduler_config.json`: parsed once, at load, into typed settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// `_class_name` when present ("DDIMScheduler", "DDPMScheduler", ...).
    pub class_name: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub set_alpha_to_one: bool,
    pub steps_offset: usize,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub variance_type: VarianceType,
    /// Karras et al. (2022) sigmas, ρ = 7 (Euler, Heun, DPM-Solver++).
    pub use_karras_sigmas: bool,
    /// The last sigma of Euler and DPM-Solver++: 0 ("zero") or σ at t = 0 ("sigma_min").
    pub final_sigma_zero: bool,
    /// DPM-Solver++: order 1 or 2, and a first-order final step for fewer than 15 steps.
    pub solver_order: usize,
    pub lower_order_final: bool,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    /// Keys `scheduler_config.json` set (the others take the sampler class's own defaults, as
    /// diffusers' `from_config` does: `for_sampler`).
    pub keys: Vec<String>,
    /// The whole JSON object, for the host-stepped schedulers (`sampler::diffusers`), which read
    /// their own keys.
    pub raw: serde_json::Value,
    /// Why the fused samplers cannot run this config (a key value they do not implement, which
    /// its class stepped on the host does): set by `load` only; such a config runs on the host.
    pub fused_refusal: Option<String>,
}

impl SchedulerConfig {
    /// Parses and validates `scheduler_config.json`; every error names its field.
    pub fn from_json(text: &str) -> Result<Self> {
        // Python's json writes -inf as a bare `-Infinity` (DPMSolverMultistepScheduler's
        // lambda_min_clipped): read such tokens as strings.
        let text = quote_python_floats(text);
        let value: serde_json::Value =
            crate::json::parse_json(&text).map_err(|e| Error::Scheduler(format!("scheduler_config.json: {e}")))?;
        Self::from_value(value)
    }

    /// Like `from_json`, but a config the fused samplers refuse is still accepted when its
    /// `_class_name` is a class `sampler::diffusers` builds from it (DPM-Solver order 3, dynamic
    /// thresholding, PNDM's keys, ...): it then runs stepped on the host (`fused_refusal` says why).
    pub fn load(text: &str) -> Result<Self> {
        match Self::from_json(text) {
            Ok(c) => {
                // A class only the host steps reads keys the fused parse does not: check them now.
                if let Some(class) = c.class_name.as_deref().filter(|c| !super::kind::is_fused_class(c) && super::kind::host_built(c)) {
                    let text = quote_python_floats(text);
                    match super::sde::CLASSES.contains(&class) {
                        true => super::sde::VpSdeSampler::from_config(&text).map(|_| ())?,
                        false => super::diffusers::from_config(&text).map(|_| ())?,
                    }
                }
                Ok(c)
            }
            Err(refusal) => {
                let value: serde_json::Value = crate::json::parse_json(&quote_python_floats(text))
                    .map_err(|e| Error::Scheduler(format!("scheduler_config.json: {e}")))?;
                let class = value.get("_class_name").and_then(|c| c.as_str()).map(str::to_string);
                let host_built = class.as_deref().is_some_and(super::kind::host_built);
                if !host_built {
                    return Err(refusal);
                }
                // The host class validates every key it reads; the error names the key.
                let text = quote_python_floats(text);
                match super::sde::CLASSES.contains(&class.as_deref().unwrap_or_default()) {
                    true => super::sde::VpSdeSampler::from_config(&text).map(|_| ())?,
                    false => super::diffusers::from_config(&text).map(|_| ())?,
                }
                let mut c = SchedulerConfig::default();
                (c.class_name, c.raw, c.fused_refusal) = (class, value, Some(refusal.to_string()));
                Ok(c)
            }
        }
    }

    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        if !value.is_object() {
            return Err(Error::Scheduler("scheduler_config.json is not a JSON object (a diffusers config is {\"key\": value, …})".into()));
        }
        let keys = value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let whole = value.clone();
        let raw: RawSchedulerConfig =
            crate::json::from_value(value).map_err(|e| Error::Scheduler(format!("scheduler_config.json: {e}")))?;
        let refuse = |field: &str, why: &str| Err(Error::Scheduler(format!("`{field}`: {why} is not implemented")));
        for (field, on) in [
            ("use_exponential_sigmas", raw.use_exponential_sigmas),
            ("use_beta_sigmas", raw.use_beta_sigmas),
            ("use_lu_lambdas", raw.use_lu_lambdas),
            ("use_flow_sigmas", raw.use_flow_sigmas),
        ] {
            if on == Some(true) {
                return refuse(field, "true");
            }
        }
        if raw.euler_at_final {
            return refuse("euler_at_final", "true");
        }
        if !matches!(raw.solver_order, 1 | 2) {
            return Err(Error::Scheduler(format!("`solver_order` = {}: only 1 and 2 are implemented", raw.solver_order)));
        }
        for (field, value, want) in [
            ("algorithm_type", &raw.algorithm_type, "dpmsolver++"),
            ("solver_type", &raw.solver_type, "midpoint"),
            ("interpolation_type", &raw.interpolation_type, "linear"),
            ("timestep_type", &raw.timestep_type, "discrete"),
        ] {
            if let Some(v) = value.as_deref().filter(|v| *v != want) {
                return Err(Error::Scheduler(format!("`{field}` = {v:?}: only {want:?} is implemented")));
            }
        }
        let final_sigma_zero = match raw.final_sigmas_type.as_deref() {
            None | Some("zero") => true,
            Some("sigma_min") => false,
            Some(other) => return Err(Error::Scheduler(format!("`final_sigmas_type` = {other:?}: expected \"zero\" or \"sigma_min\""))),
        };
        match &raw.lambda_min_clipped {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) if s == "-Infinity" => {}
            Some(v) => return Err(Error::Scheduler(format!("`lambda_min_clipped` = {v}: only -inf (no clipping) is implemented"))),
        }
        if raw.thresholding {
            return Err(Error::Scheduler("`thresholding` = true (dynamic thresholding) is not implemented".into()));
        }
        if raw.rescale_betas_zero_snr {
            return Err(Error::Scheduler("`rescale_betas_zero_snr` = true is not implemented".into()));
        }
        if raw.num_train_timesteps == 0 || raw.num_train_timesteps > 1_000_000 {
            return Err(Error::Scheduler(format!("`num_train_timesteps` = {}: must be from 1 to 1000000", raw.num_train_timesteps)));
        }
        // Betas of 1 or more make ᾱ_t zero or negative: every step would divide by zero.
        for (field, b) in [("beta_start", raw.beta_start), ("beta_end", raw.beta_end)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::Scheduler(format!("`{field}` = {b}: betas must be in [0, 1)")));
            }
        }
        if let Some(b) = &raw.trained_betas {
            if let Some((i, v)) = b.iter().enumerate().find(|(_, v)| !(0.0..1.0).contains(*v)) {
                return Err(Error::Scheduler(format!("`trained_betas`[{i}] = {v}: betas must be in [0, 1)")));
            }
            if b.len() != raw.num_train_timesteps {
                return Err(Error::Scheduler(format!(
                    "`trained_betas` has {} entries, num_train_timesteps is {}",
                    b.len(),
                    raw.num_train_timesteps
                )));
            }
        }
        Ok(SchedulerConfig {
            class_name: raw.class_name,
            num_train_timesteps: raw.num_train_timesteps,
            beta_start: raw.beta_start,
            beta_end: raw.beta_end,
            beta_schedule: BetaSchedule::parse(&raw.beta_schedule)?,
            trained_betas: raw.trained_betas,
            clip_sample: raw.clip_sample,
            clip_sample_range: raw.clip_sample_range,
            set_alpha_to_one: raw.set_alpha_to_one,
            steps_offset: raw.steps_offset,
            prediction_type: PredictionType::parse(&raw.prediction_type)?,
            timestep_spacing: TimestepSpacing::parse(&raw.timestep_spacing)?,
            variance_type: VarianceType::parse(raw.variance_type.as_deref().unwrap_or("fixed_small"))?,
            use_karras_sigmas: raw.use_karras_sigmas.unwrap_or(false),
            final_sigma_zero,
            solver_order: raw.solver_order,
            lower_order_final: raw.lower_order_final,
            sigma_min: raw.sigma_min,
            sigma_max: raw.sigma_max,
            keys,
            raw: whole,
            fused_refusal: None,
        })
    }
}

/// `-Infinity`, `Infinity` and `NaN` outside strings become the strings "-Infinity" etc.
pub(crate) fn quote_python_floats(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string {
            if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
                out.push('"');
                out.push_str(token);
                out.push('"');
                rest = &rest[token.len()..];
                continue;
            }
        }
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_string = !in_string,
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self::from_json("{}").expect("defaults parse")
    }
}

/// Elementwise update applied at one step, with m the model output, x the current sample and h
/// the solver's history (the previous x0 for DPM-Solver++(2M), a partial sum for Heun):
/// x0 = x0_x·x + x0_m·m (clipped to ±clip when `clip` > 0), eps = eps_x·x + eps_m·m,
/// x_prev = c_x0·x0 + c_eps·eps + c_x·x + c_noise·noise + c_h·h, h ← h_h·h + h_x0·x0 + h_x·x.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepCoeffs {
    pub x0_x: f32,
    pub x0_m: f32,
    pub eps_x: f32,
    pub eps_m: f32,
    pub clip: f32,
    pub c_x0: f32,
    pub c_eps: f32,
    pub c_x: f32,
    pub c_noise: f32,
    pub c_h: f32,
    pub h_h: f32,
    pub h_x0: f32,
    pub h_x: f32,
}

impl StepCoeffs {
    /// The update for one element (the CPU twin of `shaders/scheduler_step.wgsl`). Returns
    /// (x_prev, x0, h_new).
    pub fn apply(&self, x: f32, m: f32, noise: f32, h: f32) -> (f32, f32, f32) {
        let mut x0 = self.x0_x * x + self.x0_m * m;
        let eps = self.eps_x * x + self.eps_m * m;
        if self.clip > 0.0 {
            x0 = x0.clamp(-self.clip, self.clip);
        }
        let x_prev = self.c_x0 * x0 + self.c_eps * eps + self.c_x * x + self.c_noise * noise + self.c_h * h;
        (x_prev, x0, self.h_h * h + self.h_x0 * x0 + self.h_x * x)
    }
}

/// One U-Net evaluation of a sampling run and the update after it: the model sees c_in·x at
/// timestep `t_model`, then `coeffs` are applied. `timestep` is the nearest integer timestep
/// (shown, and named in errors); `t_model` may lie between integers (Euler, Heun, Karras sigmas).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub timestep: i64,
    pub t_model: f32,
    pub c_in: f32,
    pub coeffs: StepCoeffs,
}

impl Step {
    /// A step of a sampler that feeds x as is at an integer timestep (DDIM, DDPM, DPM-Solver).
    pub fn at(timestep: i64, coeffs: StepCoeffs) -> Self {
        Step { timestep, t_model: timestep as f32, c_in: 1.0, coeffs }
    }
}

/// A noise schedule (betas → alphas_cumprod) plus the scheduler config it came from.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub config: SchedulerConfig,
    /// As diffusers stores them: f32.
    pub alphas_cumprod: Vec<f32>,
}

impl Schedule {
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(Self::new(SchedulerConfig::from_json(text)?))
    }

    pub fn new(config: SchedulerConfig) -> Self {
        let betas = betas(&config);
        // torch.cumprod over f32 alphas; accumulate in f64 and round once per entry.
        let mut acc = 1.0f64;
        let alphas_cumprod = betas
            .iter()
            .map(|&b| {
                acc *= (1.0f32 - b) as f64;
                acc as f32
            })
            .collect();
        Schedule { config, alphas_cumprod }
    }

    fn t_count(&self) -> usize {
        self.config.num_train_timesteps
    }

    /// `set_timesteps(n)`: the timesteps visited, from noisiest to cleanest.
    pub fn timesteps(&self, n: usize) -> Result<Vec<i64>> {
        let t = self.t_count();
        self.check_steps(n)?;
        let ts: Vec<i64> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => (0..n)
                .rev()
                .map(|i| {
                    let v = if n == 1 { 0.0 } else { (t - 1) as f64 * i as f64 / (n - 1) as f64 };
                    v.round_ties_even() as i64
                })
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = t / n;
                (0..n).rev().map(|i| (i * ratio + self.config.steps_offset) as i64).collect()
            }
            TimestepSpacing::Trailing => {
                // np.round(np.arange(T, 0, -T / n)) - 1
                let ratio = t as f64 / n as f64;
                let len = ((t as f64) / ratio).ceil() as usize;
                (0..len).map(|i| (t as f64 - i as f64 * ratio).round_ties_even() as i64 - 1).collect()
            }
        };
        if let Some(bad) = ts.iter().find(|&&v| v < 0 || v as usize >= t) {
            return Err(Error::Scheduler(format!("timestep {bad} outside 0..{t} (steps_offset too large?)")));
        }
        Ok(ts)
    }

    /// 1 ≤ n ≤ num_train_timesteps, for every sampler.
    pub(crate) fn check_steps(&self, n: usize) -> Result<()> {
        let t = self.t_count();
        if n == 0 {
            return Err(Error::Scheduler("0 inference steps: need at least 1".into()));
        }
        if n > t {
            return Err(Error::Scheduler(format!("{n} inference steps is more than num_train_timesteps = {t}")));
        }
        Ok(())
    }

    pub(crate) fn alpha_at(&self, t: i64, otherwise: f64) -> f64 {
        if t >= 0 {
            self.alphas_cumprod[t as usize] as f64
        } else {
            otherwise
        }
    }

    /// The coefficients giving (x0, eps) as linear functions of (x, m) for this prediction type at
    /// ᾱ_t = a, and the clipping of x0; the update coefficients are left at 0 for the step rule.
    pub(crate) fn prediction(&self, a: f64) -> StepCoeffs {
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        let p = match self.config.prediction_type {
            PredictionType::Epsilon => [1.0 / sa, -sb / sa, 0.0, 1.0],
            PredictionType::Sample => [0.0, 1.0, 1.0 / sb, -sa / sb],
            PredictionType::VPrediction => [sa, -sb, sb, sa],
        };
        let clip = if self.config.clip_sample { self.config.clip_sample_range as f32 } else { 0.0 };
        StepCoeffs { x0_x: p[0] as f32, x0_m: p[1] as f32, eps_x: p[2] as f32, eps_m: p[3] as f32, clip, ..Default::default() }
    }

    /// The steps of a DDIM run (`DDIMScheduler.step`, eta ≥ 0, variance noise added when eta > 0).
    pub fn ddim_steps(&self, n: usize, eta: f32) -> Result<Vec<Step>> {
        if !eta.is_finite() || eta < 0.0 {
            return Err(Error::Scheduler(format!("eta = {eta}: must be a finite number ≥ 0")));
        }
        let ts = self.timesteps(n)?;
        let final_alpha = if self.config.set_alpha_to_one { 1.0 } else { self.alphas_cumprod[0] as f64 };
        let stride = (self.t_count() / n) as i64;
        Ok(ts
            .iter()
            .map(|&t| {
                let a = self.alpha_at(t, 1.0);
                let a_prev = self.alpha_at(t - stride, final_alpha);
                let (b, b_prev) = (1.0 - a, 1.0 - a_prev);
                let variance = (b_prev / b) * (1.0 - a / a_prev);
                let std = eta as f64 * variance.sqrt();
                let coeffs = StepCoeffs {
                    c_x0: a_prev.sqrt() as f32,
                    c_eps: (1.0 - a_prev - std * std).max(0.0).sqrt() as f32,
                    c_x: 0.0,
                    c_noise: if eta > 0.0 { std as f32 } else { 0.0 },
                    ..self.prediction(a)
                };
                Step::at(t, coeffs)
            })
            .collect())
    }

    /// The steps of ancestral DDPM sampling (`DDPMScheduler.step`; Ho et al. 2020, Algorithm 2).
    pub fn ddpm_steps(&self, n: usize) -> Result<Vec<Step>> {
        let variance_type = self.config.variance_type;
        if matches!(variance_type, VarianceType::Learned | VarianceType::LearnedRange) {
            return Err(Error::Scheduler(format!(
                "`variance_type` = {:?}: a learned variance needs a model that predicts it; \
                                                 only fixed_small, fixed_small_log, fixed_large are implemented",
                variance_type.as_str()
            )));
        }
        let ts = self.timesteps(n)?;
        Ok(ts
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                // DDPM steps to the next timestep in the list (not t - T/n as DDIM does).
                let prev_t = ts.get(i + 1).copied().unwrap_or(-1);
                let a = self.alpha_at(t, 1.0);
                let a_prev = self.alpha_at(prev_t, 1.0);
                let (b, b_prev) = (1.0 - a, 1.0 - a_prev);
                let alpha_t = a / a_prev;
                let beta_t = 1.0 - alpha_t;
                let variance = if variance_type == VarianceType::FixedLarge { beta_t } else { (b_prev / b * beta_t).max(1e-20) };
                let coeffs = StepCoeffs {
                    c_x0: (a_prev.sqrt() * beta_t / b) as f32,
                    c_eps: 0.0,
                    c_x: (alpha_t.sqrt() * b_prev / b) as f32,
                    c_noise: if t > 0 { variance.sqrt() as f32 } else { 0.0 },
                    ..self.prediction(a)
                };
                Step::at(t, coeffs)
            })
            .collect())
    }

    /// The evaluations of an n-step run of `kind` (Heun: 2n − 1 of them).
    pub fn steps(&self, kind: SamplerKind, n: usize, eta: f32) -> Result<Vec<Step>> {
        if kind != SamplerKind::Ddim && eta != 0.0 {
            return Err(Error::Scheduler(format!("eta = {eta}: only DDIM has eta")));
        }
        match kind {
            SamplerKind::Ddim => self.ddim_steps(n, eta),
            SamplerKind::Ddpm => self.ddpm_steps(n),
            SamplerKind::DpmPlusPlus2M => self.dpm_solver_pp_steps(n),
            SamplerKind::Euler => self.euler_steps(n),
            SamplerKind::Heun => self.heun_steps(n),
            SamplerKind::Host(class) => {
                Err(Error::Scheduler(format!("{class} is stepped on the host (sampler::diffusers), not by coefficients")))
            }
        }
    }
}

/// `torch.linspace(a, b, n, dtype=float32)` bit for bit: f32 step, the first half counted up from
/// `a` and the second half down from `b`, each with one rounding (fused multiply-add).
pub(crate) fn linspace_f32(a: f64, b: f64, n: usize) -> Vec<f32> {
    let (a, b) = (a as f32, b as f32);
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f32;
    (0..n).map(|i| if i < n / 2 { step.mul_add(i as f32, a) } else { (-step).mul_add((n - 1 - i) as f32, b) }).collect()
}

pub(crate) fn betas(cfg: &SchedulerConfig) -> Vec<f32> {
    let t = cfg.num_train_timesteps;
    if let Some(b) = &cfg.trained_betas {
        return b.iter().map(|&v| v as f32).collect();
    }
    match cfg.beta_schedule {
        BetaSchedule::Linear => linspace_f32(cfg.beta_start, cfg.beta_end, t),
        BetaSchedule::ScaledLinear => linspace_f32(cfg.beta_start.sqrt(), cfg.beta_end.sqrt(), t).iter().map(|v| v * v).collect(),
        BetaSchedule::SquaredcosCapV2 => {
            let alpha_bar = |s: f64| ((s + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
            (0..t)
                .map(|i| {
                    let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                    (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                })
                .collect()
        }
    }
}

/// σ of the VP forward process at a (possibly fractional) model timestep t: √(1 − ᾱ_t), with
/// fractional t interpolated in σ_k = √((1 − ᾱ)/ᾱ) as diffusers' sigma samplers do (Euler, Heun),
/// so classifier guidance's −s·σ_t·∇ₓ log p, the numbers row and PNDM's x̂₀ read the noise
/// level the U-Net was given.
pub fn vp_sigma(alphas_cumprod: &[f32], t: f32) -> f32 {
    let last = alphas_cumprod.len().saturating_sub(1);
    let t = t.clamp(0.0, last as f32);
    let k = |i: usize| ((1.0 - alphas_cumprod[i] as f64) / alphas_cumprod[i] as f64).sqrt();
    let (lo, frac) = (t.floor() as usize, (t - t.floor()) as f64);
    let s = if lo >= last { k(last) } else { k(lo) * (1.0 - frac) + k(lo + 1) * frac };
    (s / (1.0 + s * s).sqrt()) as f32
}
