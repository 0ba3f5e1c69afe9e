//! One run layer: options → plan → one loop over an `Engine` (the CPU engine or the GPU engine).
//! The CLI, the wasm API and the tests all sample through `run`; editing runs (start from a noised
//! image, keep a masked region, run the ODE backwards) are new plans and step hooks, not new loops.

pub mod branch;
pub mod cpu;
pub mod numbers;
pub mod options;
pub mod plan;

pub use cpu::{CpuEngine, ReferenceEngine};
pub use options::{ClassLabels, GivenNoise, RunOptions};
pub use plan::{ClassifierGuidance, ForwardPath, Guidance, HostSchedule, KnownRegion, NoiseSource, RunPlan};

use crate::error::{Error, Result};
use crate::sampler::diffusers::DiffusersScheduler;
use crate::Tensor;

/// Which tensor a frame shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum View {
    /// The current sample x_t.
    #[default]
    Xt,
    /// The model's prediction of the clean image, x̂₀, at the last step.
    X0,
    /// The predicted noise ε̂ of the last evaluation (guidance combined; a host-stepped sampler's
    /// model output), drawn on a signed colour map (`image_grid::SIGNED_SCALE`).
    Eps,
    /// Classifier-free guidance's parts at the last evaluation: the conditional model output
    /// ε(c) (the model output when not guiding), the unconditional ε(∅), and the guidance term
    /// w·(ε(c) − ε(∅)) — each on the signed colour map.
    EpsCond,
    EpsUncond,
    Guidance,
    /// Classifier guidance's term at the last evaluation, s·σ_t·∇ₓ log p(y | x_t, t): what the
    /// classifier pushes x_t towards (subtracted from ε̂), on the signed colour map.
    Classifier,
}

/// The guidance view's colour scale (±).
pub const GUIDANCE_SCALE: f32 = 0.5;

impl View {
    /// The scale of the signed colour map this view is drawn on, if it is one: ±3 for the noise
    /// predictions (unit Gaussian where the model is right), ±0.5 for the guidance term (the
    /// difference of two such predictions is far smaller: at ±3 it would be all white).
    pub fn signed(self) -> Option<f32> {
        match self {
            View::Eps | View::EpsCond | View::EpsUncond => Some(crate::image_grid::SIGNED_SCALE),
            View::Guidance | View::Classifier => Some(GUIDANCE_SCALE),
            View::Xt | View::X0 => None,
        }
    }

    /// The views a run can show: ε(∅) and the guidance term need classifier-free guidance.
    pub fn check(self, plan: &RunPlan) -> Result<()> {
        if self == View::Classifier && plan.guidance.classifier.is_none() {
            return Err(Error::Input(
                "view \"classifier\": the classifier's term exists only with classifier guidance (a classifier and a scale > 0)".into(),
            ));
        }
        match (self, plan.guidance.doubles_batch()) {
            (View::EpsUncond | View::Guidance, false) => Err(Error::Input(format!(
                "view {:?}: the unconditional output and the guidance term exist only with classifier-free guidance \
                 (a class-conditional model and guidance > 0)",
                self.as_str()
            ))),
            _ => Ok(()),
        }
    }

    pub const ALL: [View; 7] = [View::Xt, View::X0, View::Eps, View::EpsCond, View::EpsUncond, View::Guidance, View::Classifier];

    pub fn as_str(self) -> &'static str {
        match self {
            View::Xt => "xt",
            View::X0 => "x0",
            View::Eps => "eps",
            View::EpsCond => "eps_cond",
            View::EpsUncond => "eps_uncond",
            View::Guidance => "guidance",
            View::Classifier => "classifier",
        }
    }
}

impl std::str::FromStr for View {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        View::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            let names: Vec<String> = View::ALL.iter().map(|v| format!("{:?}", v.as_str())).collect();
            Error::Input(format!("view {s:?}: expected one of {}", names.join(", ")))
        })
    }
}

/// What a frame shows the run doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The forward process q(x_t | x0): the image noised, no U-Net (SDEdit's start, the forward view).
    Forward,
    /// Denoising: one U-Net evaluation and update.
    Reverse,
    /// DDIM inversion: one U-Net evaluation running the ODE towards noise.
    Inversion,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Reverse => "reverse",
            Phase::Inversion => "inversion",
        }
    }
}

/// Reported after each frame: a forward-process frame or a step.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// 0-based over all the run's frames (`RunPlan::frame_count`).
    pub index: usize,
    pub total: usize,
    pub timestep: i64,
    pub phase: Phase,
}

