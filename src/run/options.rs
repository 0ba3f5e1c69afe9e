//! The options of a sampling run: one builder with one set of defaults, shared by the CLI, the
//! wasm API and the tests. Nothing is checked while building; `plan` checks everything at once.

use super::plan::{Guidance, NoiseSource, RunPlan};
use crate::error::{Error, Result};
use crate::sampler::{SamplerKind, Schedule, SchedulerConfig};
use crate::{Model, Tensor};

pub const DEFAULT_STEPS: usize = 50;
pub const DEFAULT_BATCH: usize = 4;

/// Noise given explicitly (fixtures, `ddim sample --noise FILE`).
#[derive(Clone, Debug)]
pub struct GivenNoise {
    /// x_T, [N, C, H, W]: sets the batch and the image size of the run.
    pub x_t: Tensor,
    /// The variance noise of every step, [S, N, C, H, W]; needed when a step adds noise.
    pub per_step: Option<Tensor>,
}

/// Class labels of a class-conditional model.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassLabels {
    /// 0, 1, 2, … cycling over the real classes (the last class is the null class): the default.
    Mixed,
    /// The same label for every item.
    All(i64),
    /// One label per item.
    Each(Vec<i64>),
}

/// A run's options. Unset options take the defaults documented on each setter.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    sampler: Option<SamplerKind>,
    steps: Option<usize>,
    eta: Option<f32>,
    seed: Option<u64>,
    batch: Option<usize>,
    labels: Option<ClassLabels>,
    guidance: Option<f32>,
    noise: Option<GivenNoise>,
    scheduler: Option<SchedulerConfig>,
}

