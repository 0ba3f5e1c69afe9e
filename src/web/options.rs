//! The JS options object of `run` → the run layer's `RunOptions`. Only the reading happens here:
//! defaults and checks are `RunOptions`'s, the same as the CLI's.

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use crate::error::{Error, Result};
use crate::run::options::{label, whole};
use crate::run::{ClassLabels, RunOptions, View};
use crate::sampler::SamplerKind;

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

/// {steps, eta, seed, sampler: "ddim"|"ddpm"|"dpm++2m"|"euler"|"heun", batch, classLabel (one number or one per item),
/// guidance, view: "xt"|"x0"}; every key optional.
pub fn read(o: &JsValue) -> Result<(RunOptions, View)> {
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
    let view = match string(o, "view")?.as_deref() {
        None | Some("xt") => View::Xt,
        Some("x0") => View::X0,
        Some(other) => return Err(Error::Input(format!("view {other:?}: expected \"xt\" or \"x0\""))),
    };
    Ok((opts, view))
}
