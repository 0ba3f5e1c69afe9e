//! Every failure the engine can report. Errors are values: nothing in the engine panics on input.

/// The engine's error. Messages name the file, tensor or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config.json: {0}")]
    Config(String),
    #[error("unsupported config: `{field}` = {value} ({why})")]
    Unsupported { field: String, value: String, why: String },
    #[error("safetensors `{file}`: {msg}")]
    Safetensors { file: String, msg: String },
    #[error("weights: missing tensor `{0}`")]
    MissingTensor(String),
    #[error("weights: tensor `{name}` has shape {got:?}, the config expects {expected:?}")]
    Shape { name: String, got: Vec<usize>, expected: Vec<usize> },
    #[error("weights: tensor `{name}` has dtype {dtype}; only F32, F16 and BF16 are supported")]
    Dtype { name: String, dtype: String },
    #[error("weights: tensor `{name}` holds a NaN or Inf value (element {index}): the checkpoint is broken")]
    NonFiniteWeight { name: String, index: usize },
    #[error("scheduler: {0}")]
    Scheduler(String),
    #[error("input: {0}")]
    Input(String),
    #[error("model too large for this adapter: {0}")]
    Limits(String),
    /// Host memory (a wasm32 heap, or a capped limit): checked before allocating.
    #[error("too large for this host's memory: {0}")]
    HostMemory(String),
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("cancelled")]
    Cancelled,
    /// Reported at the end of a run whose x_t went NaN or Inf (1-based step).
    #[error("x_t became NaN or Inf at step {step} of {total} (timestep {timestep}): the model's output is not finite there; check the weights and the scheduler config")]
    NonFinite { step: usize, total: usize, timestep: i64 },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn unsupported(field: &str, value: impl std::fmt::Display, why: &str) -> Self {
        Error::Unsupported { field: field.into(), value: value.to_string(), why: why.into() }
    }
}
