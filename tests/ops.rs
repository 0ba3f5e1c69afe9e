#![cfg(not(target_arch = "wasm32"))]
//! Every op: the CPU reference against PyTorch/diffusers fixtures (tests/fixtures/ops.*), and every
//! WGSL kernel against the CPU reference on random odd shapes.
//! Tolerances: CPU vs PyTorch 1e-5 × max(1, max|ref|) (same f32 math, different summation order);
//! GPU vs CPU 1e-5 × max|ref| except where a test says why it needs more.

mod common;

use std::collections::HashMap;

use common::*;
use ddim_webgpu::cpu::{ops, CpuOps};
use ddim_webgpu::gpu::recorder::run_now;
use ddim_webgpu::model::unet::{attention_block, resnet_block};
use ddim_webgpu::model::{UNetOps, ConvSpec};
use ddim_webgpu::Tensor;

fn case_tensors<'a>(all: &'a HashMap<String, Tensor>, name: &str) -> HashMap<String, Tensor> {
    all.iter().filter_map(|(k, v)| k.strip_prefix(&format!("{name}.")).map(|s| (s.to_string(), v.clone()))).collect()
}

fn prefixed(t: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    t.iter().map(|(k, v)| (format!("{prefix}.{k}"), v.clone())).collect()
}

#[test]
fn cpu_ops_match_pytorch() {
    let all = load(&fixtures().join("ops.safetensors"));
    let cases = json("ops.json");
    let mut checked = 0;
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let t = case_tensors(&all, name);
        let got = match case["op"].as_str().unwrap() {
            "conv2d" => {
                let pad: Vec<usize> = case["pad"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                let spec = ConvSpec { stride: case["stride"].as_u64().unwrap() as usize, pad: [pad[0], pad[1], pad[2], pad[3]], upsample: false };
                ops::conv2d(&t["x"], &t["weight"], &t["bias"], spec, None, None, 1.0).unwrap()
            }
            "group_norm" => ops::group_norm(&t["x"], &t["weight"], &t["bias"], case["groups"].as_u64().unwrap() as usize,
                                            case["eps"].as_f64().unwrap() as f32, case["silu"].as_bool().unwrap()).unwrap(),
            "linear" => ops::linear(&t["x"], &t["weight"], &t["bias"], case["silu_in"].as_bool().unwrap(), case["silu_out"].as_bool().unwrap()).unwrap(),
            "timestep_embedding" => ops::timestep_embedding(&t["t"], case["dim"].as_u64().unwrap() as usize,
                                                            case["flip_sin_to_cos"].as_bool().unwrap(), case["downscale_freq_shift"].as_f64().unwrap() as f32),
            "attention" => {
                let mut w = prefixed(&t, "a");
                for (k, v) in w.iter_mut() {
                    if v.shape.len() == 2 && k.contains("to_") { v.shape.extend([1, 1]); }
                }
                let mut b = CpuOps::from_tensors(&w);
                let x = std::sync::Arc::new(t["x"].clone());
                let u = |k: &str| case[k].as_u64().unwrap() as usize;
                let out = attention_block(&mut b, "a", &x, u("heads"), u("dim_head"), u("groups"), case["eps"].as_f64().unwrap() as f32,
                                          case["rescale"].as_f64().unwrap() as f32).unwrap();
                (*out).clone()
            }
            "upsample" => ops::conv2d(&t["x"], &t["conv.weight"], &t["conv.bias"], ConvSpec { upsample: true, ..ConvSpec::SAME3 }, None, None, 1.0).unwrap(),
            "resnet" => {
                let mut b = CpuOps::from_tensors(&prefixed(&t, "r"));
                let (x, temb) = (std::sync::Arc::new(t["x"].clone()), std::sync::Arc::new(t["temb"].clone()));
                let out = resnet_block(&mut b, "r", &x, &temb, case["groups"].as_u64().unwrap() as usize,
                                       case["eps"].as_f64().unwrap() as f32, case["output_scale_factor"].as_f64().unwrap() as f32).unwrap();
                (*out).clone()
            }
            other => panic!("unknown op {other}"),
        };
        assert_close(name, &got, &t["out"], 1e-5);
        checked += 1;
    }
    assert_eq!(checked, 15, "every op case was checked");
}

