//! Fetching a diffusers model folder over HTTP.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::error::{Error, Result};

/// The body of `url`, or None on HTTP 404; any other failure is an error naming the URL.
pub async fn fetch_optional(url: &str) -> Result<Option<Vec<u8>>> {
    let io = |msg: String| Error::Io { path: url.into(), msg };
    let window = web_sys::window().ok_or_else(|| io("no window".into()))?;
    let resp = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| io(format!("fetch failed: {e:?}")))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| io("not a Response".into()))?;
    if resp.status() == 404 {
        return Ok(None);
    }
    if !resp.ok() {
        return Err(io(format!("HTTP {} {}", resp.status(), resp.status_text())));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| io(format!("{e:?}")))?).await.map_err(|e| io(format!("{e:?}")))?;
    Ok(Some(js_sys::Uint8Array::new(&buf).to_vec()))
}

/// The body of `url`; a 404 is an error too.
pub async fn fetch_required(url: &str) -> Result<Vec<u8>> {
    fetch_optional(url).await?.ok_or_else(|| Error::Io { path: url.into(), msg: "HTTP 404 Not Found".into() })
}

/// config.json, the weights and scheduler_config.json of the folder at `base`. A missing
/// scheduler_config.json (404) means diffusers' defaults (the model says so in `scheduler_source`);
/// any other failure to fetch it is an error.
pub async fn model_folder(base: &str) -> Result<(String, Vec<u8>, Option<String>)> {
    let base = base.trim_end_matches('/');
    let config = fetch_required(&format!("{base}/config.json")).await?;
    let weights = fetch_required(&format!("{base}/diffusion_pytorch_model.safetensors")).await?;
    let sched = fetch_optional(&format!("{base}/scheduler_config.json")).await?;
    let config = String::from_utf8(config).map_err(|_| Error::Config("config.json is not UTF-8".into()))?;
    let sched =
        sched.map(|b| String::from_utf8(b).map_err(|_| Error::Scheduler("scheduler_config.json is not UTF-8".into()))).transpose()?;
    Ok((config, weights, sched))
}
