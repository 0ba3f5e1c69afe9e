//! The CPU engines: the run layer driving host ops, either the fast engine (`fast::FastOps`: packed
//! weights, SIMD GEMM) or the plain reference (`reference::ReferenceOps`, the oracle).

use super::{ClassifierGuidance, Engine, Guidance, RunPlan, View};
use crate::classifier::{input_gradient, Classifier, ClassifierConfig, ClassifierOps};
use crate::error::{Error, Result};
use crate::fast::FastOps;
use crate::model::UNetConfig;
use crate::reference::{forward_with, HostOps, ReferenceOps};
use crate::sampler::StepCoeffs;
use crate::{Model, Tensor};

pub struct CpuEngine<O: HostOps = FastOps> {
    config: UNetConfig,
    ops: O,
    state: HostState,
    /// The classifier of classifier guidance, on the same kind of ops.
    classifier: Option<HostClassifier<O::Classifier>>,
}

/// A classifier on host ops: its config and its ops over its weights.
pub struct HostClassifier<C> {
    pub config: ClassifierConfig,
    pub ops: C,
}

impl<C: ClassifierOps<T = std::sync::Arc<Tensor>>> HostClassifier<C> {
    /// The term s·σ_t·∇ₓ log p(y | x_t, t) of step `t_model` on the U-Net input's first N items.
    pub fn term(&mut self, guide: &ClassifierGuidance, unet_input: &[f32], shape: [usize; 4], t_model: f32) -> Result<Vec<f32>> {
        let n = shape[0];
        let x = std::sync::Arc::new(Tensor::new(shape.to_vec(), unet_input[..shape.iter().product()].to_vec())?);
        let t = std::sync::Arc::new(Tensor::new(vec![n], vec![t_model; n])?);
        let target = std::sync::Arc::new(Tensor::new(vec![n, 2], guide.target(t_model))?);
        let g = input_gradient(&mut self.ops, &self.config, &x, &t, &target)?;
        Ok(g.grad.data.clone())
    }
}

/// x_t and x̂₀ of a run held on the host (the CPU and Web Worker engines).
#[derive(Default)]
pub struct HostState {
    pub shape: [usize; 4],
    pub x: Vec<f32>,
    pub x0: Vec<f32>,
    /// The predicted noise of the last update (View::Eps).
    pub eps: Vec<f32>,
    /// The last U-Net output, both guidance halves (View::EpsCond, EpsUncond, Guidance).
    pub m: Vec<f32>,
    guidance: f32,
    /// The solver's history (`StepCoeffs`: h).
    pub h: Vec<f32>,
    /// Classifier guidance's term of the last update (View::Classifier; empty without).
    pub classifier: Vec<f32>,
    /// Updates applied in this run, and the first (0-based) that left x_t NaN or Inf.
    steps_done: usize,
    pub first_non_finite: Option<usize>,
}

impl HostState {
    pub fn start(&mut self, plan: &RunPlan) {
        self.shape = plan.shape;
        self.x = plan.x_start.clone();
        self.x0 = vec![0.0; plan.count()];
        self.eps = vec![0.0; plan.count()];
        self.m = vec![0.0; plan.unet_batch() / plan.shape[0] * plan.count()];
        self.guidance = plan.guidance.weight;
        self.h = vec![0.0; plan.count()];
        self.classifier = Vec::new();
        self.steps_done = 0;
        self.first_non_finite = None;
    }

    pub fn read(&self, view: View) -> Result<Tensor> {
        let n = self.x.len();
        let data = match view {
            View::Xt => self.x.clone(),
            View::X0 => self.x0.clone(),
            View::Eps => self.eps.clone(),
            View::EpsCond => self.m[..n].to_vec(),
            View::EpsUncond | View::Guidance if self.m.len() < 2 * n => {
                return Err(Error::Input(format!("view {:?}: this run does not guide", view.as_str())))
            }
            View::EpsUncond => self.m[n..2 * n].to_vec(),
            View::Guidance => self.m[..n].iter().zip(&self.m[n..]).map(|(c, u)| self.guidance * (c - u)).collect(),
            View::Classifier if self.classifier.is_empty() => {
                return Err(Error::Input("view \"classifier\": this run has no classifier guidance".into()))
            }
            View::Classifier => self.classifier.clone(),
        };
        Tensor::new(self.shape.to_vec(), data)
    }

    pub fn write_x(&mut self, x: &[f32]) -> Result<()> {
        if x.len() != self.x.len() {
            return Err(Error::Input(format!("write_x: {} values for a sample of {}", x.len(), self.x.len())));
        }
        self.x.copy_from_slice(x);
        Ok(())
    }

    pub fn write_x0(&mut self, x0: &[f32]) -> Result<()> {
        if x0.len() != self.x0.len() {
            return Err(Error::Input(format!("write_x0: {} values for a sample of {}", x0.len(), self.x0.len())));
        }
        self.x0.copy_from_slice(x0);
        Ok(())
    }

    pub fn write_history(&mut self, h: &[f32]) -> Result<()> {
        if h.len() != self.h.len() {
            return Err(Error::Input(format!("write_history: {} values for a sample of {}", h.len(), self.h.len())));
        }
        self.h.copy_from_slice(h);
        Ok(())
    }

    /// Applies a step's update from the U-Net output `m` (both guidance halves) and classifier
    /// guidance's `term` (subtracted from the guided output).
    pub fn update(&mut self, guidance: &Guidance, coeffs: StepCoeffs, m: &[f32], noise: Option<&[f32]>, term: Option<Vec<f32>>) {
        apply_step(guidance, coeffs, (m, term.as_deref()), noise, [&mut self.x, &mut self.x0, &mut self.eps, &mut self.h]);
        self.classifier = term.unwrap_or_default();
        self.m.clear();
        self.m.extend_from_slice(m);
        if self.first_non_finite.is_none() && self.x.iter().any(|v| !v.is_finite()) {
            self.first_non_finite = Some(self.steps_done);
        }
        self.steps_done += 1;
    }
}