fn gpu_vs_cpu(what: &str, weights: &HashMap<String, Tensor>, inputs: &[&Tensor], tol: f32,
              gpu_op: impl FnOnce(&mut ddim_webgpu::gpu::recorder::GpuRecorder, &[ddim_webgpu::gpu::recorder::GpuTensor]) -> ddim_webgpu::Result<ddim_webgpu::gpu::recorder::GpuTensor>,
              cpu_op: impl FnOnce(&mut CpuOps, &[std::sync::Arc<Tensor>]) -> ddim_webgpu::Result<std::sync::Arc<Tensor>>) {
    let gpu = gpu();
    let got = pollster::block_on(run_now(&gpu, weights, inputs, gpu_op)).unwrap();
    let mut cpu = CpuOps::from_tensors(weights);
    let ins: Vec<_> = inputs.iter().map(|t| std::sync::Arc::new((*t).clone())).collect();
    let want = cpu_op(&mut cpu, &ins).unwrap();
    assert_close_rel(what, &got, &want, tol);
}

fn conv_weights(o: usize, i: usize, k: usize, seed: u64) -> HashMap<String, Tensor> {
    HashMap::from([("w".to_string(), scaled(randn(&[o, i, k, k], seed), 0.3)), ("b".to_string(), randn(&[o], seed + 1))])
}

#[test]
fn conv2d_kernel_matches_cpu() {
    // Odd shapes: channel counts not multiples of 4, widths not multiples of 4, all conv variants.
    let specs = [
        ("3x3 s1", 3, ConvSpec::SAME3, [2, 5, 7, 9], 6),
        ("3x3 s2", 3, ConvSpec { stride: 2, pad: [1, 1, 1, 1], upsample: false }, [1, 3, 9, 7], 7),
        ("3x3 s2 asym", 3, ConvSpec { stride: 2, pad: [0, 0, 1, 1], upsample: false }, [2, 3, 10, 6], 5),
        ("1x1", 1, ConvSpec::POINTWISE, [1, 13, 5, 3], 9),
        ("upsample 3x3", 3, ConvSpec { upsample: true, ..ConvSpec::SAME3 }, [1, 5, 3, 5], 3),
    ];
    for (i, (name, k, spec, shape, co)) in specs.into_iter().enumerate() {
        let w = conv_weights(co, shape[1], k, 10 + i as u64);
        let x = randn(&shape, 20 + i as u64);
        gpu_vs_cpu(name, &w, &[&x], 1e-5,
            |b, ins| { let (w, bb) = (b.weight("w")?, b.weight("b")?); b.conv2d(&ins[0], &w, &bb, spec, None, None, 1.0) },
            |b, ins| { let (w, bb) = (b.weight("w")?, b.weight("b")?); b.conv2d(&ins[0], &w, &bb, spec, None, None, 1.0) });
    }
    // Fused time-embedding add, residual and output scale (the resnet's conv1 and conv2).
    let w = conv_weights(6, 5, 3, 40);
    let (x, add, res) = (randn(&[2, 5, 6, 7], 41), randn(&[2, 6], 42), randn(&[2, 6, 6, 7], 43));
    gpu_vs_cpu("fused conv", &w, &[&x, &add, &res], 1e-5,
        |b, i| { let (w, bb) = (b.weight("w")?, b.weight("b")?); b.conv2d(&i[0], &w, &bb, ConvSpec::SAME3, Some(&i[1]), Some(&i[2]), 1.5) },
        |b, i| { let (w, bb) = (b.weight("w")?, b.weight("b")?); b.conv2d(&i[0], &w, &bb, ConvSpec::SAME3, Some(&i[1]), Some(&i[2]), 1.5) });
}

#[test]
fn group_norm_kernel_matches_cpu() {
    for (i, (shape, groups, silu)) in [([2, 12, 5, 7], 3, false), ([1, 16, 3, 5], 4, true), ([3, 6, 23, 19], 2, true)].into_iter().enumerate() {
        let c = shape[1];
        let w = HashMap::from([("g".to_string(), randn(&[c], 50 + i as u64)), ("b".to_string(), randn(&[c], 60 + i as u64))]);
        let x = randn(&shape, 70 + i as u64);
        gpu_vs_cpu("group_norm", &w, &[&x], 1e-5,
            |b, ins| { let (g, bb) = (b.weight("g")?, b.weight("b")?); b.group_norm(&ins[0], &g, &bb, groups, 1e-5, silu) },
            |b, ins| { let (g, bb) = (b.weight("g")?, b.weight("b")?); b.group_norm(&ins[0], &g, &bb, groups, 1e-5, silu) });
    }
}

#[test]
fn linear_kernel_matches_cpu() {
    for (i, (si, so)) in [(false, false), (true, false), (false, true)].into_iter().enumerate() {
        let w = HashMap::from([("w".to_string(), scaled(randn(&[17, 13], 80 + i as u64), 0.3)), ("b".to_string(), randn(&[17], 90))]);
        let x = randn(&[3, 13], 95 + i as u64);
        gpu_vs_cpu("linear", &w, &[&x], 1e-5,
            |b, ins| { let (w, bb) = (b.weight("w")?, b.weight("b")?); b.linear(&ins[0], &w, &bb, si, so) },
            |b, ins| { let (w, bb) = (b.weight("w")?, b.weight("b")?); b.linear(&ins[0], &w, &bb, si, so) });
    }
}