/// What the step hook tells the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Executes plans: holds x_t (and x̂₀) where it computes, the U-Net, and the fused step update.
/// `async fn` in this trait is used through generics only (never `dyn`).
#[allow(async_fn_in_trait)]
pub trait Engine {
    /// Prepares a run of `plan`, with x_t = `plan.x_start`.
    async fn start(&mut self, plan: &RunPlan) -> Result<()>;
    /// Submits step `index`: the U-Net at its timestep (both guidance halves), then the update
    /// with `noise` (None for steps that add none).
    fn step(&mut self, plan: &RunPlan, index: usize, noise: Option<&[f32]>) -> Result<()> {
        self.step_at(plan, index, plan.steps[index].t_model, noise)
    }
    /// `step` with the U-Net at model timestep `t_model` instead of the step's own (an adaptive
    /// solver's evaluations, whose times are known only as it runs: they reuse step 0's update).
    fn step_at(&mut self, plan: &RunPlan, index: usize, t_model: f32, noise: Option<&[f32]>) -> Result<()>;
    /// Resolves when the submitted work is done; reports device errors and losses.
    async fn sync(&mut self) -> Result<()>;
    /// x_t or x̂₀ on the host, [N, C, H, W].
    async fn read(&mut self, view: View) -> Result<Tensor>;
    /// Replaces x_t (step hooks: inpainting keeps a region, inversion restarts from a latent).
    fn write_x(&mut self, x: &[f32]) -> Result<()>;
    /// Replaces x̂₀ (the host-stepped samplers' prediction, shown by the x̂₀ view).
    fn write_x0(&mut self, x0: &[f32]) -> Result<()>;
    /// The solver's history h (`StepCoeffs`), [N, C, H, W]: with x_t and x̂₀ the whole state a
    /// branch resumes from (`branch::EngineState`).
    async fn read_history(&mut self) -> Result<Vec<f32>>;
    /// Replaces h (a branch resumed from a node).
    fn write_history(&mut self, h: &[f32]) -> Result<()>;
    /// The first step (0-based) of this run whose update made x_t NaN or Inf, if any. Asked only
    /// when the final sample is not finite, so a healthy run pays nothing for the guard.
    async fn first_non_finite_step(&mut self) -> Result<Option<usize>>;
}

/// The sampling loop. After every step, `on_step(engine, info)` may show a frame (read or draw
/// the engine's state), change x_t through `write_x`, or stop the run (`Error::Cancelled`).
/// Returns the final sample.
pub async fn run<E: Engine>(
    engine: &mut E,
    plan: &RunPlan,
    mut on_step: impl AsyncFnMut(&mut E, StepInfo) -> Result<Flow>,
) -> Result<Tensor> {
    plan.check_noise()?;
    engine.start(plan).await?;
    if let Some(host) = &plan.host {
        return run_host_stepped(engine, plan, host, on_step).await;
    }
    let total = plan.frame_count();
    let mut frame = 0;
    if let Some(path) = &plan.forward {
        for (k, &(timestep, _, _)) in path.frames.iter().enumerate() {
            engine.write_x(&path.frame(k))?;
            if on_step(engine, StepInfo { index: frame, total, timestep, phase: Phase::Forward }).await? == Flow::Stop {
                return Err(Error::Cancelled);
            }
            frame += 1;
        }
        engine.write_x(&plan.x_start)?;
    }
    let (mut undos, phase) = (0, if plan.inverts { Phase::Inversion } else { Phase::Reverse });
    // A branch starts from a node's state: its evaluations before `first` were run by its parent.
    let first = match &plan.resume {
        Some(r) => {
            r.state.load(engine)?;
            frame += r.first;
            r.first
        }
        None => 0,
    };
    for (index, step) in plan.steps.iter().enumerate().skip(first) {
        let noise = plan.step_noise(index)?;
        engine.step(plan, index, noise.as_deref())?;
        engine.sync().await?;
        if let Some(known) = &plan.known {
            keep_known(engine, plan, known, index, &mut undos).await?;
        }
        if on_step(engine, StepInfo { index: frame, total, timestep: step.timestep, phase }).await? == Flow::Stop {
            return Err(Error::Cancelled);
        }
        frame += 1;
    }
    let x = engine.read(View::Xt).await?;
    if x.data.iter().any(|v| !v.is_finite()) {
        let last = plan.steps.len().saturating_sub(1);
        // A step hook may have written the bad values (write_x): then no step is to blame.
        let index = engine.first_non_finite_step().await?.unwrap_or(last);
        let timestep = plan.steps.get(index.min(last)).map_or(0, |s| s.timestep);
        return Err(Error::NonFinite { step: index + 1, total: plan.steps.len(), timestep });
    }
    Ok(x)
}

