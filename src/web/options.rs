//! The JS options object of `run` → the run layer's `RunOptions`. Only the reading happens here:
//! defaults and checks are `RunOptions`'s, the same as the CLI's.

use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};

use crate::classifier::ClassifierConfig;
use crate::error::{Error, Result};
use crate::run::options::{label, whole, Edit, DEFAULT_JUMP_LENGTH, DEFAULT_JUMP_N_SAMPLE, DEFAULT_STEPS};
use crate::run::{ClassLabels, GivenNoise, RunOptions, View};
use crate::sampler::SamplerKind;
use crate::{Model, Tensor};

/// What a run does with the model (`mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Sample,
    Edit,
    Inpaint,
    /// Inversion to x_T, then DDIM back down (the reconstruction).
    Invert,
    Forward,
    Interpolate,
}

fn get(o: &JsValue, k: &str) -> Option<JsValue> {
    Reflect::get(o, &k.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn number(o: &JsValue, k: &str) -> Result<Option<f64>> {
    match get(o, k) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| Error::Input(format!("{k}: expected a number, got {v:?}"))),
    }
}

fn string(o: &JsValue, k: &str) -> Result<Option<String>> {
    match get(o, k) {
        None => Ok(None),
        Some(v) => v.as_string().map(Some).ok_or_else(|| Error::Input(format!("{k}: expected a string, got {v:?}"))),
    }
}

/// A Float32Array (or array of numbers) option, if given.
fn floats(o: &JsValue, k: &str) -> Result<Option<Vec<f32>>> {
    match get(o, k) {
        None => Ok(None),
        Some(v) if v.is_instance_of::<js_sys::Float32Array>() => Ok(Some(js_sys::Float32Array::from(v).to_vec())),
        Some(v) if js_sys::Array::is_array(&v) => js_sys::Array::from(&v)
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .map(Some)
            .ok_or_else(|| Error::Input(format!("{k}: expected a Float32Array or an array of numbers"))),
        Some(v) => Err(Error::Input(format!("{k}: expected a Float32Array, got {v:?}"))),
    }
}

/// A flat array as [N, C, H, W] images of the model's size, N = its length / (C·H·W); `channels`
/// overrides C (a mask has one channel).
fn images(model: &Model, k: &str, data: Vec<f32>, channels: Option<usize>) -> Result<Tensor> {
    let (h, w) = model.config.sample_size.unwrap_or((0, 0));
    let c = channels.unwrap_or(model.config.in_channels);
    let item = c * h * w;
    if item == 0 || data.is_empty() || !data.len().is_multiple_of(item) {
        return Err(Error::Input(format!("{k}: {} values is not a whole number of {c}×{h}×{w} images", data.len())));
    }
    Tensor::new(vec![data.len() / item, c, h, w], data)
}

/// x_T of one image for interpolation: a seed (the first item of its x_T) or the values themselves.
fn latent(model: &Model, o: &JsValue, k: &str) -> Result<Tensor> {
    if let Some(seed) = get(o, k).and_then(|v| v.as_f64()) {
        let (h, w) = model.config.sample_size.unwrap_or((0, 0));
        let c = model.config.in_channels;
        return Tensor::new(vec![1, c, h, w], crate::sampler::rng::normal(whole(k, seed, 0.0)?, 0, c * h * w));
    }
    let data = floats(o, k)?.ok_or_else(|| Error::Input(format!("interpolate needs `{k}`: a seed or an x_T (Float32Array)")))?;
    let t = images(model, k, data, None)?;
    let item = t.len() / t.shape[0];
    Tensor::new([&[1], &t.shape[1..]].concat(), t.data[..item].to_vec())
}

