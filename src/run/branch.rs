//! Branching runs: the engine's state after an evaluation (x_t, x̂₀ and the solver's history h)
//! kept as a node, and a run that starts from a node with other options: another class,
//! guidance, η, seed for the noise still to come, or another sampler.
//!
//! A branch that keeps the sampler and its steps continues at the node's next evaluation with
//! the whole state, so one that changes nothing reproduces the unforked run exactly. A branch
//! that changes the sampler (or the step count) continues at the node's noise level with the new
//! sampler's remaining steps, started afresh there as diffusers' img2img starts a sampler mid-way
//! (`Schedule::img2img_from`), x_t carried into that sampler's sample space; the new sampler must
//! have a step at the node's level.

use std::sync::Arc;

use super::{Engine, RunPlan, View};
use crate::error::{Error, Result};
use crate::sampler::{SamplerKind, Schedule, SchedulerConfig};

/// What a run continues from: x_t, x̂₀ (the x̂₀ view and the numbers row) and the history h.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineState {
    pub x: Vec<f32>,
    pub x0: Vec<f32>,
    pub h: Vec<f32>,
}

impl EngineState {
    /// The engine's state now (after a step's `sync`).
    pub async fn save<E: Engine>(engine: &mut E) -> Result<Self> {
        let x = engine.read(View::Xt).await?.data;
        let x0 = engine.read(View::X0).await?.data;
        let h = engine.read_history().await?;
        Ok(EngineState { x, x0, h })
    }

    pub fn load<E: Engine>(&self, engine: &mut E) -> Result<()> {
        engine.write_x(&self.x)?;
        engine.write_x0(&self.x0)?;
        engine.write_history(&self.h)
    }

    pub fn bytes(&self) -> usize {
        4 * (self.x.len() + self.x0.len() + self.h.len())
    }
}

/// Where a branch starts: its plan's evaluation `first` (those before it are its parent's) from
/// `state`.
#[derive(Clone, Debug)]
pub struct Resume {
    pub first: usize,
    pub state: Arc<EngineState>,
}

/// A node of the tree: the state after evaluation `next − 1` of a run, and what that run was.
#[derive(Clone, Debug)]
pub struct Node {
    pub state: Arc<EngineState>,
    /// The run's evaluation that comes next from here.
    pub next: usize,
    pub kind: SamplerKind,
    pub steps: usize,
    /// The run's scheduler config (as `Schedule::new` was given it for `kind`).
    pub config: SchedulerConfig,
    pub shape: [usize; 4],
    /// The timestep of every evaluation of the run (shared by the run's nodes).
    pub timesteps: Arc<[i64]>,
}

/// What a plan needs to be recorded as nodes: the sampler it runs, from `RunOptions::plan`.
#[derive(Clone, Debug)]
pub struct PlanOrigin {
    pub kind: SamplerKind,
    pub steps: usize,
    pub config: SchedulerConfig,
    /// The timestep of every evaluation of the whole run (a branch's plan may run only its tail):
    /// computed once per plan, not per node.
    pub timesteps: Arc<[i64]>,
}

impl Node {
    /// The node after evaluation `index` of `plan` (a sampling plan: `plan.origin` is set),
    /// holding `state`. A branch's plan may run only the tail of its sampler's steps: the node
    /// counts in the whole run's evaluations.
    pub fn new(plan: &RunPlan, index: usize, state: EngineState) -> Result<Self> {
        let origin = plan.origin.as_ref().ok_or_else(|| Error::Input("only sampling runs keep branch nodes".into()))?;
        let timesteps = origin.timesteps.clone();
        let skipped = timesteps.len().saturating_sub(plan.steps.len());
        Ok(Node {
            state: Arc::new(state),
            next: skipped + index + 1,
            kind: origin.kind,
            steps: origin.steps,
            config: origin.config.clone(),
            shape: plan.shape,
            timesteps,
        })
    }

    /// Steps of the node's run done: a Heun step is two evaluations (its predictor, its
    /// corrector; the last step has no corrector). None between a Heun step's two evaluations.
    fn whole_steps_done(&self) -> Option<usize> {
        match self.kind {
            SamplerKind::Heun if self.next % 2 == 1 && self.next < self.timesteps.len() => None,
            SamplerKind::Heun => Some(self.next.div_ceil(2)),
            _ => Some(self.next),
        }
    }
}

/// Checks that `plan` (a sampling plan, built with `eta`) can branch from `node`, and makes it start
/// there.
pub fn fork(node: &Node, mut plan: RunPlan, eta: f32) -> Result<RunPlan> {
    let Some(origin) = plan.origin.clone().filter(|_| plan.host.is_none()) else {
        return Err(Error::Input(
            "a branch samples with the fused samplers (ddim, ddpm, dpm++2m, euler, heun): not an edit, inversion or host-stepped scheduler"
                .into(),
        ));
    };
    if plan.shape != node.shape {
        return Err(Error::Input(format!("the node holds a batch of {:?}; this run is {:?} (keep the batch)", node.shape, plan.shape)));
    }
    if node.next >= node.timesteps.len() {
        return Err(Error::Input("the node is the run's last evaluation: nothing is left to branch".into()));
    }
    let timesteps: Vec<i64> = plan.steps.iter().map(|s| s.timestep).collect();
    if origin.kind == node.kind && origin.steps == node.steps && origin.config == node.config && timesteps[..] == node.timesteps[..] {
        plan.resume = Some(Resume { first: node.next, state: node.state.clone() });
        return Ok(plan);
    }
    // Another sampler (or step count): its remaining steps from the node's level.
    let done = node.whole_steps_done().ok_or_else(|| {
        Error::Input(format!(
            "the node is between Heun's two evaluations of a step (evaluation {}): branch to another sampler from a node after a whole step",
            node.next
        ))
    })?;
    let here = Schedule::new(node.config.clone()).img2img_from(node.kind, node.steps, 0.0, done)?;
    let schedule = Schedule::new(origin.config.clone());
    let start = (0..origin.steps)
        .map(|j| schedule.img2img_from(origin.kind, origin.steps, eta, j))
        .find(|e| e.as_ref().is_ok_and(|e| e.timestep == here.timestep))
        .transpose()?
        .ok_or_else(|| {
            Error::Input(format!(
                "sampler {} with {} steps has no step at the node's timestep {}: keep the steps, or branch from another node",
                origin.kind.as_str(),
                origin.steps,
                here.timestep
            ))
        })?;
    // The same level in both sample spaces: x = keep·x0 + noise·ε, noise/keep = σ.
    let (sigma_here, sigma_there) = (here.noise / here.keep, start.noise / start.keep);
    if (sigma_here - sigma_there).abs() > 1e-3 * sigma_here.max(1e-3) {
        return Err(Error::Input(format!(
            "timestep {}: σ = {sigma_here} for {}, {sigma_there} for {}: the samplers' levels differ there",
            here.timestep,
            node.kind.as_str(),
            origin.kind.as_str()
        )));
    }
    let scale = start.keep / here.keep;
    let state =
        EngineState { x: node.state.x.iter().map(|v| v * scale).collect(), x0: node.state.x0.clone(), h: vec![0.0; node.state.h.len()] };
    plan.steps = start.steps;
    plan.x_start = state.x.clone();
    plan.resume = Some(Resume { first: 0, state: Arc::new(state) });
    Ok(plan)
}