/// A run whose scheduler steps on the host (diffusers' API): for each of its timesteps, the
/// engine evaluates the U-Net on scale_model_input(x) (both guidance halves, combined), the
/// scheduler steps from that output, and x and x̂₀ go back to the engine for the frame.
async fn run_host_stepped<E: Engine>(
    engine: &mut E,
    plan: &RunPlan,
    host: &HostSchedule,
    mut on_step: impl AsyncFnMut(&mut E, StepInfo) -> Result<Flow>,
) -> Result<Tensor> {
    if host.class == plan::SCORE_SDE_VE {
        return run_score_sde_ve(engine, plan, host, on_step).await;
    }
    if host.class == crate::sampler::sde::RK45 {
        return run_rk45(engine, plan, host, on_step).await;
    }
    let mut scheduler = host.scheduler()?;
    let timesteps = scheduler.timesteps().to_vec();
    if timesteps.len() != plan.steps.len() {
        return Err(Error::Scheduler(format!(
            "{}: {} timesteps for a plan of {} evaluations",
            host.class,
            timesteps.len(),
            plan.steps.len()
        )));
    }
    let (total, mut x, mut first_bad) = (plan.frame_count(), plan.x_start.clone(), None);
    // A class that predicts no x̂₀ (PNDM) still shows one: from ε on the VP schedule.
    let x0_from_eps = crate::sampler::Schedule::from_json(&host.config)
        .ok()
        .filter(|s| s.config.prediction_type == crate::sampler::schedule::PredictionType::Epsilon)
        .map(|s| s.alphas_cumprod);
    for (index, (&t, step)) in timesteps.iter().zip(&plan.steps).enumerate() {
        let input = scheduler.scale_model_input(&x, t)?;
        engine.write_x(&input)?;
        engine.step(plan, index, None)?;
        engine.sync().await?;
        let model_output = engine.read(View::Xt).await?.data;
        let noise = plan.noise.optional_step(index, plan.count())?;
        let out = scheduler.step(&model_output, t, &x, noise.as_deref())?;
        x = out.prev_sample;
        if first_bad.is_none() && x.iter().any(|v| !v.is_finite()) {
            first_bad = Some(index);
        }
        engine.write_x(&x)?;
        if !out.pred_original_sample.is_empty() {
            engine.write_x0(&out.pred_original_sample)?;
        } else if let Some(acp) = &x0_from_eps {
            // x̂₀ = (x_t − σ_t·ε̂)/α_t at the evaluation's timestep.
            let sigma = crate::sampler::schedule::vp_sigma(acp, t as f32);
            let alpha = (1.0 - sigma * sigma).sqrt();
            engine.write_x0(&input.iter().zip(&model_output).map(|(x, e)| (x - sigma * e) / alpha).collect::<Vec<f32>>())?;
        }
        if on_step(engine, StepInfo { index, total, timestep: step.timestep, phase: Phase::Reverse }).await? == Flow::Stop {
            return Err(Error::Cancelled);
        }
    }
    if let Some(index) = first_bad {
        return Err(Error::NonFinite { step: index + 1, total: plan.steps.len(), timestep: plan.steps[index].timestep });
    }
    Tensor::new(plan.shape.to_vec(), x)
}

/// The most U-Net evaluations an adaptive RK45 run may take before it is stopped with an error
/// (the paper's solves take ~100–200 at rtol = atol = 1e-5).
pub const RK45_MAX_EVALUATIONS: usize = 4000;

