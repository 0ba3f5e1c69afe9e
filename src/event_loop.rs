//! Waiting on the browser's event loop (the GPU layer's polls and the web API's pauses both use it,
//! so it belongs to neither).

use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Resolves after `ms` milliseconds (a macrotask: the browser paints and handles input meanwhile).
/// The global `setTimeout`, so it works in a page and in a worker.
pub(crate) async fn sleep_ms(ms: i32) {
    let global = js_sys::global();
    let Some(set_timeout) = Reflect::get(&global, &"setTimeout".into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok()) else {
        return;
    };
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let _ = set_timeout.call2(&global, &resolve, &ms.into());
    });
    let _ = JsFuture::from(p).await;
}
