//! The options of a sampling run: one builder with one set of defaults, shared by the CLI, the
//! wasm API and the tests. Nothing is checked while building; `plan` checks everything at once.

use super::branch::{Node, PlanOrigin};
use super::plan::{ClassifierGuidance, ForwardPath, Guidance, HostSchedule, KnownRegion, NoiseSource, RunPlan, SCORE_SDE_VE};
use crate::classifier::{Classifier, ClassifierConfig};
use crate::error::{Error, Result};
use crate::sampler::diffusers::DiffusersScheduler;
use crate::sampler::sde::RK45;
use crate::sampler::{SamplerKind, Schedule, SchedulerConfig, Step, StepCoeffs};
use crate::{Model, Tensor};

/// RePaint's defaults in diffusers (`RePaintScheduler.set_timesteps`).
pub const DEFAULT_JUMP_LENGTH: usize = 10;
pub const DEFAULT_JUMP_N_SAMPLE: usize = 10;

/// A run on a given image, [N or 1, C, H, W] in the model's range (−1 … 1 for images). The
/// image sets the run's size; one image is repeated over the batch.
#[derive(Clone, Debug)]
pub enum Edit {
    /// SDEdit (diffusers img2img): the image noised to `strength` (0 < s ≤ 1), then denoised by
    /// the last int(steps·s) steps; the noising is shown first, as forward frames.
    Img2Img { image: Tensor, strength: f64 },
    /// RePaint inpainting: keep the image where `mask` is 1 and fill where it is 0. The mask is
    /// [N or 1, 1 or C, H, W] with values in 0 … 1.
    Inpaint { image: Tensor, mask: Tensor, jump_length: usize, jump_n_sample: usize },
    /// DDIM inversion: the image run up the deterministic ODE to its x_T.
    Invert { image: Tensor },
    /// The forward process q(x_t | x0) on the image, `frames` frames up to timestep `t_end`.
    Forward { image: Tensor, t_end: usize, frames: usize },
}

impl Edit {
    fn image(&self) -> &Tensor {
        match self {
            Edit::Img2Img { image, .. } | Edit::Inpaint { image, .. } | Edit::Invert { image } | Edit::Forward { image, .. } => image,
        }
    }
}

pub const DEFAULT_STEPS: usize = 50;
pub const DEFAULT_BATCH: usize = 4;

/// Noise given explicitly (fixtures, `ddim sample --noise FILE`).
#[derive(Clone, Debug)]
pub struct GivenNoise {
    /// x_T, [N, C, H, W]: sets the batch and the image size of the run.
    pub x_t: Tensor,
    /// The variance noise of every step, [S, N, C, H, W]; needed when a step adds noise.
    pub per_step: Option<Tensor>,
    /// RePaint: the noise of each jump back, [J, N, C, H, W].
    pub undo: Option<Tensor>,
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
    edit: Option<Edit>,
    tolerance: Option<f64>,
    classifier: Option<ClassifierRequest>,
    resume: Option<std::sync::Arc<Node>>,
}

/// Classifier guidance asked for: the classifier's config (the engine holds its weights), the
/// scale s and the classes to guide towards.
#[derive(Clone, Debug)]
struct ClassifierRequest {
    config: ClassifierConfig,
    scale: f32,
    labels: Option<ClassLabels>,
}

/// Samplers whose U-Net time input is not a VP timestep (σ or c_noise(σ)): the classifier,
/// trained on the VP forward process, has no noise level to read there.
const NOT_VP: [&str; 4] = ["ScoreSdeVeScheduler", "EDMEulerScheduler", "EDMDPMSolverMultistepScheduler", "CMStochasticIterativeScheduler"];