impl RunOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// DDIM (default) or DDPM.
    pub fn sampler(mut self, kind: SamplerKind) -> Self {
        self.sampler = Some(kind);
        self
    }

    /// Inference steps; default 50.
    pub fn steps(mut self, n: usize) -> Self {
        self.steps = Some(n);
        self
    }

    /// DDIM's η; default 0 (deterministic).
    pub fn eta(mut self, eta: f32) -> Self {
        self.eta = Some(eta);
        self
    }

    /// Seed of x_T and of the step noise; default 0. Not allowed together with `noise`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Images per run; default 4, or the batch of the given noise.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = Some(n);
        self
    }

    /// Class labels; default `Mixed` on class-conditional models, refused on the others.
    pub fn labels(mut self, labels: ClassLabels) -> Self {
        self.labels = Some(labels);
        self
    }

    /// Classifier-free guidance weight w (Ho & Salimans): ε̃ = (1+w)·ε(c) − w·ε(∅); default 0.
    pub fn guidance(mut self, w: f32) -> Self {
        self.guidance = Some(w);
        self
    }

    /// Start from (and draw step noise from) these tensors instead of a seed.
    pub fn noise(mut self, noise: GivenNoise) -> Self {
        self.noise = Some(noise);
        self
    }

    /// Scheduler settings; default the model's `scheduler_config.json` (or diffusers' defaults).
    pub fn scheduler(mut self, config: SchedulerConfig) -> Self {
        self.scheduler = Some(config);
        self
    }

    /// Checks every option against the model and lays out the run.
    pub fn plan(&self, model: &Model) -> Result<RunPlan> {
        let cfg = &model.config;
        let (batch, (h, w)) = self.batch_and_size(model)?;
        if batch == 0 {
            return Err(Error::Input("batch = 0: need at least one image".into()));
        }
        cfg.check_input_size(h, w)?;
        let shape = [batch, cfg.in_channels, h, w];
        let config = self.scheduler.clone().unwrap_or_else(|| model.scheduler.clone());
        // The sampler asked for, else the one the scheduler config names (`_class_name`), else DDIM.
        let kind = self.sampler.or_else(|| config.class_name.as_deref().and_then(SamplerKind::of_class)).unwrap_or(SamplerKind::Ddim);
        let schedule = Schedule::new(config.for_sampler(kind));
        let n = self.steps.unwrap_or(DEFAULT_STEPS);
        let steps = schedule.steps(kind, n, self.eta.unwrap_or(0.0))?;
        // Euler and Heun start from noise · init_noise_sigma, as diffusers' pipelines do.
        let init_sigma = schedule.init_noise_sigma(kind, n)?;
        let labels = self.resolve_labels(cfg.num_class_embeds, batch)?;
        let guidance = Guidance::new(cfg.num_class_embeds, labels, self.guidance.unwrap_or(0.0))?;
        // Beyond 2^30 values (4 GiB of f32) no engine here can hold x_t: refuse before allocating.
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&c| c <= 1 << 30).ok_or_else(|| {
            Error::Input(format!("batch = {batch} of {}x{h}x{w} images is more than 2^30 values: too large to sample", cfg.in_channels))
        })?;
        let (noise, x_start) = match &self.noise {
            None => {
                let seed = self.seed.unwrap_or(0);
                (NoiseSource::Seed(seed), crate::sampler::rng::normal(seed, 0, count).into_iter().map(|v| v * init_sigma).collect())
            }
            Some(given) => {
                if self.seed.is_some() {
                    return Err(Error::Input("a seed and given noise were both set: pick one".into()));
                }
                let per_step = split_step_noise(given.per_step.as_ref(), shape)?;
                (NoiseSource::Given { per_step }, given.x_t.data.iter().map(|v| v * init_sigma).collect())
            }
        };
        let plan = RunPlan { steps, guidance, noise, shape, x_start };
        plan.check_noise()?;
        Ok(plan)
    }

    fn batch_and_size(&self, model: &Model) -> Result<(usize, (usize, usize))> {
        let Some(given) = &self.noise else {
            let size = model
                .config
                .sample_size
                .ok_or_else(|| Error::Config("config has no sample_size: give noise of the wanted [N, C, H, W] shape".into()))?;
            return Ok((self.batch.unwrap_or(DEFAULT_BATCH), size));
        };
        let &[n, c, h, w] = &given.x_t.shape[..] else {
            return Err(Error::Input(format!("initial noise must be [N, C, H, W], got {:?}", given.x_t.shape)));
        };
        if c != model.config.in_channels {
            return Err(Error::Input(format!("initial noise has {c} channels, the model's in_channels is {}", model.config.in_channels)));
        }
        match self.batch {
            Some(b) if b != n => Err(Error::Input(format!("batch = {b}, but the initial noise holds {n} images"))),
            _ => Ok((n, (h, w))),
        }
    }

    fn resolve_labels(&self, num_class_embeds: Option<usize>, batch: usize) -> Result<Option<Vec<u32>>> {
        let Some(k) = num_class_embeds else {
            return match self.labels {
                None => Ok(None),
                Some(_) => {
                    Err(Error::Input("this model has no class embedding (num_class_embeds is null): class labels are not accepted".into()))
                }
            };
        };
        let labels: Vec<i64> = match self.labels.clone().unwrap_or(ClassLabels::Mixed) {
            ClassLabels::Mixed => (0..batch).map(|i| (i % (k - 1).max(1)) as i64).collect(),
            ClassLabels::All(l) => vec![l; batch],
            ClassLabels::Each(v) if v.len() == batch => v,
            ClassLabels::Each(v) => return Err(Error::Input(format!("{} class labels for a batch of {batch}", v.len()))),
        };
        labels
            .iter()
            .map(|&l| match u32::try_from(l) {
                Ok(l) if (l as usize) < k => Ok(l),
                _ => {
                    Err(Error::Input(format!("class label {l} out of range: the model has num_class_embeds = {k} (labels 0..={})", k - 1)))
                }
            })
            .collect::<Result<Vec<u32>>>()
            .map(Some)
    }
}

/// Splits [S, N, C, H, W] step noise into S per-step vectors of one [N, C, H, W] each.
fn split_step_noise(t: Option<&Tensor>, shape: [usize; 4]) -> Result<Vec<Vec<f32>>> {
    let Some(t) = t else { return Ok(Vec::new()) };
    if t.shape.len() != 5 || t.shape[1..] != shape {
        return Err(Error::Input(format!(
            "step noise must be [S, {}, {}, {}, {}], got {:?}",
            shape[0], shape[1], shape[2], shape[3], t.shape
        )));
    }
    Ok(t.data.chunks(shape.iter().product()).map(|c| c.to_vec()).collect())
}

/// A whole number ≥ `min` from a JS number (or any f64), named in the error.
pub fn whole(name: &str, v: f64, min: f64) -> Result<u64> {
    if v.is_finite() && v.fract() == 0.0 && v >= min && v <= 2f64.powi(53) {
        Ok(v as u64)
    } else {
        Err(Error::Input(format!("{name} = {v}: must be a whole number ≥ {min}")))
    }
}

/// A class label from a JS number: a whole number (its range is checked against the model by `plan`).
pub fn label(v: f64) -> Result<i64> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() <= 2f64.powi(53) {
        Ok(v as i64)
    } else {
        Err(Error::Input(format!("class label {v}: must be a whole number")))
    }
}
