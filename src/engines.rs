//! Which engine runs a U-Net, as its users name it (the CLI's `--engine`, the web API's `engine`),
//! and `AnyEngine`, the one an `EngineChoice` made, chosen at run time. Above `run` and `gpu`
//! (it names the engines of both), below the CLI and `web`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::gpu::engine::GpuEngine;
use crate::run::{CpuEngine, Engine, ReferenceEngine, RunPlan, View};
use crate::Tensor;

/// An engine by name: `gpu` (alias `webgpu`), `cpu` (the fast CPU engine; in the browser one Web
/// Worker per core up to 4), `cpu:N` (N threads natively, N workers in the browser; 1 to 16) or
/// `reference` (the plain reference, the test oracle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Gpu,
    Cpu { threads: Option<usize> },
    Reference,
}

impl FromStr for EngineChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gpu" | "webgpu" => Ok(EngineChoice::Gpu),
            "cpu" => Ok(EngineChoice::Cpu { threads: None }),
            "reference" => Ok(EngineChoice::Reference),
            _ => match s.strip_prefix("cpu:") {
                Some(n) => match n.parse::<usize>() {
                    Ok(n) if (1..=16).contains(&n) => Ok(EngineChoice::Cpu { threads: Some(n) }),
                    _ => Err(Error::Input(format!("engine {s:?}: \"cpu:N\" takes 1 to 16 threads or workers"))),
                },
                None => Err(Error::Input(format!("unknown engine {s:?}: expected gpu (or webgpu), cpu, cpu:N or reference"))),
            },
        }
    }
}

impl fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineChoice::Gpu => write!(f, "gpu"),
            EngineChoice::Cpu { threads: None } => write!(f, "cpu"),
            EngineChoice::Cpu { threads: Some(n) } => write!(f, "cpu:{n}"),
            EngineChoice::Reference => write!(f, "reference"),
        }
    }
}

/// One of the engines, chosen at run time.
pub enum AnyEngine {
    Gpu(Box<GpuEngine>),
    Cpu(CpuEngine),
    Reference(ReferenceEngine),
}

impl AnyEngine {
    /// Loads the classifier of classifier guidance onto the engine (replacing any earlier one).
    pub fn set_classifier(&mut self, classifier: &crate::classifier::Classifier) -> Result<()> {
        match self {
            AnyEngine::Gpu(e) => e.set_classifier(classifier)?,
            AnyEngine::Cpu(e) => e.set_classifier(classifier),
            AnyEngine::Reference(e) => e.set_classifier(classifier),
        }
        Ok(())
    }
}

/// Delegates an `Engine` call to the engine inside.
macro_rules! each_engine {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            AnyEngine::Gpu($e) => $call,
            AnyEngine::Cpu($e) => $call,
            AnyEngine::Reference($e) => $call,
        }
    };
}

impl Engine for AnyEngine {
    async fn start(&mut self, plan: &RunPlan) -> Result<()> {
        each_engine!(self, e => e.start(plan).await)
    }
    fn step_at(&mut self, plan: &RunPlan, index: usize, t_model: f32, noise: Option<&[f32]>) -> Result<()> {
        each_engine!(self, e => e.step_at(plan, index, t_model, noise))
    }
    async fn sync(&mut self) -> Result<()> {
        each_engine!(self, e => e.sync().await)
    }
    async fn read(&mut self, view: View) -> Result<Tensor> {
        each_engine!(self, e => e.read(view).await)
    }
    fn write_x(&mut self, x: &[f32]) -> Result<()> {
        each_engine!(self, e => e.write_x(x))
    }
    fn write_x0(&mut self, x0: &[f32]) -> Result<()> {
        each_engine!(self, e => e.write_x0(x0))
    }
    async fn read_history(&mut self) -> Result<Vec<f32>> {
        each_engine!(self, e => e.read_history().await)
    }
    fn write_history(&mut self, h: &[f32]) -> Result<()> {
        each_engine!(self, e => e.write_history(h))
    }
    async fn first_non_finite_step(&mut self) -> Result<Option<usize>> {
        each_engine!(self, e => e.first_non_finite_step().await)
    }
}

#[cfg(test)]
mod tests {
    use super::EngineChoice;

    #[test]
    fn engine_names_round_trip_and_bad_ones_are_named() {
        for s in ["gpu", "cpu", "cpu:1", "cpu:16", "reference"] {
            assert_eq!(s.parse::<EngineChoice>().unwrap().to_string(), s);
        }
        assert_eq!("webgpu".parse::<EngineChoice>().unwrap(), EngineChoice::Gpu);
        for (s, says) in [("cpu:0", "1 to 16"), ("cpu:17", "1 to 16"), ("cpu:x", "1 to 16"), ("tpu", "unknown engine \"tpu\"")] {
            let e = s.parse::<EngineChoice>().unwrap_err().to_string();
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