impl RunOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// A branch: the run starts from `node` (`branch::fork` says what may change).
    pub fn resume(mut self, node: std::sync::Arc<Node>) -> Self {
        self.resume = Some(node);
        self
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

    /// The adaptive RK45 ODE solver's rtol and atol (`vp-ode-rk45`); default the scheduler
    /// config's `rtol`/`atol`, else 1e-5 (Song et al.'s).
    pub fn tolerance(mut self, tol: f64) -> Self {
        self.tolerance = Some(tol);
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

    /// Classifier guidance with scale s ≥ 0 (0: none) by the classifier of `config` (the engine
    /// must hold its weights: `AnyEngine::set_classifier`), towards `labels` (default: the run's
    /// class labels where the classifier has those classes, else 0, 1, 2, … cycling).
    pub fn classifier_guidance(mut self, config: &ClassifierConfig, scale: f32, labels: Option<ClassLabels>) -> Self {
        self.classifier = Some(ClassifierRequest { config: config.clone(), scale, labels });
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

    /// Edit this image instead of sampling from noise (SDEdit, RePaint, inversion, forward).
    pub fn edit(mut self, edit: Edit) -> Self {
        self.edit = Some(edit);
        self
    }

    /// The DDIM run back down from an inverted x_T: these options without the edit or the seed.
    pub fn reconstruction(&self, x_t: Tensor) -> RunOptions {
        RunOptions { edit: None, seed: None, sampler: Some(SamplerKind::Ddim), eta: None, ..self.clone() }.noise(GivenNoise {
            x_t,
            per_step: None,
            undo: None,
        })
    }

    /// Checks every option against the model and lays out the run.
    pub fn plan(&self, model: &Model) -> Result<RunPlan> {
        let cfg = &model.config;
        let (batch, (h, w)) = match &self.edit {
            Some(edit) => self.batch_and_size_of_image(model, edit.image())?,
            None => self.batch_and_size(model)?,
        };
        if batch == 0 {
            return Err(Error::Input("batch = 0: need at least one image".into()));
        }
        cfg.check_input_size(h, w)?;
        let shape = [batch, cfg.in_channels, h, w];
        let config = self.scheduler.clone().unwrap_or_else(|| model.scheduler.clone());
        // The sampler asked for, else the one the scheduler config names (`_class_name`: an error
        // where it is not one of ours), else DDIM (a config without a class, as diffusers' own).
        let kind = match (self.sampler, config.class_name.as_deref()) {
            (Some(kind), _) => kind,
            (None, Some(class)) => SamplerKind::of_class(class)?,
            (None, None) => SamplerKind::Ddim,
        };
        let n = self.steps.unwrap_or(DEFAULT_STEPS);
        let eta = self.eta.unwrap_or(0.0);
        let labels = self.resolve_labels(cfg.num_class_embeds, batch)?;
        let guidance = Guidance::new(cfg.num_class_embeds, labels, self.guidance.unwrap_or(0.0))?;
        // Beyond 2^30 values (4 GiB of f32) no engine here can hold x_t: refuse before allocating.
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&c| c <= 1 << 30).ok_or_else(|| {
            Error::Input(format!("batch = {batch} of {}x{h}x{w} images is more than 2^30 values: too large to sample", cfg.in_channels))
        })?;
        // ε: x_T of plain sampling, the noise SDEdit adds, RePaint's start.
        let (noise, eps) = match &self.noise {
            None => {
                let seed = self.seed.unwrap_or(0);
                (NoiseSource::Seed(seed), crate::sampler::rng::normal(seed, 0, count))
            }
            Some(given) => {
                if self.seed.is_some() {
                    return Err(Error::Input("a seed and given noise were both set: pick one".into()));
                }
                let per_step = split_step_noise(given.per_step.as_ref(), shape, "step noise")?;
                let undo = split_step_noise(given.undo.as_ref(), shape, "undo noise")?;
                (NoiseSource::Given { per_step, undo }, given.x_t.data.clone())
            }
        };
        let base = RunPlan::new(Vec::new(), guidance, noise, shape, eps);
        // A class only the host steps, or a config the fused update refuses: diffusers' API on the host.
        let host_class = match kind {
            SamplerKind::Host(class) => Some(class),
            _ if config.fused_refusal.is_some() => Some(kind.class_name()),
            _ => None,
        };
        if let (Some(tol), false) = (self.tolerance, host_class == Some(RK45)) {
            return Err(Error::Input(format!("tolerance = {tol}: only the adaptive ODE solver (vp-ode-rk45) has a tolerance")));
        }
        let plan = match (&self.edit, host_class) {
            (None, Some(class)) => host_plan(&config, class, (n, eta, self.tolerance), base)?,
            (Some(_), Some(class)) => {
                return Err(Error::Input(format!(
                    "editing runs (img2img, inpaint, invert, forward) use the fused samplers (ddim, ddpm, dpm++2m, euler, heun); \
                     {class}{} is stepped on the host",
                    config.fused_refusal.as_ref().map_or(String::new(), |r| format!(" with this config ({r})"))
                )))
            }
            (None, None) => {
                let schedule = Schedule::new(config.for_sampler(kind));
                // Euler and Heun start from noise · init_noise_sigma, as diffusers' pipelines do.
                let init_sigma = schedule.init_noise_sigma(kind, n)?;
                let x_start = base.x_start.iter().map(|v| v * init_sigma).collect();
                let steps = schedule.steps(kind, n, eta)?;
                let timesteps = steps.iter().map(|s| s.timestep).collect();
                let origin = PlanOrigin { kind, steps: n, config: config.for_sampler(kind), timesteps };
                RunPlan { steps, x_start, origin: Some(origin), ..base }
            }
            (Some(edit), None) => self.edit_plan(edit, &config, (kind, n, eta), base)?,
        };
        plan.check_noise()?;
        let mut plan = match &self.resume {
            Some(node) => super::branch::fork(node, plan, eta)?,
            None => plan,
        };
        if let Some(request) = &self.classifier {
            plan.guidance.classifier = self.classifier_plan(request, &config, host_class, &plan)?;
        }
        // A Fourier (VE) model reads σ, a learned table integer rows: a sampler giving it other
        // timesteps is refused here, not run into NaN or a wrong row.
        let ts: Vec<f32> = plan.steps.iter().map(|s| s.t_model).collect();
        cfg.check_timesteps(&ts).map_err(|e| Error::Input(format!("{e} (sampler {})", kind.as_str())))?;
        Ok(plan)
    }

    /// Classifier guidance checked against the run: an ε-model sampled (not inverted) at VP
    /// timesteps of the classifier's forward process, images of its size, labels among its classes.
    fn classifier_plan(
        &self,
        request: &ClassifierRequest,
        config: &SchedulerConfig,
        host_class: Option<&str>,
        plan: &RunPlan,
    ) -> Result<Option<ClassifierGuidance>> {
        let s = request.scale;
        if !s.is_finite() || s < 0.0 {
            return Err(Error::Input(format!("classifier guidance scale = {s}: must be a finite number ≥ 0")));
        }
        if s == 0.0 {
            return Ok(None);
        }
        let says = |why: String| Error::Input(format!("classifier guidance (scale {s}): {why}"));
        let refuse = |why: String| Err(says(why));
        if plan.inverts {
            return refuse("DDIM inversion runs the ODE towards noise; guidance is for sampling".into());
        }
        if let Some(class) = host_class.filter(|c| NOT_VP.contains(c)) {
            return refuse(format!("{class} gives the model σ, not a VP timestep; the classifier reads VP timesteps"));
        }
        if config.prediction_type != crate::sampler::schedule::PredictionType::Epsilon {
            return refuse(format!("it shifts the predicted noise ε; this model predicts {:?}", config.prediction_type.as_str()));
        }
        let [n, c, h, w] = plan.shape;
        let alphas_cumprod = Schedule::new(config.clone()).alphas_cumprod;
        Classifier::check_config_fits(&request.config, c, (h, w), &alphas_cumprod)?;
        let k = request.config.num_classes;
        let own = self.labels.clone().filter(|l| match l {
            ClassLabels::All(v) => (0..k as i64).contains(v),
            ClassLabels::Each(v) => v.iter().all(|v| (0..k as i64).contains(v)),
            ClassLabels::Mixed => true,
        });
        let labels: Vec<i64> = match request.labels.clone().or(own).unwrap_or(ClassLabels::Mixed) {
            ClassLabels::Mixed => (0..n).map(|i| (i % k) as i64).collect(),
            ClassLabels::All(l) => vec![l; n],
            ClassLabels::Each(v) if v.len() == n => v,
            ClassLabels::Each(v) => return refuse(format!("{} classifier labels for a batch of {n}", v.len())),
        };
        let labels = labels
            .iter()
            .map(|&l| match u32::try_from(l) {
                Ok(l) if (l as usize) < k => Ok(l),
                _ => Err(says(format!("class {l} is not one of the classifier's {k} classes (0..={})", k - 1))),
            })
            .collect::<Result<Vec<u32>>>()?;
        Ok(Some(ClassifierGuidance { scale: s, labels, alphas_cumprod }))
    }

    /// The plan of an edit, from `base` (guidance, noise, shape, and ε as x_start).
    fn edit_plan(
        &self,
        edit: &Edit,
        config: &SchedulerConfig,
        (kind, n, eta): (SamplerKind, usize, f32),
        base: RunPlan,
    ) -> Result<RunPlan> {
        let image = broadcast(edit.image(), base.shape, "image")?;
        let only_ddim = |what: &str| match self.sampler {
            Some(k) if k != SamplerKind::Ddim => {
                Err(Error::Input(format!("{what} runs DDIM's update: sampler {:?} is not available for it", k.as_str())))
            }
            _ => Ok(()),
        };
        Ok(match edit {
            Edit::Img2Img { strength, .. } => {
                let schedule = Schedule::new(config.for_sampler(kind));
                let edit = schedule.img2img(kind, n, eta, *strength)?;
                let forward = img2img_frames(&schedule, kind, &edit, image, base.x_start.clone());
                RunPlan { x_start: forward.frame(forward.frames.len() - 1), steps: edit.steps, forward: Some(forward), ..base }
            }
            Edit::Inpaint { mask, jump_length, jump_n_sample, .. } => {
                only_ddim("inpainting (RePaint)")?;
                let mask = broadcast(mask, base.shape, "mask")?;
                if let Some(v) = mask.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                    return Err(Error::Input(format!("mask value {v}: must be from 0 (fill) to 1 (keep)")));
                }
                let after = Schedule::new(config.clone()).repaint(n, *jump_length, *jump_n_sample, eta)?;
                RunPlan { steps: after.iter().map(|r| r.step).collect(), known: Some(KnownRegion { image, mask, after }), ..base }
            }
            Edit::Invert { .. } => {
                only_ddim("DDIM inversion")?;
                if eta != 0.0 {
                    return Err(Error::Input(format!("eta = {eta}: DDIM inversion is deterministic (η = 0)")));
                }
                RunPlan { steps: Schedule::new(config.clone()).ddim_inverse_steps(n)?, x_start: image, inverts: true, ..base }
            }
            Edit::Forward { t_end, frames, .. } => {
                let schedule = Schedule::new(config.clone());
                let t_count = schedule.alphas_cumprod.len();
                if *t_end >= t_count || *frames == 0 {
                    return Err(Error::Input(format!(
                        "forward process to t = {t_end} in {frames} frames: t must be below num_train_timesteps = {t_count}, frames at least 1"
                    )));
                }
                let levels = (1..=*frames).map(|k| (k * t_end / frames) as i64).collect::<Vec<_>>();
                let path = vp_frames(&schedule, &levels, image, base.x_start.clone());
                RunPlan { x_start: path.frame(path.frames.len() - 1), forward: Some(path), ..base }
            }
        })
    }

    /// The batch and size of an edit: the image's, its one item repeated to `batch` if set.
    fn batch_and_size_of_image(&self, model: &Model, image: &Tensor) -> Result<(usize, (usize, usize))> {
        let &[n, c, h, w] = &image.shape[..] else {
            return Err(Error::Input(format!("the image must be [N, C, H, W], got {:?}", image.shape)));
        };
        if c != model.config.in_channels {
            return Err(Error::Input(format!("the image has {c} channels, the model's in_channels is {}", model.config.in_channels)));
        }
        if let Some(v) = image.data.iter().find(|v| !v.is_finite()) {
            return Err(Error::Input(format!("the image holds {v}: values must be finite")));
        }
        let batch = match self.batch {
            Some(b) if n == 1 || b == n => b,
            Some(b) => return Err(Error::Input(format!("batch = {b}, but the image holds {n} images (give 1 or {b})"))),
            None => n,
        };
        if let Some(given) = &self.noise {
            if given.x_t.shape != [batch, c, h, w] {
                return Err(Error::Input(format!("the given noise is {:?}, the edit needs {:?}", given.x_t.shape, [batch, c, h, w])));
            }
        }
        Ok((batch, (h, w)))
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

/// A [N or 1, C or 1, H, W] tensor repeated to `shape` (an image over the batch, a mask over
/// the channels too).
fn broadcast(t: &Tensor, shape: [usize; 4], what: &str) -> Result<Vec<f32>> {
    let [n, c, h, w] = shape;
    let ok = t.shape.len() == 4 && (t.shape[0] == n || t.shape[0] == 1) && (t.shape[1] == c || t.shape[1] == 1) && t.shape[2..] == [h, w];
    if !ok {
        return Err(Error::Input(format!("the {what} is {:?}: expected [{n} or 1, {c} or 1, {h}, {w}]", t.shape)));
    }
    let (tn, tc) = (t.shape[0], t.shape[1]);
    let mut out = Vec::with_capacity(n * c * h * w);
    for i in 0..n {
        for ch in 0..c {
            let at = ((i % tn) * tc + ch % tc) * h * w;
            out.extend_from_slice(&t.data[at..at + h * w]);
        }
    }
    Ok(out)
}

/// Forward frames at integer `levels`: √ᾱ_t·x0 + √(1−ᾱ_t)·ε (diffusers' `add_noise`, in f32).
fn vp_frames(schedule: &Schedule, levels: &[i64], x0: Vec<f32>, eps: Vec<f32>) -> ForwardPath {
    let frames = levels
        .iter()
        .map(|&t| {
            let a = schedule.alphas_cumprod[t as usize];
            (t, a.sqrt(), (1.0 - a).sqrt())
        })
        .collect();
    ForwardPath { x0, eps, frames }
}

/// SDEdit's noising shown as frames: the image at each kept step's level, least noisy first, in
/// the sampler's own space (sigma space for Euler and Heun: x0 + σ·ε); the last frame is exactly
/// diffusers' `add_noise` at the first kept step, where the reverse run starts.
fn img2img_frames(schedule: &Schedule, kind: SamplerKind, edit: &crate::sampler::Img2Img, x0: Vec<f32>, eps: Vec<f32>) -> ForwardPath {
    let mut levels: Vec<i64> = edit.steps.iter().map(|s| s.timestep).collect();
    levels.dedup();
    levels.reverse();
    let mut path = vp_frames(schedule, &levels[..levels.len() - 1], x0, eps);
    if matches!(kind, SamplerKind::Euler | SamplerKind::Heun) {
        path.frames.iter_mut().for_each(|f| *f = (f.0, 1.0, f.2 / f.1));
    }
    path.frames.push((edit.timestep, edit.keep, edit.noise));
    path
}

/// Splits [S, N, C, H, W] step noise into S per-step vectors of one [N, C, H, W] each.
fn split_step_noise(t: Option<&Tensor>, shape: [usize; 4], what: &str) -> Result<Vec<Vec<f32>>> {
    let Some(t) = t else { return Ok(Vec::new()) };
    if t.shape.len() != 5 || t.shape[1..] != shape {
        return Err(Error::Input(format!("{what} must be [S, {}, {}, {}, {}], got {:?}", shape[0], shape[1], shape[2], shape[3], t.shape)));
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

/// The plan of a host-stepped run: one evaluation per timestep of the class's `set_timesteps(n)`
/// (its model input scaled on the host), x_T · init_noise_sigma.
fn host_plan(config: &SchedulerConfig, class: &'static str, (n, eta, tol): (usize, f32, Option<f64>), base: RunPlan) -> Result<RunPlan> {
    if eta != 0.0 {
        return Err(Error::Scheduler(format!("eta = {eta}: only the fused DDIM has eta ({class} is stepped on the host)")));
    }
    let mut host = host_schedule(config, class, n, base.shape[0]);
    if let Some(tol) = tol {
        if class != RK45 {
            return Err(Error::Input(format!("tolerance = {tol}: only the adaptive ODE solver (vp-ode-rk45) has a tolerance")));
        }
        let mut json: serde_json::Value = serde_json::from_str(&host.config).map_err(|e| Error::Scheduler(e.to_string()))?;
        (json["rtol"], json["atol"]) = (tol.into(), tol.into());
        host.config = json.to_string();
    }
    if class == SCORE_SDE_VE {
        return score_sde_ve_plan(host, base);
    }
    if class == RK45 {
        // Evaluations come as the solver asks for them; the plan's one step is their update.
        crate::sampler::rk45::Rk45Ode::new(&host.config, &base.x_start, 1)?; // the keys, checked now
        let pass = StepCoeffs { eps_m: 1.0, c_eps: 1.0, ..Default::default() };
        let step = Step { timestep: 999, t_model: 0.0, c_in: 1.0, coeffs: pass };
        return Ok(RunPlan { steps: vec![step], host: Some(host), ..base });
    }
    let scheduler = host.scheduler()?;
    // The engine's update passes the guided model output through as x; the host steps from it.
    let pass = StepCoeffs { eps_m: 1.0, c_eps: 1.0, ..Default::default() };
    let steps =
        scheduler.timesteps().iter().map(|&t| Step { timestep: t.round() as i64, t_model: t as f32, c_in: 1.0, coeffs: pass }).collect();
    let sigma = scheduler.init_noise_sigma();
    let x_start = base.x_start.iter().map(|v| v * sigma).collect();
    Ok(RunPlan { steps, x_start, host: Some(host), ..base })
}

/// ScoreSdeVePipeline's evaluations: at each timestep `correct_steps` Langevin corrections, then
/// the predictor, the model fed σ(t) (a VE model's time input); x_T · σ_max.
fn score_sde_ve_plan(host: HostSchedule, base: RunPlan) -> Result<RunPlan> {
    let s = host.score_sde_ve()?;
    let pass = StepCoeffs { eps_m: 1.0, c_eps: 1.0, ..Default::default() };
    let steps = s
        .timesteps()
        .iter()
        .zip(&s.sigmas)
        .flat_map(|(&t, &sigma)| {
            // Shown as t on a 0 … 1000 scale (t runs from 1 to sampling_eps).
            let step = Step { timestep: (t * 1000.0).round() as i64, t_model: sigma, c_in: 1.0, coeffs: pass };
            std::iter::repeat_n(step, s.correct_steps + 1)
        })
        .collect();
    let sigma = s.init_noise_sigma();
    let x_start = base.x_start.iter().map(|v| v * sigma).collect();
    Ok(RunPlan { steps, x_start, host: Some(host), ..base })
}

/// The config as `class` reads it (`_class_name` set to it), for `n` steps over `batch` items.
fn host_schedule(config: &SchedulerConfig, class: &'static str, n: usize, batch: usize) -> HostSchedule {
    let mut json = match &config.raw {
        serde_json::Value::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    json.insert("_class_name".into(), class.into());
    HostSchedule { class, config: serde_json::Value::Object(json).to_string(), steps: n, batch }
}

/// The samplers `model` can run with its scheduler config: every available one whose
/// timesteps (at the default step count) its time embedding reads (a learned table needs integer
/// timesteps, a Fourier model positive σ) and that its config allows. The page and the element
/// list these.
pub fn usable_samplers(model: &Model) -> Vec<SamplerKind> {
    let n = DEFAULT_STEPS.min(model.scheduler.num_train_timesteps);
    let usable = |kind: SamplerKind| sampler_timesteps(model, kind, n).and_then(|ts| model.config.check_timesteps(&ts)).is_ok();
    SamplerKind::available().into_iter().filter(|&k| usable(k)).collect()
}

/// The model's own sampler: its scheduler config's class where this engine runs it, else DDIM.
pub fn default_sampler(model: &Model) -> SamplerKind {
    model.scheduler.class_name.as_deref().and_then(|c| SamplerKind::of_class(c).ok()).unwrap_or(SamplerKind::Ddim)
}

/// The model timesteps an `n`-step run of `kind` evaluates at.
fn sampler_timesteps(model: &Model, kind: SamplerKind, n: usize) -> Result<Vec<f32>> {
    let config = &model.scheduler;
    match kind {
        SamplerKind::Host(class) => host_ts(config, class, n),
        _ if config.fused_refusal.is_some() => host_ts(config, kind.class_name(), n),
        _ => Ok(Schedule::new(config.for_sampler(kind)).steps(kind, n, 0.0)?.iter().map(|s| s.t_model).collect()),
    }
}

fn host_ts(config: &SchedulerConfig, class: &'static str, n: usize) -> Result<Vec<f32>> {
    let host = host_schedule(config, class, n, 1);
    if class == SCORE_SDE_VE {
        return Ok(host.score_sde_ve()?.sigmas); // the model reads σ
    }
    if class == RK45 {
        return Ok(vec![999.0, 0.999]); // fractional times in (ε·(T − 1), T − 1]: positive, not integers
    }
    Ok(host.scheduler()?.timesteps().iter().map(|&t| t as f32).collect())
}