/// {mode: "sample"|"edit"|"inpaint"|"invert"|"forward"|"interpolate", steps, eta, seed,
/// sampler: a name of `modelInfo.samplers` ("ddim", "dpm++2m", "pndm", …) or a diffusers class name,
/// tolerance (rtol = atol of "vp-ode-rk45"), batch, classLabel (one number or one per item),
/// guidance, view (one of `View::ALL`'s names) or views (several, drawn side by side: an array or
/// "xt,eps,x0"), arrays (views whose values each frame carries), branch (keep a node at every
/// evaluation, within branchBudgetMB), resume (a node's id: the run branches from it), image (Float32Array in −1 … 1 of N or 1 images of the model's size),
/// strength (edit), mask (inpaint: Float32Array of N or 1 one-channel masks, 1 keeps, 0 fills),
/// jumpLength, jumpNSample (inpaint), tEnd (forward: frames = steps), from, to (interpolate: a
/// seed or an x_T; frames = batch)}; every key optional but the mode's own.
pub fn read(o: &JsValue, model: &Model, classifier: Option<&ClassifierConfig>) -> Result<WebRun> {
    let mode = match string(o, "mode")?.as_deref() {
        None | Some("sample") => Mode::Sample,
        Some("edit") => Mode::Edit,
        Some("inpaint") => Mode::Inpaint,
        Some("invert") => Mode::Invert,
        Some("forward") => Mode::Forward,
        Some("interpolate") => Mode::Interpolate,
        Some(other) => {
            return Err(Error::Input(format!(
                "mode {other:?}: expected \"sample\", \"edit\", \"inpaint\", \"invert\", \"forward\" or \"interpolate\""
            )))
        }
    };
    let mut opts = RunOptions::new();
    if let Some(v) = number(o, "steps")? {
        opts = opts.steps(whole("steps", v, 0.0)? as usize);
    }
    if let Some(v) = number(o, "batch")? {
        opts = opts.batch(whole("batch", v, 1.0)? as usize);
    }
    if let Some(v) = number(o, "seed")? {
        opts = opts.seed(whole("seed", v, 0.0)?);
    }
    if let Some(v) = number(o, "eta")? {
        opts = opts.eta(v as f32);
    }
    if let Some(v) = number(o, "tolerance")? {
        opts = opts.tolerance(v);
    }
    if let Some(v) = number(o, "guidance")? {
        opts = opts.guidance(v as f32);
    }
    if let Some(v) = get(o, "classLabel") {
        let labels = match v.as_f64() {
            Some(n) => ClassLabels::All(label(n)?),
            None if js_sys::Array::is_array(&v) => {
                ClassLabels::Each(js_sys::Array::from(&v).iter().map(|x| label(x.as_f64().unwrap_or(f64::NAN))).collect::<Result<_>>()?)
            }
            None => return Err(Error::Input(format!("classLabel: expected a number or an array of numbers, got {v:?}"))),
        };
        opts = opts.labels(labels);
    }
    if let Some(s) = string(o, "sampler")? {
        opts = opts.sampler(s.parse::<SamplerKind>()?);
    }
    let views = match (view_list(o, "views")?, string(o, "view")?) {
        (Some(_), Some(_)) => return Err(Error::Input("both `view` and `views` were given: pick one".into())),
        (Some(v), None) if v.is_empty() => return Err(Error::Input("views: name at least one view".into())),
        (Some(v), None) => v,
        (None, Some(v)) => vec![v.parse()?],
        (None, None) => vec![View::Xt],
    };
    let arrays = view_list(o, "arrays")?.unwrap_or_default();
    opts = classifier_options(o, opts, classifier)?;
    match edit_of(mode, o, model)? {
        (Some(edit), _) => opts = opts.edit(edit),
        (None, Some(noise)) => opts = opts.noise(noise),
        (None, None) => {}
    }
    let branch = match get(o, "branch").map(|v| v.as_bool()) {
        None | Some(Some(false)) => None,
        Some(Some(true)) => {
            let mb = number(o, "branchBudgetMB")?.unwrap_or(DEFAULT_BRANCH_BUDGET_MB);
            if !(mb.is_finite() && mb > 0.0) {
                return Err(Error::Input(format!("branchBudgetMB = {mb}: must be a number of megabytes > 0")));
            }
            Some((mb * 1e6) as usize)
        }
        Some(None) => return Err(Error::Input("branch: expected true or false".into())),
    };
    let resume = number(o, "resume")?.map(|v| whole("resume", v, 0.0)).transpose()?;
    Ok(WebRun { opts, views, arrays, mode, branch, resume })
}

/// The memory the nodes of a branching run may hold by default (`branchBudgetMB`).
pub const DEFAULT_BRANCH_BUDGET_MB: f64 = 64.0;

/// What `read` makes of the options: the run's options, the views drawn side by side, the arrays
/// each frame carries, the mode, the node budget of a branching run (bytes) and the node a run
/// resumes from.
pub struct WebRun {
    pub opts: RunOptions,
    pub views: Vec<View>,
    pub arrays: Vec<View>,
    pub mode: Mode,
    pub branch: Option<usize>,
    pub resume: Option<u64>,
}

