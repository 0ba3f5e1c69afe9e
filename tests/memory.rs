#![cfg(not(target_arch = "wasm32"))]
//! Memory pressure (#33 item 6): a model whose weights, or a batch whose activations, would not fit
//! the host (in the browser a wasm32 heap: 4 GiB) is refused before allocation, with the numbers.
//! Natively the limit is the OS's; here it is capped (`model::memory::cap_host_bytes`, process-wide:
//! this file is its own test binary), as a smaller heap would be. The browser suite checks the real
//! 4 GiB (tests/web.rs).

mod common;

use ddim_webgpu::model::memory::{activation_bytes, cap_host_bytes};
use ddim_webgpu::run::{run_to_end, CpuEngine, RunOptions};
use ddim_webgpu::{Error, Model};

#[test]
fn weights_and_activations_over_the_host_limit_are_refused_with_the_numbers() {
    let dir = common::fixtures().join("../../weights/mnist-cond");
    let model = Model::load_dir(&dir).unwrap();
    let per_item = activation_bytes(&model.config, 1, 28, 28);
    // The estimate errs high but not wildly: the bundled model's peak per item is ~0.4 MB of live
    // tensors (28×28×96 floats at its widest), the estimate ≈ 1.5 MB.
    println!("bundled model: estimated activations {per_item} bytes per item");
    assert!((300_000..4_000_000).contains(&per_item), "{per_item}");
    let plan = |batch| RunOptions::new().steps(2).batch(batch).plan(&model).unwrap();
    cap_host_bytes(3 * per_item);
    // 3 items fit; 4 do not, and the error says how much they need and what holds.
    run_to_end(&mut CpuEngine::new(&model), &plan(3)).now_or_never().unwrap();
    let e = run_to_end(&mut CpuEngine::reference(&model), &plan(4)).now_or_never().unwrap_err();
    assert!(matches!(e, Error::HostMemory(_)), "{e}");
    let text = e.to_string();
    for says in [&format!("{}", 4 * per_item), &format!("{}", 3 * per_item), "4 28×28 item(s)", "smaller batch"] {
        assert!(text.contains(says), "{text:?} should say {says:?}");
    }
    // Classifier-free guidance doubles the U-Net batch: 2 items guided need 4 at once.
    let guided = RunOptions::new().steps(2).batch(2).guidance(1.0).plan(&model).unwrap();
    assert!(run_to_end(&mut CpuEngine::new(&model), &guided).now_or_never().unwrap_err().to_string().contains("4 28×28 item(s)"));
    // The weights as f32: refused by the loader before converting.
    cap_host_bytes(1_000_000);
    let e = Model::load_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("diffusion_pytorch_model.safetensors` as f32") && e.contains("4456836 bytes") && e.contains("at most 1000000"),
        "{e}"
    );
    cap_host_bytes(u64::MAX);
}

/// `run_to_end` on a CPU engine finishes without awaiting anything.
trait NowOrNever: std::future::Future + Sized {
    fn now_or_never(self) -> Self::Output {
        pollster::block_on(self)
    }
}
impl<F: std::future::Future> NowOrNever for F {}
