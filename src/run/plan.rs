//! A run described as data: the initial latent, the list of steps, the guidance setup and where
//! each step's noise comes from. Engines only execute plans; they decide nothing.

use crate::error::{Error, Result};
use crate::sampler::diffusers::DiffusersScheduler;
use crate::sampler::{rng, RePaintStep, Step};

/// Streams of the seeded noise: 0 is x_T (and SDEdit's ε), s + 1 the noise of step s, and
/// `UNDO_STREAM` + k the k-th RePaint jump.
const UNDO_STREAM: u64 = 1 << 40;

/// Where the variance noise of each step comes from.
#[derive(Clone, Debug)]
pub enum NoiseSource {
    Seed(u64),
    /// One vector per step (fixtures, noise files). A step that adds noise must find its entry.
    Given {
        per_step: Vec<Vec<f32>>,
        /// RePaint's jumps, one vector each in order (`undo_noise`).
        undo: Vec<Vec<f32>>,
    },
}

impl NoiseSource {
    /// The noise of step `index` (only called for steps that add noise).
    pub fn step(&self, index: usize, count: usize) -> Result<Vec<f32>> {
        match self {
            NoiseSource::Seed(s) => Ok(rng::normal(*s, index as u64 + 1, count)),
            NoiseSource::Given { per_step, .. } => match per_step.get(index) {
                Some(v) if v.len() == count => Ok(v.clone()),
                Some(v) => Err(Error::Input(format!("step {index} noise has {} values, needs {count}", v.len()))),
                None => Err(Error::Input(format!(
                    "step {index} adds noise (DDPM, or DDIM with eta > 0) but the given noise has only {} step(s): \
                     give `step_noise` [S, N, C, H, W] with S ≥ {}",
                    per_step.len(),
                    index + 1
                ))),
            },
        }
    }

    /// The noise step `index` may draw, for a scheduler that decides on the host whether it does:
    /// the seeded stream always, given noise where the file has that step.
    pub fn optional_step(&self, index: usize, count: usize) -> Result<Option<Vec<f32>>> {
        match self {
            NoiseSource::Seed(_) => self.step(index, count).map(Some),
            NoiseSource::Given { per_step, .. } if index < per_step.len() => self.step(index, count).map(Some),
            NoiseSource::Given { .. } => Ok(None),
        }
    }

    /// The noise of RePaint's k-th jump back.
    pub fn undo(&self, k: usize, count: usize) -> Result<Vec<f32>> {
        match self {
            NoiseSource::Seed(s) => Ok(rng::normal(*s, UNDO_STREAM + k as u64, count)),
            NoiseSource::Given { undo, .. } => match undo.get(k) {
                Some(v) if v.len() == count => Ok(v.clone()),
                _ => Err(Error::Input(format!("RePaint jump {k} needs `undo_noise`[{k}] of {count} values in the given noise"))),
            },
        }
    }
}

/// Frames of the forward process q(x_t | x0) = keep·x0 + noise·ε, shown before the first
/// evaluation (SDEdit's noising to its strength, the page's forward view). The last frame is
/// the run's x_start.
#[derive(Clone, Debug)]
pub struct ForwardPath {
    pub x0: Vec<f32>,
    pub eps: Vec<f32>,
    /// (timestep, keep, noise) of each frame, least noisy first.
    pub frames: Vec<(i64, f32, f32)>,
}

impl ForwardPath {
    pub fn frame(&self, k: usize) -> Vec<f32> {
        let (_, keep, noise) = self.frames[k];
        self.x0.iter().zip(&self.eps).map(|(x, z)| keep * x + noise * z).collect()
    }
}

/// RePaint's known region: after evaluation i, where `mask` is 1, x is reset to `image` noised
/// to the step's level (`after[i]`), and where the schedule jumps back x is noised forward.
#[derive(Clone, Debug)]
pub struct KnownRegion {
    pub image: Vec<f32>,
    /// 1 keeps the image, 0 is filled (RePaint's convention), one value per element of x.
    pub mask: Vec<f32>,
    pub after: Vec<RePaintStep>,
}