/// A list of view names: an array of strings or one comma-separated string; each once.
fn view_list(o: &JsValue, k: &str) -> Result<Option<Vec<View>>> {
    let names: Vec<String> = match get(o, k) {
        None => return Ok(None),
        Some(v) if js_sys::Array::is_array(&v) => js_sys::Array::from(&v)
            .iter()
            .map(|x| x.as_string().ok_or_else(|| Error::Input(format!("{k}: expected view names, got {x:?}"))))
            .collect::<Result<_>>()?,
        Some(v) => match v.as_string() {
            Some(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
            None => return Err(Error::Input(format!("{k}: expected an array of view names or a comma-separated string, got {v:?}"))),
        },
    };
    let mut views: Vec<View> = Vec::new();
    for n in names {
        let v: View = n.parse().map_err(|e| Error::Input(format!("{k}: {e}")))?;
        if views.contains(&v) {
            return Err(Error::Input(format!("{k}: view {n:?} is named twice")));
        }
        views.push(v);
    }
    Ok(Some(views))
}

/// `classifierScale` and `classifierClass` (classifier guidance by the loaded classifier).
fn classifier_options(o: &JsValue, opts: RunOptions, classifier: Option<&ClassifierConfig>) -> Result<RunOptions> {
    let scale = number(o, "classifierScale")?;
    let class = number(o, "classifierClass")?.map(label).transpose()?;
    match (scale, classifier) {
        (None | Some(0.0), _) if class.is_none() => Ok(opts),
        (None | Some(0.0), _) => Err(Error::Input("classifierClass: needs classifierScale > 0 (classifier guidance)".into())),
        (Some(s), Some(cfg)) => Ok(opts.classifier_guidance(cfg, s as f32, class.map(ClassLabels::All))),
        (Some(s), None) => Err(Error::Input(format!(
            "classifierScale = {s}: no classifier is loaded (loadClassifier / loadClassifierFromUrl first, or the element's `classifier` attribute)"
        ))),
    }
}

/// The edit of `mode`, or the slerped x_T of an interpolation, from the JS options.
fn edit_of(mode: Mode, o: &JsValue, model: &Model) -> Result<(Option<Edit>, Option<GivenNoise>)> {
    let image = || -> Result<Tensor> {
        let data = floats(o, "image")?.ok_or_else(|| Error::Input(format!("mode {mode:?} needs `image` (a Float32Array in −1 … 1)")))?;
        images(model, "image", data, None)
    };
    let count = |k: &str, default: usize, min: f64| number(o, k)?.map_or(Ok(default as u64), |v| whole(k, v, min)).map(|v| v as usize);
    let edit = match mode {
        Mode::Sample => return Ok((None, None)),
        Mode::Edit => {
            let strength = number(o, "strength")?.ok_or_else(|| Error::Input("mode \"edit\" needs `strength` (0 < s ≤ 1)".into()))?;
            Edit::Img2Img { image: image()?, strength }
        }
        Mode::Inpaint => {
            let mask = floats(o, "mask")?.ok_or_else(|| Error::Input("mode \"inpaint\" needs `mask` (1 keeps, 0 fills)".into()))?;
            Edit::Inpaint {
                image: image()?,
                mask: images(model, "mask", mask, Some(1))?,
                jump_length: count("jumpLength", DEFAULT_JUMP_LENGTH, 1.0)?,
                jump_n_sample: count("jumpNSample", DEFAULT_JUMP_N_SAMPLE, 1.0)?,
            }
        }
        Mode::Invert => Edit::Invert { image: image()? },
        Mode::Forward => {
            let last = model.scheduler.num_train_timesteps - 1;
            Edit::Forward { image: image()?, t_end: count("tEnd", last, 0.0)?, frames: count("steps", DEFAULT_STEPS, 1.0)? }
        }
        Mode::Interpolate => {
            let (a, b) = (latent(model, o, "from")?, latent(model, o, "to")?);
            let frames = count("batch", 8, 2.0)?;
            let x_t = Tensor::new([&[frames], &a.shape[1..]].concat(), crate::sampler::slerp_frames(&a.data, &b.data, frames))?;
            return Ok((None, Some(GivenNoise { x_t, per_step: None, undo: None })));
        }
    };
    Ok((Some(edit), None))
}
