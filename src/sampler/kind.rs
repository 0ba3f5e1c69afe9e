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
    /// A diffusers scheduler class stepped on the host (`sampler::diffusers`), the engine
    /// evaluating the U-Net: the class name, one of `HOST_SAMPLERS`.
    Host(&'static str),
}

/// The fused samplers: one update per evaluation on the engine (a WGSL kernel on the GPU).
const FUSED: [SamplerKind; 5] = [SamplerKind::Ddim, SamplerKind::Ddpm, SamplerKind::DpmPlusPlus2M, SamplerKind::Euler, SamplerKind::Heun];

/// (name, diffusers class) of the samplers stepped on the host. Only the classes
/// `sampler::diffusers::from_config` builds are offered (`available`).
pub const HOST_SAMPLERS: &[(&str, &str)] = &[
    ("pndm", "PNDMScheduler"),
    ("lms", "LMSDiscreteScheduler"),
    ("euler-ancestral", "EulerAncestralDiscreteScheduler"),
    ("unipc", "UniPCMultistepScheduler"),
    ("deis", "DEISMultistepScheduler"),
    ("dpm-singlestep", "DPMSolverSinglestepScheduler"),
    ("kdpm2", "KDPM2DiscreteScheduler"),
    ("kdpm2-ancestral", "KDPM2AncestralDiscreteScheduler"),
    ("edm-euler", "EDMEulerScheduler"),
    ("edm-dpm-multistep", "EDMDPMSolverMultistepScheduler"),
    ("score-sde-ve", "ScoreSdeVeScheduler"),
    ("consistency", "CMStochasticIterativeScheduler"),
    // Score-SDE samplers on a VP model (Song et al. 2021; `sampler::sde`, no diffusers class).
    ("vp-sde", "ReverseSdeEulerMaruyama"),
    ("vp-ode", "ProbabilityFlowOdeEuler"),
    ("vp-pc", "PredictorCorrectorVp"),
    ("vp-ode-rk45", "ProbabilityFlowOdeRk45"),
    // The fused samplers' classes, stepped on the host where their config asks for what the
    // fused update does not do (e.g. DPM-Solver order 3, dynamic thresholding).
    ("ddim-host", "DDIMScheduler"),
    ("ddpm-host", "DDPMScheduler"),
    ("dpm-multistep-host", "DPMSolverMultistepScheduler"),
    ("euler-host", "EulerDiscreteScheduler"),
    ("heun-host", "HeunDiscreteScheduler"),
];

impl SamplerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerKind::Ddim => "ddim",
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::DpmPlusPlus2M => "dpm++2m",
            SamplerKind::Euler => "euler",
            SamplerKind::Heun => "heun",
            SamplerKind::Host(class) => HOST_SAMPLERS.iter().find(|(_, c)| *c == class).map_or(class, |(n, _)| n),
        }
    }

    /// The diffusers class this sampler is.
    pub fn class_name(self) -> &'static str {
        match self {
            SamplerKind::Ddim => "DDIMScheduler",
            SamplerKind::Ddpm => "DDPMScheduler",
            SamplerKind::DpmPlusPlus2M => "DPMSolverMultistepScheduler",
            SamplerKind::Euler => "EulerDiscreteScheduler",
            SamplerKind::Heun => "HeunDiscreteScheduler",
            SamplerKind::Host(class) => class,
        }
    }

    pub fn is_fused(self) -> bool {
        !matches!(self, SamplerKind::Host(_))
    }

    /// Every sampler this build runs: the fused ones, then the host-stepped classes
    /// `sampler::diffusers` implements (without the fused classes' host twins).
    pub fn available() -> Vec<SamplerKind> {
        let host = HOST_SAMPLERS
            .iter()
            .filter(|(name, class)| !name.ends_with("-host") && host_built(class))
            .map(|(_, class)| SamplerKind::Host(class));
        FUSED.into_iter().chain(host).collect()
    }

    /// The sampler of a diffusers scheduler class (`_class_name`); a class this engine does not
    /// implement is an error naming it, never a silent substitute (a VE model stepped as DDIM
    /// would give garbage).
    pub fn of_class(class_name: &str) -> Result<Self> {
        if let Some(kind) = FUSED.into_iter().find(|k| k.class_name() == class_name) {
            return Ok(kind);
        }
        match HOST_SAMPLERS.iter().find(|(_, c)| *c == class_name) {
            Some((_, class)) if host_built(class) => Ok(SamplerKind::Host(class)),
            _ => {
                let names: Vec<&str> = Self::available().into_iter().map(|k| k.class_name()).collect();
                Err(Error::Config(format!(
                    "unknown scheduler class: the scheduler config's _class_name is {class_name:?}, which this engine does not \
                     implement (it implements {}); to run this model with one of those, choose it explicitly (ddim --sampler, \
                     the JS `sampler` option)",
                    names.join(", ")
                )))
            }
        }
    }
}

/// One of the fused samplers' classes (DDIMScheduler, DDPMScheduler, ...).
pub fn is_fused_class(class: &str) -> bool {
    FUSED.iter().any(|k| k.class_name() == class)
}

/// A class the host builds: diffusers' (`sampler::diffusers`) or a score-SDE sampler (`sampler::sde`).
pub fn host_built(class: &str) -> bool {
    super::diffusers::CLASSES.contains(&class) || super::sde::CLASSES.contains(&class)
}

impl std::str::FromStr for SamplerKind {
    type Err = Error;

    /// A sampler's name ("ddim", "dpm++2m", "pndm", ...) or its diffusers class
    /// ("DDIMScheduler", ...): the CLI's `--sampler` and the JS `sampler`.
    fn from_str(s: &str) -> Result<Self> {
        if s.ends_with("Scheduler") {
            return SamplerKind::of_class(s);
        }
        let host = HOST_SAMPLERS.iter().find(|(n, _)| *n == s).map(|(_, class)| SamplerKind::of_class(class));
        if let Some(kind) = host {
            return kind;
        }
        FUSED.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::available().into_iter().map(|k| k.as_str()).collect();
            Error::Input(format!("unknown sampler {s:?}: expected one of {} (or their diffusers class names)", names.join(", ")))
        })
    }
}