/// The guidance setup of a run: which labels go through the U-Net and how outputs combine.
#[derive(Clone, Debug)]
pub struct Guidance {
    /// Labels of the U-Net batch: [cond; null] when guiding, [cond] otherwise; None if unconditional.
    pub unet_labels: Option<Vec<u32>>,
    pub weight: f32,
    /// Classifier guidance, alone or with classifier-free guidance.
    pub classifier: Option<ClassifierGuidance>,
}

/// Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2, and its score form for the other
/// samplers): ε̂ ← ε̂ − s·σ_t·∇ₓ log p(y | x_t, t), the gradient taken at the U-Net's input (the VP
/// sample: c_in·x for the σ-scaled samplers) and σ_t = √(1 − ᾱ_t) at the U-Net's timestep.
/// Subtracted from the guided model output before the update, so every ε-model sampler sees it.
#[derive(Clone, Debug)]
pub struct ClassifierGuidance {
    pub scale: f32,
    /// The class each item is guided towards.
    pub labels: Vec<u32>,
    /// ᾱ of the forward process (the classifier's, checked equal to the run's scheduler's).
    pub alphas_cumprod: Vec<f32>,
}

impl ClassifierGuidance {
    /// The classifier backward's seed at model timestep `t_model`: (label, s·σ_t) per item, [N, 2]
    /// (`classifier::ClassifierOps::log_softmax_backward`), so the backward yields the whole term.
    pub fn target(&self, t_model: f32) -> Vec<f32> {
        let k = self.scale * crate::sampler::schedule::vp_sigma(&self.alphas_cumprod, t_model);
        self.labels.iter().flat_map(|&y| [y as f32, k]).collect()
    }
}

impl Guidance {
    /// `labels` are already checked against the model (one per item, in range).
    pub fn new(num_class_embeds: Option<usize>, labels: Option<Vec<u32>>, weight: f32) -> Result<Self> {
        if !weight.is_finite() || weight < 0.0 {
            return Err(Error::Input(format!("guidance = {weight}: must be a finite number ≥ 0")));
        }
        if weight == 0.0 {
            return Ok(Guidance { unet_labels: labels, weight, classifier: None });
        }
        // Classifier-free guidance: the batch runs twice, with the labels and with the null class.
        match (num_class_embeds, labels) {
            (Some(k), Some(mut labels)) => {
                let n = labels.len();
                labels.extend(std::iter::repeat_n((k - 1) as u32, n));
                Ok(Guidance { unet_labels: Some(labels), weight, classifier: None })
            }
            (Some(_), None) => Err(Error::Input("this model is class-conditional: class labels are required".into())),
            (None, _) => Err(Error::Input("guidance needs a class-conditional model".into())),
        }
    }

    pub fn doubles_batch(&self) -> bool {
        self.weight != 0.0
    }

    /// The guided output of element i from the U-Net output `m` ([2N] when guiding), without
    /// the classifier's term (the engines subtract it: `classifier_term`).
    pub fn combine(&self, m: &[f32], i: usize, half: usize) -> f32 {
        if self.doubles_batch() {
            (1.0 + self.weight) * m[i] - self.weight * m[i + half]
        } else {
            m[i]
        }
    }
}

/// Everything a run does, decided before it starts.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub steps: Vec<Step>,
    pub guidance: Guidance,
    pub noise: NoiseSource,
    /// [N, C, H, W] of the samples being denoised.
    pub shape: [usize; 4],
    /// The latent the run starts from (x_T for plain sampling).
    pub x_start: Vec<f32>,
    /// Forward-process frames shown before the first evaluation.
    pub forward: Option<ForwardPath>,
    /// Inpainting: the region kept after each evaluation.
    pub known: Option<KnownRegion>,
    /// The steps run the ODE from the image to noise (DDIM inversion).
    pub inverts: bool,
    /// A scheduler stepped on the host through diffusers' API (`sampler::diffusers`); the
    /// engine only evaluates the U-Net at each of `steps` (whose update passes the guided model
    /// output through as x).
    pub host: Option<HostSchedule>,
    /// A branch: the run starts from a node's state at one of its evaluations (`branch`).
    pub resume: Option<super::branch::Resume>,
    /// The sampler of a plain sampling plan (a fused one): what its branch nodes record.
    pub origin: Option<super::branch::PlanOrigin>,
}