#[test]
fn timestep_embedding_kernel_matches_cpu() {
    // The argument t·freq is formed in f32 from exp(), which WGSL and Rust may round one ulp apart
    // (WGSL allows 3 ulp): at t = 999 one ulp of freq moves the argument by up to 999·2⁻²³ ≈ 1.2e-4
    // radians, so 1.5e-4 × max(=1) is the bound a correct kernel can promise here (torch's CPU and
    // CUDA embeddings differ by the same amount).
    let t = Tensor { shape: vec![6], data: vec![0.0, 1.0, 17.0, 500.0, 998.0, 999.0] };
    for (dim, flip, shift) in [(32, true, 0.0), (20, false, 1.0), (33, true, 1.0)] {
        gpu_vs_cpu("timestep_embedding", &HashMap::new(), &[&t], 1.5e-4,
            |b, ins| b.timestep_embedding(&ins[0], dim, flip, shift),
            |b, ins| b.timestep_embedding(&ins[0], dim, flip, shift));
    }
}

#[test]
fn class_embedding_affine_concat_kernels_match_cpu() {
    let w = HashMap::from([("table".to_string(), randn(&[5, 12], 100))]);
    let emb = randn(&[3, 12], 101);
    let labels = Tensor { shape: vec![3], data: vec![4.0, 0.0, 2.0] };
    // The GPU reads labels as u32: upload their bit patterns.
    let labels_u32 = Tensor { shape: vec![3], data: labels.data.iter().map(|&v| f32::from_bits(v as u32)).collect() };
    let gpu = gpu();
    let got = pollster::block_on(run_now(&gpu, &w, &[&emb, &labels_u32], |b, i| { let t = b.weight("table")?; b.class_embedding_add(&i[0], &t, &i[1]) })).unwrap();
    let want = ops::class_embedding_add(&emb, &w["table"], &labels).unwrap();
    assert_close_rel("class_embedding", &got, &want, 1e-6);

    let x = randn(&[2, 3, 5, 7], 102);
    gpu_vs_cpu("affine", &HashMap::new(), &[&x], 1e-6, |b, i| b.affine(&i[0], 2.0, -1.0), |b, i| b.affine(&i[0], 2.0, -1.0));
    let (a, c) = (randn(&[2, 3, 5, 7], 103), randn(&[2, 5, 5, 7], 104));
    gpu_vs_cpu("concat", &HashMap::new(), &[&a, &c], 0.0, |b, i| b.concat_channels(&i[0], &i[1]), |b, i| b.concat_channels(&i[0], &i[1]));
}

#[test]
fn attention_kernel_matches_cpu() {
    for (i, (n, heads, d, h, w)) in [(2, 3, 4, 5, 3), (1, 1, 24, 7, 7), (2, 2, 5, 9, 11)].into_iter().enumerate() {
        let s = [n, heads * d, h, w];
        let (q, k, v) = (randn(&s, 110 + i as u64), randn(&s, 120 + i as u64), randn(&s, 130 + i as u64));
        gpu_vs_cpu("attention", &HashMap::new(), &[&q, &k, &v], 1e-5,
            |b, i| b.attention(&i[0], &i[1], &i[2], heads, d), |b, i| b.attention(&i[0], &i[1], &i[2], heads, d));
    }
}

#[test]
fn attention_and_resnet_blocks_on_gpu_match_pytorch() {
    let all = load(&fixtures().join("ops.safetensors"));
    let gpu = gpu();
    let t = case_tensors(&all, "attention");
    let mut w = prefixed(&t, "a");
    for (k, v) in w.iter_mut() {
        if v.shape.len() == 2 && k.contains("to_") { v.shape.extend([1, 1]); }
    }
    let got = pollster::block_on(run_now(&gpu, &w, &[&t["x"]], |b, i| attention_block(b, "a", &i[0], 3, 4, 4, 1e-6, 2.0))).unwrap();
    assert_close("attention block (gpu)", &got, &t["out"], 1e-5);
    let t = case_tensors(&all, "resnet");
    let w = prefixed(&t, "r");
    let got = pollster::block_on(run_now(&gpu, &w, &[&t["x"], &t["temb"]], |b, i| resnet_block(b, "r", &i[0], &i[1], 2, 1e-6, 1.0))).unwrap();
    assert_close("resnet block (gpu)", &got, &t["out"], 1e-5);
}
