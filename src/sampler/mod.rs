//! Samplers: the noise schedule and step rules (`schedule`), seeded noise (`rng`), and the
//! sampling loop on the CPU engine (the GPU loop lives in `gpu::sampler`).

pub mod rng;
pub mod schedule;

pub use schedule::{SamplerKind, Schedule, SchedulerConfig, Step, StepCoeffs};

use crate::error::{Error, Result};

/// What to sample: the options shared by the CLI, the page and the tests.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub kind: SamplerKind,
    pub steps: usize,
    pub eta: f32,
    pub seed: u64,
    pub batch: usize,
    /// Class label per batch item (class-conditional models).
    pub class_labels: Option<Vec<u32>>,
    /// Classifier-free guidance weight w (Ho & Salimans): ε̃ = (1+w)·ε(c) − w·ε(∅). 0 = no guidance.
    pub guidance: f32,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions { kind: SamplerKind::Ddim, steps: 50, eta: 0.0, seed: 0, batch: 1, class_labels: None, guidance: 0.0 }
    }
}

/// Noise for a run: x_T and the noise of each step, from a seed or given explicitly (fixtures).
#[derive(Clone, Debug)]
pub enum NoiseSource {
    Seed(u64),
    Given { x_t: Vec<f32>, per_step: Vec<Vec<f32>> },
}

impl NoiseSource {
    pub fn x_t(&self, count: usize) -> Result<Vec<f32>> {
        match self {
            NoiseSource::Seed(s) => Ok(rng::normal(*s, 0, count)),
            NoiseSource::Given { x_t, .. } if x_t.len() == count => Ok(x_t.clone()),
            NoiseSource::Given { x_t, .. } => Err(Error::Input(format!("initial noise has {} values, the sample needs {count}", x_t.len()))),
        }
    }

    pub fn step(&self, step: usize, count: usize) -> Result<Vec<f32>> {
        match self {
            NoiseSource::Seed(s) => Ok(rng::normal(*s, step as u64 + 1, count)),
            NoiseSource::Given { per_step, .. } => match per_step.get(step) {
                Some(v) if v.len() == count => Ok(v.clone()),
                Some(v) => Err(Error::Input(format!("step {step} noise has {} values, needs {count}", v.len()))),
                None => Ok(vec![0.0; count]),
            },
        }
    }
}

/// The guidance setup of a run: which labels go through the U-Net and how outputs combine.
#[derive(Clone, Debug)]
pub struct Guidance {
    /// Labels of the U-Net batch: [cond; null] when guiding, [cond] otherwise; None if unconditional.
    pub unet_labels: Option<Vec<u32>>,
    pub weight: f32,
}

impl Guidance {
    pub fn new(num_class_embeds: Option<usize>, opts: &SampleOptions) -> Result<Self> {
        if !opts.guidance.is_finite() || opts.guidance < 0.0 {
            return Err(Error::Input(format!("guidance = {}: must be a finite number ≥ 0", opts.guidance)));
        }
        match (num_class_embeds, &opts.class_labels) {
            (None, Some(_)) => Err(Error::Input("this model has no class embedding: --class is not accepted".into())),
            (None, None) if opts.guidance != 0.0 => Err(Error::Input("guidance needs a class-conditional model".into())),
            (None, None) => Ok(Guidance { unet_labels: None, weight: 0.0 }),
            (Some(k), labels) => {
                let labels = labels.clone().ok_or_else(|| Error::Input(format!(
                    "this model is class-conditional ({k} classes, the last is the null class): give a class label")))?;
                if labels.len() != opts.batch {
                    return Err(Error::Input(format!("{} class labels for a batch of {}", labels.len(), opts.batch)));
                }
                if let Some(bad) = labels.iter().find(|&&l| l as usize >= k) {
                    return Err(Error::Input(format!("class {bad} out of range: the model has {k} classes")));
                }
                if opts.guidance == 0.0 {
                    return Ok(Guidance { unet_labels: Some(labels), weight: 0.0 });
                }
                let null = (k - 1) as u32;
                let mut both = labels.clone();
                both.extend(std::iter::repeat_n(null, labels.len()));
                Ok(Guidance { unet_labels: Some(both), weight: opts.guidance })
            }
        }
    }

    pub fn doubles_batch(&self) -> bool {
        self.weight != 0.0
    }
}

