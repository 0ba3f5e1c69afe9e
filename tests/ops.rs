#![cfg(not(target_arch = "wasm32"))]
//! Every op, from the cases written once in `op_cases`: the CPU reference against PyTorch
//! (tests/fixtures/ops.*), and every WGSL kernel against the CPU reference (fixture cases and
//! random odd shapes), plus the GPU blocks against PyTorch directly.
//! Tolerances: `op_cases::PYTORCH_TOL` × max(1, max|ref|) and each case's `tol` × max|ref|.

mod common;
#[path = "op_cases/mod.rs"]
mod op_cases;

use std::sync::Arc;

use ddim_webgpu::fast::gemm::Kernel;
use ddim_webgpu::fast::FastOps;
use ddim_webgpu::gpu::recorder::run_now;
use ddim_webgpu::reference::ReferenceOps;
use ddim_webgpu::Tensor;
use op_cases::{apply, check_close, fixture_cases, gpu_inputs, random_cases, OpCase, PYTORCH_TOL};

fn fixtures() -> Vec<OpCase> {
    let dir = common::fixtures();
    fixture_cases(&std::fs::read_to_string(dir.join("ops.json")).unwrap(), &std::fs::read(dir.join("ops.safetensors")).unwrap())
}

fn on_cpu(case: &OpCase) -> Tensor {
    let ins: Vec<_> = case.inputs.iter().map(|t| Arc::new(t.clone())).collect();
    let out = apply(&mut ReferenceOps::from_tensors(&case.weights), &case.op, &ins).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    (*out).clone()
}

