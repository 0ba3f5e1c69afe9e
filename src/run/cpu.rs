//! The CPU engines: the run layer driving host ops, either the fast engine (`fast::FastOps`: packed
//! weights, SIMD GEMM) or the plain reference (`cpu::CpuOps`, the oracle).

use super::{Engine, RunPlan, View};
use crate::cpu::{forward_with, CpuOps, HostOps};
use crate::error::{Error, Result};
use crate::fast::FastOps;
use crate::model::UNetConfig;
use crate::{Model, Tensor};

pub struct CpuEngine<O: HostOps = FastOps> {
    config: UNetConfig,
    ops: O,
    shape: [usize; 4],
    x: Vec<f32>,
    x0: Vec<f32>,
}

impl CpuEngine<FastOps> {
    /// The fast CPU engine (what `--cpu` and the page's CPU engine run).
    pub fn new(model: &Model) -> Self {
        Self::with_ops(model, FastOps::new(model))
    }
}

impl CpuEngine<CpuOps> {
    /// The plain reference engine (the oracle; `--reference`).
    pub fn reference(model: &Model) -> Self {
        Self::with_ops(model, CpuOps::new(model))
    }
}

impl<O: HostOps> CpuEngine<O> {
    pub fn with_ops(model: &Model, ops: O) -> Self {
        CpuEngine { config: model.config.clone(), ops, shape: [0; 4], x: Vec::new(), x0: Vec::new() }
    }

    pub fn ops(&self) -> &O {
        &self.ops
    }
}

impl<O: HostOps> Engine for CpuEngine<O> {
    async fn start(&mut self, plan: &RunPlan) -> Result<()> {
        self.shape = plan.shape;
        self.x = plan.x_start.clone();
        self.x0 = vec![0.0; plan.count()];
        Ok(())
    }

    fn step(&mut self, plan: &RunPlan, index: usize, noise: Option<&[f32]>) -> Result<()> {
        let step = plan.steps[index];
        let [n, c, h, w] = plan.shape;
        let ub = plan.unet_batch();
        let mut input = self.x.clone();
        if ub != n {
            input.extend_from_slice(&self.x);
        }
        let sample = Tensor::new(vec![ub, c, h, w], input)?;
        let ts = vec![step.timestep as f32; ub];
        let m = forward_with(&mut self.ops, &self.config, &sample, &ts, plan.guidance.unet_labels.as_deref())?;
        let count = plan.count();
        for j in 0..count {
            let mj = plan.guidance.combine(&m.data, j, count);
            let z = noise.map_or(0.0, |z| z[j]);
            (self.x[j], self.x0[j]) = step.coeffs.apply(self.x[j], mj, z);
        }
        Ok(())
    }

    async fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    async fn read(&mut self, view: View) -> Result<Tensor> {
        let data = match view {
            View::Xt => &self.x,
            View::X0 => &self.x0,
        };
        Tensor::new(self.shape.to_vec(), data.clone())
    }

    fn write_x(&mut self, x: &[f32]) -> Result<()> {
        if x.len() != self.x.len() {
            return Err(Error::Input(format!("write_x: {} values for a sample of {}", x.len(), self.x.len())));
        }
        self.x.copy_from_slice(x);
        Ok(())
    }
}
