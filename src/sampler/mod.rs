//! Samplers: the noise schedules and step rules (`schedule`), diffusers' scheduler API on host
//! arrays (`scheduler`), and seeded noise (`rng`). The sampling loop itself is `crate::run`.

pub mod diffusers;
mod editing;
mod kind;
pub mod rk45;
pub mod rng;
pub mod schedule;
pub mod scheduler;
pub mod sde;
pub(crate) mod solvers;

pub use editing::{slerp, slerp_frames, Img2Img, RePaintStep};
pub use kind::SamplerKind;
pub use schedule::{BetaSchedule, PredictionType, Schedule, SchedulerConfig, Step, StepCoeffs, TimestepSpacing, VarianceType};
pub use scheduler::{Scheduler, SchedulerOutput};