/// Combines the U-Net output `m` ([2N] when guiding) into the guided output of item i.
pub fn guided(m: &[f32], i: usize, half: usize, w: f32, guiding: bool) -> f32 {
    if guiding { (1.0 + w) * m[i] - w * m[i + half] } else { m[i] }
}

/// The parts of a run both engines share: steps, guidance and noise, for a batch of h×w samples.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub steps: Vec<Step>,
    pub guidance: Guidance,
    pub noise: NoiseSource,
    /// [N, C, H, W] of the samples being denoised.
    pub shape: [usize; 4],
}

impl RunPlan {
    pub fn new(model: &crate::Model, schedule: &Schedule, opts: &SampleOptions, noise: NoiseSource, h: usize, w: usize) -> Result<Self> {
        if opts.batch == 0 {
            return Err(Error::Input("batch size 0".into()));
        }
        model.config.check_input_size(h, w)?;
        let steps = schedule.steps(opts.kind, opts.steps, opts.eta)?;
        let guidance = Guidance::new(model.config.num_class_embeds, opts)?;
        Ok(RunPlan { steps, guidance, noise, shape: [opts.batch, model.config.in_channels, h, w] })
    }

    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Batch size of the U-Net call (doubled for classifier-free guidance).
    pub fn unet_batch(&self) -> usize {
        if self.guidance.doubles_batch() { 2 * self.shape[0] } else { self.shape[0] }
    }
}

/// Reported after each step.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    pub index: usize,
    pub total: usize,
    pub timestep: i64,
}

/// The sampling loop on the CPU engine, one step at a time (so a page can draw between steps).
pub struct CpuSampler<'m> {
    model: &'m crate::Model,
    backend: crate::cpu::CpuBackend,
    pub plan: RunPlan,
    pub x: Vec<f32>,
    pub x0: Vec<f32>,
    next: usize,
}

impl<'m> CpuSampler<'m> {
    pub fn new(model: &'m crate::Model, plan: RunPlan) -> Result<Self> {
        let count = plan.count();
        let x = plan.noise.x_t(count)?;
        Ok(CpuSampler { model, backend: crate::cpu::CpuBackend::new(model), plan, x, x0: vec![0.0; count], next: 0 })
    }

    pub fn done(&self) -> bool {
        self.next >= self.plan.steps.len()
    }

    /// Runs the next step; None when the run is complete.
    pub fn step(&mut self) -> Result<Option<StepInfo>> {
        let Some(step) = self.plan.steps.get(self.next).copied() else { return Ok(None) };
        let i = self.next;
        let count = self.plan.count();
        let [n, c, h, w] = self.plan.shape;
        let ub = self.plan.unet_batch();
        let mut input = self.x.clone();
        if ub != n {
            input.extend_from_slice(&self.x);
        }
        let sample = crate::Tensor::new(vec![ub, c, h, w], input)?;
        let ts = vec![step.timestep as f32; ub];
        let m = crate::cpu::forward_with(&mut self.backend, self.model, &sample, &ts, self.plan.guidance.unet_labels.as_deref())?;
        let noise = if step.coeffs.c_noise != 0.0 { self.plan.noise.step(i, count)? } else { vec![0.0; count] };
        let guiding = self.plan.guidance.doubles_batch();
        for j in 0..count {
            let mj = guided(&m.data, j, count, self.plan.guidance.weight, guiding);
            (self.x[j], self.x0[j]) = step.coeffs.apply(self.x[j], mj, noise[j]);
        }
        self.next += 1;
        Ok(Some(StepInfo { index: i, total: self.plan.steps.len(), timestep: step.timestep }))
    }

    pub fn sample(&self) -> Result<crate::Tensor> {
        crate::Tensor::new(self.plan.shape.to_vec(), self.x.clone())
    }
}

/// The whole sampling loop on the CPU engine. `on_step(info, x_t, predicted_x0)` is called after
/// every step and may return false to cancel (the run then ends with `Error::Cancelled`).
pub fn run_cpu(model: &crate::Model, plan: &RunPlan, mut on_step: impl FnMut(StepInfo, &[f32], &[f32]) -> bool) -> Result<crate::Tensor> {
    let mut s = CpuSampler::new(model, plan.clone())?;
    while let Some(info) = s.step()? {
        if !on_step(info, &s.x, &s.x0) {
            return Err(Error::Cancelled);
        }
    }
    s.sample()
}