/// The host-stepped scheduler of a run: its class and config, built afresh at each run's start
/// (a scheduler keeps state between steps).
#[derive(Clone, Debug, PartialEq)]
pub struct HostSchedule {
    pub class: &'static str,
    /// `scheduler_config.json` with `_class_name` = `class`.
    pub config: String,
    pub steps: usize,
    /// Items in the flat sample (dynamic thresholding is per item).
    pub batch: usize,
}

/// `ScoreSdeVeScheduler`'s class name: its run is a predictor–corrector loop of its own.
pub const SCORE_SDE_VE: &str = "ScoreSdeVeScheduler";

impl HostSchedule {
    /// ScoreSdeVePipeline's scheduler: `set_timesteps(steps)` then `set_sigmas(steps)`.
    pub fn score_sde_ve(&self) -> Result<crate::sampler::diffusers::ScoreSdeVeScheduler> {
        let cfg = crate::sampler::diffusers::Cfg::parse(&self.config)?;
        let mut s = crate::sampler::diffusers::ScoreSdeVeScheduler::new(&cfg)?;
        s.set_timesteps(self.steps)?;
        s.set_sigmas(self.steps)?;
        s.set_batch_size(self.batch)?;
        Ok(s)
    }

    /// The scheduler, with `set_timesteps(steps)` done.
    pub fn scheduler(&self) -> Result<Box<dyn DiffusersScheduler>> {
        let mut s: Box<dyn DiffusersScheduler> = match crate::sampler::sde::CLASSES.contains(&self.class) {
            true => Box::new(crate::sampler::sde::VpSdeSampler::from_config(&self.config)?),
            false => crate::sampler::diffusers::from_config(&self.config)?,
        };
        s.set_timesteps(self.steps)?;
        s.set_batch_size(self.batch)?;
        Ok(s)
    }
}

impl RunPlan {
    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }

    /// A plain sampling plan (no forward frames, no known region).
    pub fn new(steps: Vec<Step>, guidance: Guidance, noise: NoiseSource, shape: [usize; 4], x_start: Vec<f32>) -> Self {
        RunPlan {
            steps,
            guidance,
            noise,
            shape,
            x_start,
            forward: None,
            known: None,
            inverts: false,
            host: None,
            resume: None,
            origin: None,
        }
    }

    /// Frames the run shows: forward frames, then one per evaluation.
    pub fn frame_count(&self) -> usize {
        self.forward.as_ref().map_or(0, |f| f.frames.len()) + self.steps.len()
    }

    /// Batch size of the U-Net call (doubled for classifier-free guidance).
    pub fn unet_batch(&self) -> usize {
        if self.guidance.doubles_batch() {
            2 * self.shape[0]
        } else {
            self.shape[0]
        }
    }

    /// The noise step `index` adds, or None when it adds none.
    pub fn step_noise(&self, index: usize) -> Result<Option<Vec<f32>>> {
        if self.steps[index].coeffs.c_noise == 0.0 {
            return Ok(None);
        }
        self.noise.step(index, self.count()).map(Some)
    }

    /// Fails before the run starts if the starting latent or any step's noise is missing or misshaped.
    pub fn check_noise(&self) -> Result<()> {
        if self.x_start.len() != self.count() {
            return Err(Error::Input(format!("initial latent has {} values, the run needs {}", self.x_start.len(), self.count())));
        }
        if let NoiseSource::Given { .. } = self.noise {
            for i in 0..self.steps.len() {
                self.step_noise(i)?;
            }
            if let Some(known) = &self.known {
                for i in 0..known.after.len() {
                    self.noise.step(i, self.count())?;
                }
                for k in 0..known.after.iter().filter(|r| r.undo.is_some()).count() {
                    self.noise.undo(k, self.count())?;
                }
            }
        }
        Ok(())
    }
}