/// The probability-flow ODE by adaptive RK45 (`sampler::rk45`): evaluations as the solver asks
/// for them (`Engine::step_at` at each requested time), each a frame showing the accepted state;
/// `total` counts the evaluations so far plus one until the solve ends.
async fn run_rk45<E: Engine>(
    engine: &mut E,
    plan: &RunPlan,
    host: &HostSchedule,
    mut on_step: impl AsyncFnMut(&mut E, StepInfo) -> Result<Flow>,
) -> Result<Tensor> {
    let mut solver = crate::sampler::rk45::Rk45Ode::new(&host.config, &plan.x_start, RK45_MAX_EVALUATIONS)?;
    solver.set_batch_size(host.batch)?;
    let mut index = 0;
    while let Some((t_model, x_eval)) = solver.request() {
        engine.write_x(&x_eval)?;
        engine.step_at(plan, 0, t_model as f32, None)?;
        engine.sync().await?;
        let eps = engine.read(View::Xt).await?.data;
        solver.receive(&eps)?;
        let x = solver.sample();
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { step: index + 1, total: index + 1, timestep: t_model.round() as i64 });
        }
        engine.write_x(&x)?;
        let done = solver.request().is_none();
        let total = if done { index + 1 } else { index + 2 };
        let info = StepInfo { index, total, timestep: t_model.round() as i64, phase: Phase::Reverse };
        if on_step(engine, info).await? == Flow::Stop {
            return Err(Error::Cancelled);
        }
        index += 1;
    }
    Tensor::new(plan.shape.to_vec(), solver.sample())
}

/// ScoreSdeVePipeline's loop: at each timestep `correct_steps` Langevin corrections
/// (`step_correct`), then the reverse-SDE predictor (`step_pred`), every evaluation at σ(t) and
/// drawing its noise. The run ends on the last predictor's mean (no noise added), as the pipeline's
/// image is; x̂₀ shows each predictor's mean.
async fn run_score_sde_ve<E: Engine>(
    engine: &mut E,
    plan: &RunPlan,
    host: &HostSchedule,
    mut on_step: impl AsyncFnMut(&mut E, StepInfo) -> Result<Flow>,
) -> Result<Tensor> {
    let s = host.score_sde_ve()?;
    let per = s.correct_steps + 1;
    if s.timesteps().len() * per != plan.steps.len() {
        return Err(Error::Scheduler(format!(
            "{}: {} evaluations planned, {} needed",
            host.class,
            plan.steps.len(),
            s.timesteps().len() * per
        )));
    }
    let (total, mut x, mut first_bad) = (plan.frame_count(), plan.x_start.clone(), None);
    for (index, step) in plan.steps.iter().enumerate() {
        engine.write_x(&x)?;
        engine.step(plan, index, None)?;
        engine.sync().await?;
        let model_output = engine.read(View::Xt).await?.data;
        let noise = plan.noise.step(index, plan.count())?;
        let (i, k) = (index / per, index % per);
        if k < s.correct_steps {
            x = s.step_correct(&model_output, &x, &noise)?;
        } else {
            let out = s.step_pred(&model_output, s.timesteps()[i], &x, &noise)?;
            engine.write_x0(&out.prev_sample_mean)?;
            x = if index + 1 == plan.steps.len() { out.prev_sample_mean } else { out.prev_sample };
        }
        if first_bad.is_none() && x.iter().any(|v| !v.is_finite()) {
            first_bad = Some(index);
        }
        engine.write_x(&x)?;
        if on_step(engine, StepInfo { index, total, timestep: step.timestep, phase: Phase::Reverse }).await? == Flow::Stop {
            return Err(Error::Cancelled);
        }
    }
    if let Some(index) = first_bad {
        return Err(Error::NonFinite { step: index + 1, total: plan.steps.len(), timestep: plan.steps[index].timestep });
    }
    Tensor::new(plan.shape.to_vec(), x)
}

/// RePaint after evaluation `index`: where the mask is 1, x = √ᾱ_prev·image + √(1−ᾱ_prev)·z with
/// the step's noise z (Lugmayr et al., Algorithm 1 line 5); then a jump back, if the schedule
/// has one here (`undo_step`). Host-side through `read`/`write_x`, the same on every engine.
async fn keep_known<E: Engine>(engine: &mut E, plan: &RunPlan, known: &KnownRegion, index: usize, undos: &mut usize) -> Result<()> {
    let r = known.after[index];
    let z = plan.noise.step(index, plan.count())?;
    let mut x = engine.read(View::Xt).await?.data;
    for (j, v) in x.iter_mut().enumerate() {
        let m = known.mask[j];
        *v = m * (r.known_x0 * known.image[j] + r.known_noise * z[j]) + (1.0 - m) * *v;
    }
    if let Some((a, b)) = r.undo {
        let z = plan.noise.undo(*undos, plan.count())?;
        *undos += 1;
        x.iter_mut().zip(&z).for_each(|(v, z)| *v = a * *v + b * z);
    }
    engine.write_x(&x)
}

/// `run` to the end without a hook.
pub async fn run_to_end<E: Engine>(engine: &mut E, plan: &RunPlan) -> Result<Tensor> {
    run(engine, plan, async |_, _| Ok(Flow::Continue)).await
}
