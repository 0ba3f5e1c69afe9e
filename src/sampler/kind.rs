//! Which sampler runs: its name on the CLI and in JS, and the diffusers scheduler class of each.

use crate::error::{Error, Result};

/// Which step rule to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    Ddim,
    Ddpm,
    /// DPMSolverMultistepScheduler, algorithm_type dpmsolver++ (order 2 by default: 2M).
    DpmPlusPlus2M,
    /// EulerDiscreteScheduler.
    Euler,
    /// HeunDiscreteScheduler: two U-Net evaluations per step (one for the last).
    Heun,
}

impl SamplerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerKind::Ddim => "ddim",
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::DpmPlusPlus2M => "dpm++2m",
            SamplerKind::Euler => "euler",
            SamplerKind::Heun => "heun",
        }
    }

    /// The sampler of a diffusers scheduler class (`_class_name`); a class this engine does not
    /// implement is an error naming it, never a silent substitute (a VE model stepped as DDIM
    /// would give garbage).
    pub fn of_class(class_name: &str) -> Result<Self> {
        Ok(match class_name {
            "DDIMScheduler" => SamplerKind::Ddim,
            "DDPMScheduler" => SamplerKind::Ddpm,
            "DPMSolverMultistepScheduler" => SamplerKind::DpmPlusPlus2M,
            "EulerDiscreteScheduler" => SamplerKind::Euler,
            "HeunDiscreteScheduler" => SamplerKind::Heun,
            other => {
                return Err(Error::Config(format!(
                    "unknown scheduler class: the scheduler config's _class_name is {other:?}, which this engine does not implement \
                     (it implements DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler and \
                     HeunDiscreteScheduler); to run this model with one of those, choose it explicitly (ddim --sampler, the JS \
                     `sampler` option)"
                )))
            }
        })
    }
}

impl std::str::FromStr for SamplerKind {
    type Err = Error;

    /// "ddim", "ddpm", "dpm++2m", "euler" or "heun", or the diffusers class of one of them
    /// ("DDIMScheduler", ...): the CLI's `--sampler` and the JS `sampler`.
    fn from_str(s: &str) -> Result<Self> {
        if s.ends_with("Scheduler") {
            return SamplerKind::of_class(s);
        }
        [SamplerKind::Ddim, SamplerKind::Ddpm, SamplerKind::DpmPlusPlus2M, SamplerKind::Euler, SamplerKind::Heun]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::Input(format!("unknown sampler {s:?}: expected ddim, ddpm, dpm++2m, euler or heun (or their diffusers class names)"))
            })
    }
}