fn on_gpu(gpu: &ddim_webgpu::gpu::GpuDevice, case: &OpCase) -> Tensor {
    let ins = gpu_inputs(case);
    let refs: Vec<&Tensor> = ins.iter().collect();
    pollster::block_on(run_now(gpu, &case.weights, &refs, |b, x| apply(b, &case.op, x))).unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

#[test]
fn cpu_ops_match_pytorch() {
    let cases = fixtures();
    assert_eq!(cases.len(), 22, "every op case of ops.json");
    for c in &cases {
        check_close(&c.name, &on_cpu(c), c.expected.as_ref().unwrap(), PYTORCH_TOL, 1.0).unwrap();
    }
}

fn on_fast(case: &OpCase, kernel: Kernel) -> Tensor {
    let ins: Vec<_> = case.inputs.iter().map(|t| Arc::new(t.clone())).collect();
    let mut ops = FastOps::from_tensors(&case.weights).with_kernel(kernel);
    let out = apply(&mut ops, &case.op, &ins).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    (*out).clone()
}

/// Every microkernel this CPU has (AVX2 and portable on an x86-64 with AVX2), not only the one it
/// picks.
#[test]
fn fast_cpu_ops_match_reference_and_pytorch() {
    let mut failures = Vec::new();
    for kernel in common::tested_kernels() {
        for c in fixtures().iter().chain(&random_cases()) {
            let got = on_fast(c, kernel);
            let name = format!("{} ({})", c.name, kernel.name());
            failures.extend(check_close(&format!("{name} fast vs reference"), &got, &on_cpu(c), c.tol, f32::MIN_POSITIVE).err());
            if let Some(want) = &c.expected {
                failures.extend(check_close(&format!("{name} fast vs pytorch"), &got, want, PYTORCH_TOL, 1.0).err());
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fast_conv_in_row_bands_matches_reference() {
    let mut failures = Vec::new();
    for c in random_cases().iter().filter(|c| c.name.starts_with("conv")) {
        let ins: Vec<_> = c.inputs.iter().map(|t| Arc::new(t.clone())).collect();
        // 1 byte: one output row (Winograd: one tile row) per band; 500 and 2000: a few rows,
        // the last band shorter. Winograd off: the stride-1 3×3 convs run directly.
        // Winograd "making U": its U made per run a group of channels at a time (bands of 1
        // byte: one register tile per group), as bigger convs run.
        for (bytes, winograd) in
            [(1, "on"), (500, "on"), (2000, "on"), (1, "making U"), (1 << 20, "making U"), (1, "off"), (2000, "off"), (1 << 20, "off")]
        {
            let ops = FastOps::from_tensors(&c.weights).with_band_bytes(bytes).with_winograd(winograd != "off");
            let mut ops = if winograd == "making U" { ops.with_winograd_making_u() } else { ops };
            let got = apply(&mut ops, &c.op, &ins).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            let name = format!("{} (bands of {bytes} bytes, Winograd {winograd}, fast vs reference)", c.name);
            failures.extend(check_close(&name, &got, &on_cpu(c), c.tol, f32::MIN_POSITIVE).err());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gpu_kernels_match_cpu_and_pytorch() {
    let gpu = common::gpu();
    let mut failures = Vec::new();
    for c in fixtures().iter().chain(&random_cases()) {
        let got = on_gpu(&gpu, c);
        failures.extend(check_close(&format!("{} (gpu vs cpu)", c.name), &got, &on_cpu(c), c.tol, f32::MIN_POSITIVE).err());
        if let Some(want) = &c.expected {
            failures.extend(check_close(&format!("{} (gpu vs pytorch)", c.name), &got, want, c.tol.max(PYTORCH_TOL), 1.0).err());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// conv2d in chunks of output pixels (taken when a conv's patches would not fit one buffer) and in
/// one, on every conv case: the small caps let each chunk hold 8 or 16 pixels (too few for a
/// Winograd conv's scratch: those fall back to im2col). Each with the GEMM tiles and workgroup
/// sizes of both kinds of adapter (CPU adapters 8×8 in 16, GPUs 4×4 in 64; this machine has only
/// the first kind), and with the 8×8 tile with and without Winograd for the 3×3 stride-1 convs.
#[test]
fn gpu_conv_in_pixel_chunks_matches_cpu() {
    let mut gpu = common::gpu();
    let mut failures = Vec::new();
    for (tile, wg, wino) in [(8, 16, true), (8, 16, false), (8, 64, false), (4, 64, false), (4, 16, false)] {
        gpu.set_gemm(tile, wg);
        gpu.conv.winograd = wino;
        gpu.check().unwrap();
        for c in random_cases().iter().filter(|c| c.name.starts_with("conv")) {
            // The weight's input channels: a conv over channel parts reads more than its first input has.
            let (n, ci, k) = (c.inputs[0].shape[0], c.weights["w"].shape[1], c.weights["w"].shape[2]);
            for pixels in [8, 16, 1 << 20] {
                gpu.conv.col_max_bytes = (n * ci * k * k * pixels * 4) as u64;
                let name = format!(
                    "{} (chunks of {pixels} pixels, {tile}×{tile} gemm in workgroups of {wg}, winograd {wino}, gpu vs cpu)",
                    c.name
                );
                failures.extend(check_close(&name, &on_gpu(&gpu, c), &on_cpu(c), c.tol, f32::MIN_POSITIVE).err());
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Winograd convs in chunks of 8 and 16 tiles and in one (the 3×3 stride-1 cases; the others run
/// as im2col): tiles of a chunk span rows, and odd sizes end in half tiles. Each with the weights'
/// transforms kept from the upload (`pack_winograd_weight`) and made per forward in scratch.
#[test]
fn gpu_winograd_conv_in_tile_chunks_matches_cpu() {
    let mut gpu = common::gpu();
    gpu.set_gemm(8, 16);
    gpu.conv.winograd = true;
    let mut failures = Vec::new();
    for (tiles, kept) in [(8, true), (16, true), (usize::MAX, true), (8, false), (usize::MAX, false)] {
        gpu.conv.winograd_tiles = tiles;
        gpu.conv.winograd_resident_bytes = if kept { 32 << 20 } else { 0 };
        for c in random_cases().iter().filter(|c| c.name.starts_with("conv 3x3")) {
            let name = format!(
                "{} (winograd, chunks of {tiles} tiles, weights transformed {}, gpu vs cpu)",
                c.name,
                if kept { "at upload" } else { "per forward" }
            );
            failures.extend(check_close(&name, &on_gpu(&gpu, c), &on_cpu(c), c.tol, f32::MIN_POSITIVE).err());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Conv weights stored as f16 (`set_f16_weights`; lavapipe has shader-f16) against the CPU
/// reference run on the same weights rounded to f16, at the f32 tolerance: the storage is all that
/// changes (against the unrounded weights the diffs are ~1e-3). Both GEMM tiles, every conv case
/// (the Winograd path is not taken with f16 weights).
#[test]
fn gpu_conv_with_f16_weights_matches_cpu_on_rounded_weights() {
    let mut gpu = common::gpu();
    gpu.set_f16_weights(true).expect("lavapipe has shader-f16");
    let mut failures = Vec::new();
    for (tile, wg) in [(8, 16), (4, 64)] {
        gpu.set_gemm(tile, wg);
        gpu.check().unwrap();
        for mut c in random_cases().into_iter().filter(|c| c.name.starts_with("conv")) {
            let got = on_gpu(&gpu, &c);
            let w = c.weights.get_mut("w").unwrap();
            w.data.iter_mut().for_each(|v| *v = half::f16::from_f32(*v).to_f32());
            let name = format!("{} (f16 weights, {tile}×{tile} gemm, gpu vs cpu on rounded weights)", c.name);
            failures.extend(check_close(&name, &got, &on_cpu(&c), c.tol, f32::MIN_POSITIVE).err());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn out_of_range_class_label_is_nan_on_the_gpu_and_an_error_on_the_cpu() {
    let gpu = common::gpu();
    let mut case = random_cases().into_iter().find(|c| c.name == "class_embedding").unwrap();
    case.inputs[1].data[1] = 5.0; // the table has 5 rows
    let got = on_gpu(&gpu, &case);
    assert!(got.data[12..24].iter().all(|v| v.is_nan()), "item 1 is poisoned, not clamped");
    assert!(got.data[..12].iter().chain(&got.data[24..]).all(|v| v.is_finite()), "the other items are untouched");
    let ins: Vec<_> = case.inputs.iter().map(|t| Arc::new(t.clone())).collect();
    let e = apply(&mut ReferenceOps::from_tensors(&case.weights), &case.op, &ins).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}

/// The fast ops split across threads (`fast::fork`, the cost model overruled so that every op
/// splits, into 2 and 3 uneven shares: conv channel tiles, Winograd's input channels and channel
/// groups, attention's query panels) compute the same bits as one thread.
#[test]
fn fast_ops_split_across_threads_match_one_thread() {
    let mut failures = Vec::new();
    for c in random_cases().iter().filter(|c| c.name.starts_with("conv") || c.name == "attention") {
        let ins: Vec<_> = c.inputs.iter().map(|t| Arc::new(t.clone())).collect();
        for making_u in [false, true] {
            let ops = || {
                let ops = FastOps::from_tensors(&c.weights).with_threads(1).with_band_bytes(2000);
                if making_u {
                    ops.with_winograd_making_u()
                } else {
                    ops
                }
            };
            let one = apply(&mut ops(), &c.op, &ins).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            for threads in [2, 3] {
                let forced = ddim_webgpu::fast::fork::Split { threads, min_share_forks: 0.0 };
                let got = apply(&mut ops().with_split(forced), &c.op, &ins).unwrap_or_else(|e| panic!("{}: {e}", c.name));
                if got.data != one.data {
                    failures.push(format!(
                        "{} ({:?}, Winograd making U: {making_u}): {threads} threads differ from one",
                        c.name, c.inputs[0].shape
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