impl CpuEngine<FastOps> {
    /// The fast CPU engine (what `--cpu` and the page's CPU engine run).
    pub fn new(model: &Model) -> Self {
        Self::with_ops(model, FastOps::new(model))
    }
}

/// The reference engine: the run layer over `ReferenceOps`.
pub type ReferenceEngine = CpuEngine<ReferenceOps>;

impl CpuEngine<ReferenceOps> {
    /// The plain reference engine (the oracle; `--engine reference`).
    pub fn reference(model: &Model) -> Self {
        Self::with_ops(model, ReferenceOps::new(model))
    }
}

impl<O: HostOps> CpuEngine<O> {
    pub fn with_ops(model: &Model, ops: O) -> Self {
        CpuEngine { config: model.config.clone(), ops, state: HostState::default(), classifier: None }
    }

    /// Loads the classifier of classifier guidance (replacing any earlier one).
    pub fn set_classifier(&mut self, classifier: &Classifier) {
        let ops = O::classifier_ops(&classifier.tensors);
        self.classifier = Some(HostClassifier { config: classifier.config.clone(), ops });
    }

    pub fn ops(&self) -> &O {
        &self.ops
    }
}

impl<O: HostOps> Engine for CpuEngine<O> {
    async fn start(&mut self, plan: &RunPlan) -> Result<()> {
        check_activations(&self.config, plan, plan.unet_batch())?;
        self.state.start(plan);
        Ok(())
    }

    fn step_at(&mut self, plan: &RunPlan, index: usize, t_model: f32, noise: Option<&[f32]>) -> Result<()> {
        let step = plan.steps[index];
        let [_, c, h, w] = plan.shape;
        let ub = plan.unet_batch();
        let sample = Tensor::new(vec![ub, c, h, w], unet_input(plan, index, &self.state.x))?;
        let ts = vec![t_model; ub];
        let m = forward_with(&mut self.ops, &self.config, &sample, &ts, plan.guidance.unet_labels.as_deref())?;
        let term = match &plan.guidance.classifier {
            Some(guide) => Some(held(&mut self.classifier)?.term(guide, &sample.data, plan.shape, t_model)?),
            None => None,
        };
        self.state.update(&plan.guidance, step.coeffs, &m.data, noise, term);
        Ok(())
    }

    async fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    async fn read(&mut self, view: View) -> Result<Tensor> {
        self.state.read(view)
    }

    fn write_x(&mut self, x: &[f32]) -> Result<()> {
        self.state.write_x(x)
    }

    fn write_x0(&mut self, x0: &[f32]) -> Result<()> {
        self.state.write_x0(x0)
    }

    async fn read_history(&mut self) -> Result<Vec<f32>> {
        Ok(self.state.h.clone())
    }

    fn write_history(&mut self, h: &[f32]) -> Result<()> {
        self.state.write_history(h)
    }

    async fn first_non_finite_step(&mut self) -> Result<Option<usize>> {
        Ok(self.state.first_non_finite)
    }
}

/// Refuses a run whose U-Net activations (`batch` items at once, where the engine computes)
/// would not fit the host (`model::memory`), before anything is allocated.
pub fn check_activations(config: &UNetConfig, plan: &RunPlan, batch: usize) -> Result<()> {
    let [_, _, h, w] = plan.shape;
    let bytes = crate::model::memory::activation_bytes(config, batch, h, w);
    crate::model::memory::check_host_bytes(
        bytes,
        &format!("the U-Net activations of {batch} {h}×{w} item(s) at once (use a smaller batch)"),
    )
}

/// The engine's classifier, or the error of a run that asks for classifier guidance without one.
pub fn held<C>(classifier: &mut Option<C>) -> Result<&mut C> {
    classifier
        .as_mut()
        .ok_or_else(|| Error::Input("the run asks for classifier guidance, but no classifier was loaded on this engine".into()))
}

/// The U-Net input of step `index`: c_in·x_t, twice when guiding (conditional half, then the
/// null-class half).
pub fn unet_input(plan: &RunPlan, index: usize, x: &[f32]) -> Vec<f32> {
    let c_in = plan.steps[index].c_in;
    let mut input: Vec<f32> = if c_in == 1.0 { x.to_vec() } else { x.iter().map(|v| v * c_in).collect() };
    if plan.unet_batch() != plan.shape[0] {
        input.extend_from_within(..);
    }
    input
}

/// A step's scheduler update on host arrays, from the U-Net output `m` (both guidance halves):
/// x ← x_prev, x0 ← x̂₀, eps ← ε̂ (the CPU twin of shaders/scheduler_step.wgsl).
pub fn apply_step(
    guidance: &Guidance,
    coeffs: StepCoeffs,
    (m, term): (&[f32], Option<&[f32]>),
    noise: Option<&[f32]>,
    [x, x0, eps, h]: [&mut [f32]; 4],
) {
    let count = x.len();
    for j in 0..count {
        let mj = guidance.combine(m, j, count) - term.map_or(0.0, |t| t[j]);
        let z = noise.map_or(0.0, |z| z[j]);
        eps[j] = coeffs.eps_x * x[j] + coeffs.eps_m * mj;
        (x[j], x0[j], h[j]) = coeffs.apply(x[j], mj, z, h[j]);
    }
}
