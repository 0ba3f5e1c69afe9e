//! Op tests written once (burn's style): every case is data (an `Op`, its weights and inputs, and
//! PyTorch's output where a fixture has one), and `apply` runs a case on any `UNetOps` backend.
//! The same cases run as CPU vs PyTorch and native GPU vs CPU (`tests/ops.rs`), and browser GPU vs
//! CPU (`tests/web.rs`). Block parameters come from `tests/fixtures/ops.json`.
#![allow(dead_code)]

use std::collections::HashMap;

use ddim_webgpu::classifier::ClassifierOps;
use ddim_webgpu::model::blocks::{AttentionSpec, Resample, ResnetSpec};
use ddim_webgpu::model::config::Activation;
use ddim_webgpu::model::unet::{attention_block, resample, resnet_block};
use ddim_webgpu::model::{ConvArgs, ConvSpec, GroupNorm};
use ddim_webgpu::{Result, Tensor};

/// GPU vs CPU reference: |diff| ≤ TOL · max|ref| (same f32 math, different summation order).
pub const KERNEL_TOL: f32 = 1e-5;
/// CPU reference vs PyTorch: |diff| ≤ TOL · max(1, max|ref|).
pub const PYTORCH_TOL: f32 = 1e-5;

#[derive(Clone, Debug)]
pub enum Op {
    /// Weights `w`, `b`; inputs x [, chan_add, residual].
    Conv2d {
        spec: ConvSpec,
        fused: bool,
        out_scale: f32,
    },
    /// conv2d(silu(group_norm(x))), x the concatenation of `parts` inputs: weights `w`, `b`
    /// (conv), `g`, `gb` (norm); inputs the parts [, chan_add, residual].
    NormSiluConv2d {
        spec: ConvSpec,
        groups: usize,
        parts: usize,
        fused: bool,
        out_scale: f32,
    },
    /// conv2d of the concatenation of inputs a, b (`conv2d_parts`): weights `w`, `b`.
    Conv2dParts {
        spec: ConvSpec,
    },
    /// Weights `g`, `b`; input x.
    GroupNorm {
        groups: usize,
        eps: f32,
        silu: bool,
    },
    /// Weights `w`, `b`; input x.
    Linear {
        silu_in: bool,
        silu_out: bool,
    },
    /// Input t.
    TimestepEmbedding {
        dim: usize,
        flip: bool,
        shift: f32,
    },
    /// Weight `table`; inputs emb, labels (u32 bit patterns on the GPU, values on the CPU).
    ClassEmbedding,
    Affine {
        scale: f32,
        shift: f32,
    },
    /// Inputs a, b.
    Concat,
    /// Inputs q, k, v.
    Attention {
        heads: usize,
        d: usize,
    },
    /// diffusers' Attention block, weights under `a.`; input x.
    AttentionBlock(AttentionSpec),
    /// diffusers' ResnetBlock2D, weights under `r.`; inputs x, temb.
    Resnet(ResnetSpec),
    /// A resnet's (or the Skip path's) resampling as `upfirdn2d`; input x.
    Resample(Resample),
    /// act(x) or act(x·(1 + scale) + shift); inputs x [, film].
    Activation {
        act: Activation,
        film: bool,
    },
    /// Weight `w`; input t.
    FourierEmbedding,
    /// Weight `table`; input index (f32 values).
    Embedding,
    /// Inputs a, b.
    Add,
    /// Inputs x, t.
    DivideByTimestep,
    /// The classifier's ops (classifier guidance): input x.
    AvgPool2d {
        k: [usize; 2],
    },
    /// Input g, the gradient of the pooled output of an input of `shape`.
    AvgPool2dBackward {
        k: [usize; 2],
        shape: [usize; 4],
    },
    /// Weights `g`, `b` (γ, β); inputs g (the gradient of silu(group_norm(z))), z.
    GroupNormSiluBackward {
        groups: usize,
        eps: f32,
    },
    /// Inputs logits [N, K], target [N, 2] = (label, scale).
    LogSoftmaxBackward,
}

pub struct OpCase {
    pub name: String,
    pub op: Op,
    pub weights: HashMap<String, Tensor>,
    pub inputs: Vec<Tensor>,
    /// PyTorch's output (fixture cases only).
    pub expected: Option<Tensor>,
    /// GPU vs CPU tolerance (× max|ref|).
    pub tol: f32,
}

/// Runs one case's op on backend `b`.
pub fn apply<B: ClassifierOps>(b: &mut B, op: &Op, x: &[B::T]) -> Result<B::T> {
    let w = |b: &B, n: &str| b.weight(n);
    match op.clone() {
        Op::Conv2d { spec, fused, out_scale } => {
            let (add, res) = if fused { (Some(&x[1]), Some(&x[2])) } else { (None, None) };
            let (weight, bias) = (w(b, "w")?, w(b, "b")?);
            b.conv2d(&x[0], ConvArgs { chan_add: add, residual: res, out_scale, ..ConvArgs::new(&weight, &bias, spec) })
        }
        Op::NormSiluConv2d { spec, groups, parts, fused, out_scale } => {
            let (add, res) = if fused { (Some(&x[parts]), Some(&x[parts + 1])) } else { (None, None) };
            let (g, gb) = (w(b, "g")?, w(b, "gb")?);
            let norm = GroupNorm { gamma: &g, beta: &gb, groups, eps: 1e-5 };
            let parts = if parts == 2 { b.channel_parts(x[0].clone(), x[1].clone())? } else { vec![x[0].clone()] };
            let (weight, bias) = (w(b, "w")?, w(b, "b")?);
            b.norm_silu_conv2d(&parts, norm, ConvArgs { chan_add: add, residual: res, out_scale, ..ConvArgs::new(&weight, &bias, spec) })
        }
        Op::Conv2dParts { spec } => {
            let parts = b.channel_parts(x[0].clone(), x[1].clone())?;
            let (weight, bias) = (w(b, "w")?, w(b, "b")?);
            b.conv2d_parts(&parts, ConvArgs::new(&weight, &bias, spec))
        }
        Op::GroupNorm { groups, eps, silu } => b.group_norm(&x[0], &w(b, "g")?, &w(b, "b")?, groups, eps, silu),
        Op::Linear { silu_in, silu_out } => b.linear(&x[0], &w(b, "w")?, &w(b, "b")?, silu_in, silu_out),
        Op::TimestepEmbedding { dim, flip, shift } => b.timestep_embedding(&x[0], dim, flip, shift),
        Op::ClassEmbedding => b.class_embedding_add(&x[0], &w(b, "table")?, &x[1]),
        Op::Affine { scale, shift } => b.affine(&x[0], scale, shift),
        Op::Concat => b.concat_channels(&x[0], &x[1]),
        Op::Attention { heads, d } => b.attention(&x[0], &x[1], &x[2], heads, d),
        Op::AttentionBlock(spec) => attention_block(b, &spec, &x[0]),
        Op::Resnet(spec) => resnet_block(b, &spec, vec![x[0].clone()], &x[1]),
        Op::Resample(how) => resample(b, &x[0], how),
        Op::Activation { act, film } => b.activation(&x[0], act, film.then(|| &x[1])),
        Op::FourierEmbedding => b.fourier_embedding(&x[0], &w(b, "w")?),
        Op::Embedding => b.embedding(&w(b, "table")?, &x[0]),
        Op::Add => b.add(&x[0], &x[1]),
        Op::DivideByTimestep => b.divide_by_timestep(&x[0], &x[1]),
        Op::AvgPool2d { k } => b.avg_pool2d(&x[0], k),
        Op::AvgPool2dBackward { k, shape } => b.avg_pool2d_backward(&x[0], k, shape),
        Op::GroupNormSiluBackward { groups, eps } => b.group_norm_silu_backward(&x[0], &x[1], &w(b, "g")?, &w(b, "b")?, groups, eps),
        Op::LogSoftmaxBackward => b.log_softmax_backward(&x[0], &x[1]),
    }
}

/// The inputs as the GPU reads them (class labels as u32 bit patterns).
pub fn gpu_inputs(case: &OpCase) -> Vec<Tensor> {
    let mut ins = case.inputs.clone();
    if let Op::ClassEmbedding = case.op {
        ins[1].data = ins[1].data.iter().map(|&v| f32::from_bits(v as u32)).collect();
    }
    ins
}

pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor { shape: shape.to_vec(), data: ddim_webgpu::sampler::rng::normal(seed, 7, shape.iter().product()) }
}

fn scaled(t: Tensor, s: f32) -> Tensor {
    Tensor { shape: t.shape, data: t.data.into_iter().map(|v| v * s).collect() }
}

fn named(pairs: Vec<(&str, Tensor)>) -> HashMap<String, Tensor> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn conv_weights(o: usize, i: usize, k: usize, seed: u64) -> HashMap<String, Tensor> {
    named(vec![("w", scaled(randn(&[o, i, k, k], seed), 0.3)), ("b", randn(&[o], seed + 1))])
}

fn case(name: &str, op: Op, weights: HashMap<String, Tensor>, inputs: Vec<Tensor>) -> OpCase {
    OpCase { name: name.into(), op, weights, inputs, expected: None, tol: KERNEL_TOL }
}

/// A default ResnetBlock2D (SiLU, additive time embedding, no resampling) under `prefix` on `x`.
pub fn resnet_spec(prefix: &str, x: &Tensor, c_out: usize, groups: usize, eps: f32, scale: f32) -> ResnetSpec {
    let c_in = x.shape[1];
    ResnetSpec {
        prefix: prefix.into(),
        c_in,
        c_out,
        groups,
        groups_out: groups,
        eps,
        scale,
        act: Activation::Silu,
        scale_shift: false,
        resample: Resample::None,
        shortcut: c_in != c_out,
    }
}

/// Weights of a ResnetBlock2D under `r.` (a shortcut when the channels change or `shortcut`).
fn resnet_weights(r: &ResnetSpec, temb: usize, seed: u64) -> HashMap<String, Tensor> {
    let (ci, co) = (r.c_in, r.c_out);
    let proj = if r.scale_shift { 2 * co } else { co };
    let mut w = vec![
        ("norm1.weight", randn(&[ci], seed)),
        ("norm1.bias", randn(&[ci], seed + 1)),
        ("conv1.weight", scaled(randn(&[co, ci, 3, 3], seed + 2), 0.3)),
        ("conv1.bias", randn(&[co], seed + 3)),
        ("time_emb_proj.weight", scaled(randn(&[proj, temb], seed + 4), 0.3)),
        ("time_emb_proj.bias", randn(&[proj], seed + 5)),
        ("norm2.weight", randn(&[co], seed + 6)),
        ("norm2.bias", randn(&[co], seed + 7)),
        ("conv2.weight", scaled(randn(&[co, co, 3, 3], seed + 8), 0.3)),
        ("conv2.bias", randn(&[co], seed + 9)),
    ];
    if r.shortcut {
        w.push(("conv_shortcut.weight", scaled(randn(&[co, ci, 1, 1], seed + 10), 0.3)));
        w.push(("conv_shortcut.bias", randn(&[co], seed + 11)));
    }
    w.into_iter().map(|(k, v)| (format!("r.{k}"), v)).collect()
}

/// The ops of issue 29's breadth (resampling, activations, AdaGN, embeddings) on odd shapes.
fn breadth_cases() -> Vec<OpCase> {
    let mut cases = Vec::new();
    let resamples = [
        ("avg_pool2d", Resample::Down { fir: false }, [2, 3, 6, 10]),
        ("FIR downsample", Resample::Down { fir: true }, [1, 5, 7, 9]),
        ("nearest upsample", Resample::Up { fir: false }, [2, 3, 5, 3]),
        ("FIR upsample", Resample::Up { fir: true }, [1, 4, 3, 7]),
    ];
    for (i, (name, how, shape)) in resamples.into_iter().enumerate() {
        cases.push(case(name, Op::Resample(how), HashMap::new(), vec![randn(&shape, 300 + i as u64)]));
    }
    for (i, act) in [Activation::Silu, Activation::Mish, Activation::Gelu, Activation::Relu].into_iter().enumerate() {
        let x = scaled(randn(&[2, 5, 3, 7], 310 + i as u64), 4.0);
        cases.push(case(&format!("activation {act:?}"), Op::Activation { act, film: false }, HashMap::new(), vec![x.clone()]));
        let film = randn(&[2, 10], 320 + i as u64);
        cases.push(case(
            &format!("activation {act:?} after scale-shift"),
            Op::Activation { act, film: true },
            HashMap::new(),
            vec![x, film],
        ));
    }
    // Arguments of hundreds of radians, as NCSN++'s w = 16·N(0, 1) gives: 1.5e-4, as the
    // positional embedding's (one ulp of the argument apart).
    let t = Tensor { shape: vec![4], data: vec![0.01, 0.5, 1.0, 50.0] };
    let mut c = case("fourier_embedding", Op::FourierEmbedding, named(vec![("w", scaled(randn(&[9], 330), 16.0))]), vec![t]);
    c.tol = 1.5e-4;
    cases.push(c);
    let index = Tensor { shape: vec![3], data: vec![6.0, 0.0, 3.0] };
    cases.push(case("embedding", Op::Embedding, named(vec![("table", randn(&[7, 11], 331))]), vec![index]));
    cases.push(case("add", Op::Add, HashMap::new(), vec![randn(&[3, 13], 332), randn(&[3, 13], 333)]));
    let t = Tensor { shape: vec![2], data: vec![0.5, 20.0] };
    cases.push(case("divide_by_timestep", Op::DivideByTimestep, HashMap::new(), vec![randn(&[2, 3, 5, 3], 334), t]));
    // ResnetBlock2D variants: FIR and plain resampling, AdaGN, other activations, Skip groups.
    let resnets = [
        ("resnet FIR down, shortcut, mish, scale-shift", [1, 8, 6, 10], 8, Resample::Down { fir: true }, Activation::Mish, true, true),
        ("resnet FIR up, shortcut, silu", [2, 8, 3, 5], 8, Resample::Up { fir: true }, Activation::Silu, false, true),
        ("resnet avg-pool down, scale-shift", [1, 6, 6, 4], 6, Resample::Down { fir: false }, Activation::Silu, true, false),
        ("resnet nearest up, gelu", [2, 4, 3, 3], 4, Resample::Up { fir: false }, Activation::Gelu, false, false),
        ("resnet 6 → 10 channels, relu, scale-shift", [2, 6, 5, 7], 10, Resample::None, Activation::Relu, true, true),
    ];
    for (i, (name, shape, co, resample, act, scale_shift, shortcut)) in resnets.into_iter().enumerate() {
        let x = randn(&shape, 340 + i as u64);
        let mut r = resnet_spec("r", &x, co, 2, 1e-6, std::f32::consts::SQRT_2);
        (r.resample, r.act, r.scale_shift, r.shortcut, r.groups_out) = (resample, act, scale_shift, shortcut, 1);
        let w = resnet_weights(&r, 12, 350 + 20 * i as u64);
        cases.push(case(name, Op::Resnet(r), w, vec![x, randn(&[shape[0], 12], 345 + i as u64)]));
    }
    cases
}

/// Random odd shapes for every kernel (GPU vs CPU).
pub fn random_cases() -> Vec<OpCase> {
    let mut cases = Vec::new();
    let conv = |stride, pad, upsample| ConvSpec { stride, pad, upsample };
    for (i, (name, k, spec, shape, co)) in [
        ("conv 3x3", 3, ConvSpec::SAME3, [2, 5, 7, 9], 6),
        ("conv 3x3 stride 2 symmetric", 3, conv(2, [1, 1, 1, 1], false), [1, 3, 9, 7], 5),
        ("conv 3x3 stride 2 asymmetric", 3, conv(2, [0, 0, 1, 1], false), [1, 3, 10, 6], 5),
        ("conv 1x1", 1, ConvSpec::POINTWISE, [1, 13, 5, 3], 9),
        ("conv 1x1 over 8k pixels (input read as im2col)", 1, ConvSpec::POINTWISE, [2, 11, 4, 6], 10),
        ("conv 3x3 upsample", 3, conv(1, [1, 1, 1, 1], true), [1, 5, 3, 5], 3),
        ("conv 3x3 over several channel tiles", 3, ConvSpec::SAME3, [2, 7, 5, 11], 37),
    ]
    .into_iter()
    .enumerate()
    {
        let inputs = vec![randn(&shape, 20 + i as u64)];
        cases.push(case(name, Op::Conv2d { spec, fused: false, out_scale: 1.0 }, conv_weights(co, shape[1], k, 10 + 2 * i as u64), inputs));
    }
    // The resnet's conv2: time-embedding add, residual and output scale fused into the conv.
    cases.push(case(
        "conv 3x3 fused add+residual+scale",
        Op::Conv2d { spec: ConvSpec::SAME3, fused: true, out_scale: 1.5 },
        conv_weights(6, 5, 3, 40),
        vec![randn(&[2, 5, 6, 7], 41), randn(&[2, 6], 42), randn(&[2, 6, 6, 7], 43)],
    ));
    // conv_out's shape: so few output channels that the fast engine runs one axpy per tap.
    cases.push(case(
        "conv 3x3 into 2 channels, fused add+residual+scale",
        Op::Conv2d { spec: ConvSpec::SAME3, fused: true, out_scale: 1.5 },
        conv_weights(2, 9, 3, 140),
        vec![randn(&[2, 9, 5, 6], 141), randn(&[2, 2], 142), randn(&[2, 2, 5, 6], 143)],
    ));
    // Attention's to_out: a 1×1 conv with residual and output scale, over a whole channel tile
    // (the fast engine's vector epilogue) and part of one, 21 pixels (a partial pixel tile).
    cases.push(case(
        "conv 1x1 fused add+residual+scale over 19 channels",
        Op::Conv2d { spec: ConvSpec::POINTWISE, fused: true, out_scale: 1.5 },
        conv_weights(19, 5, 1, 44),
        vec![randn(&[2, 5, 3, 7], 45), randn(&[2, 19], 46), randn(&[2, 19, 3, 7], 47)],
    ));
    // A ResnetBlock2D's conv reads silu(group_norm(x)); the fast engine normalises as it pads.
    for (i, (name, k, spec, shape, groups, co, fused)) in [
        ("conv 3x3 after group norm + SiLU", 3, ConvSpec::SAME3, [2, 6, 7, 9], 3, 5, false),
        ("conv 3x3 after group norm + SiLU, fused add+residual+scale", 3, ConvSpec::SAME3, [2, 8, 6, 7], 4, 6, true),
        ("conv 1x1 after group norm + SiLU", 1, ConvSpec::POINTWISE, [1, 12, 5, 3], 4, 9, false),
        ("conv 3x3 stride 2 after group norm + SiLU", 3, conv(2, [0, 0, 1, 1], false), [1, 4, 10, 6], 2, 5, false),
        ("conv 3x3 upsample after group norm + SiLU", 3, conv(1, [1, 1, 1, 1], true), [1, 6, 3, 5], 3, 3, false),
        ("conv 3x3 over several channel tiles after group norm + SiLU", 3, ConvSpec::SAME3, [2, 16, 5, 11], 8, 37, false),
        // 28 and 7 Winograd tiles (one band, bands of one tile row): last GEMM tiles of 4 and 1 pixels.
        ("conv 3x3 over 7 × 13 into several channel tiles after group norm + SiLU", 3, ConvSpec::SAME3, [1, 16, 7, 13], 8, 37, false),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 200 + 10 * i as u64;
        let mut w = conv_weights(co, shape[1], k, seed);
        w.insert("g".into(), randn(&[shape[1]], seed + 2));
        w.insert("gb".into(), randn(&[shape[1]], seed + 3));
        // Far from zero mean and unit variance, so a missed normalisation shows.
        let mut inputs = vec![Tensor { shape: shape.to_vec(), data: randn(&shape, seed + 4).data.iter().map(|v| 3.0 * v + 2.0).collect() }];
        if fused {
            inputs.extend([randn(&[shape[0], co], seed + 5), randn(&[shape[0], co, shape[2], shape[3]], seed + 6)]);
        }
        let out_scale = if fused { 1.5 } else { 1.0 };
        cases.push(case(name, Op::NormSiluConv2d { spec, groups, parts: 1, fused, out_scale }, w, inputs));
    }
    // An up block's resnet reads cat([x, skip]) without storing it (`channel_parts`). 5 + 7
    // channels in 4 groups of 3: group 1 (channels 3..6) straddles the two parts.
    let mut w = conv_weights(6, 12, 3, 270);
    w.insert("g".into(), randn(&[12], 272));
    w.insert("gb".into(), randn(&[12], 273));
    let shifted = |t: Tensor| Tensor { shape: t.shape, data: t.data.iter().map(|v| 3.0 * v + 2.0).collect() };
    let ins = vec![shifted(randn(&[2, 5, 6, 7], 274)), shifted(randn(&[2, 7, 6, 7], 275)), randn(&[2, 6], 276), randn(&[2, 6, 6, 7], 277)];
    let op = Op::NormSiluConv2d { spec: ConvSpec::SAME3, groups: 4, parts: 2, fused: true, out_scale: 1.5 };
    cases.push(case("conv 3x3 after group norm + SiLU over two channel parts, fused add+residual+scale", op, w, ins));
    // 37 output channels: a pair of channel tiles (summed over the parts in the registers of the
    // fast engine's paired kernel) and a lone one.
    for (i, (name, k, spec, co)) in [
        ("conv 1x1 over two channel parts", 1, ConvSpec::POINTWISE, 7),
        ("conv 3x3 over two channel parts", 3, ConvSpec::SAME3, 7),
        ("conv 1x1 over two channel parts into three channel tiles", 1, ConvSpec::POINTWISE, 37),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 280 + 10 * i as u64;
        let ins = vec![randn(&[2, 5, 4, 6], seed + 2), randn(&[2, 3, 4, 6], seed + 3)];
        cases.push(case(name, Op::Conv2dParts { spec }, conv_weights(co, 8, k, seed), ins));
    }
    for (i, (shape, groups, silu)) in
        [([2, 12, 5, 7], 3, false), ([1, 16, 3, 5], 4, true), ([3, 6, 23, 19], 2, true)].into_iter().enumerate()
    {
        let c = shape[1];
        let w = named(vec![("g", randn(&[c], 50 + i as u64)), ("b", randn(&[c], 60 + i as u64))]);
        cases.push(case("group_norm", Op::GroupNorm { groups, eps: 1e-5, silu }, w, vec![randn(&shape, 70 + i as u64)]));
    }
    for (i, (silu_in, silu_out)) in [(false, false), (true, false), (false, true)].into_iter().enumerate() {
        let w = named(vec![("w", scaled(randn(&[17, 13], 80 + i as u64), 0.3)), ("b", randn(&[17], 90))]);
        cases.push(case("linear", Op::Linear { silu_in, silu_out }, w, vec![randn(&[3, 13], 95 + i as u64)]));
    }
    // The argument t·freq is formed in f32 from exp(), which WGSL and Rust may round one ulp apart
    // (WGSL allows 3 ulp): at t = 999 one ulp of freq moves the argument by up to 999·2⁻²³ ≈ 1.2e-4
    // radians, so 1.5e-4 × max(=1) is the bound a correct kernel can promise here.
    let t = Tensor { shape: vec![6], data: vec![0.0, 1.0, 17.0, 500.0, 998.0, 999.0] };
    for (dim, flip, shift) in [(32, true, 0.0), (20, false, 1.0), (33, true, 1.0)] {
        let mut c = case("timestep_embedding", Op::TimestepEmbedding { dim, flip, shift }, HashMap::new(), vec![t.clone()]);
        c.tol = 1.5e-4;
        cases.push(c);
    }
    let labels = Tensor { shape: vec![3], data: vec![4.0, 0.0, 2.0] };
    cases.push(case(
        "class_embedding",
        Op::ClassEmbedding,
        named(vec![("table", randn(&[5, 12], 100))]),
        vec![randn(&[3, 12], 101), labels],
    ));
    cases.push(case("affine", Op::Affine { scale: 2.0, shift: -1.0 }, HashMap::new(), vec![randn(&[2, 3, 5, 7], 102)]));
    cases.push(case("concat", Op::Concat, HashMap::new(), vec![randn(&[2, 3, 5, 7], 103), randn(&[2, 5, 5, 7], 104)]));
    for (i, (n, heads, d, h, w)) in [(2, 3, 4, 5, 3), (1, 1, 24, 7, 7), (2, 2, 5, 9, 11)].into_iter().enumerate() {
        let s = [n, heads * d, h, w];
        let ins = vec![randn(&s, 110 + i as u64), randn(&s, 120 + i as u64), randn(&s, 130 + i as u64)];
        cases.push(case("attention", Op::Attention { heads, d }, HashMap::new(), ins));
    }
    cases.extend(breadth_cases());
    cases.extend(classifier_cases());
    cases
}

/// The classifier's ops (pooling and the backward kernels) on odd shapes: windows that drop a
/// trailing row and column, a global mean over a non-square image, groups of several channels.
fn classifier_cases() -> Vec<OpCase> {
    let mut cases = Vec::new();
    for (i, (shape, k)) in [([2, 3, 7, 9], [2, 2]), ([2, 5, 5, 3], [5, 3]), ([1, 4, 11, 6], [3, 2])].into_iter().enumerate() {
        cases.push(case(
            &format!("avg_pool2d {k:?} over {shape:?}"),
            Op::AvgPool2d { k },
            HashMap::new(),
            vec![randn(&shape, 400 + i as u64)],
        ));
        let pooled = [shape[0], shape[1], shape[2] / k[0], shape[3] / k[1]];
        let op = Op::AvgPool2dBackward { k, shape };
        cases.push(case(&format!("avg_pool2d_backward {k:?} into {shape:?}"), op, HashMap::new(), vec![randn(&pooled, 410 + i as u64)]));
    }
    for (i, (shape, groups)) in [([2, 12, 5, 7], 3), ([1, 6, 23, 19], 2), ([3, 8, 1, 3], 4)].into_iter().enumerate() {
        let c = shape[1];
        let w = named(vec![("g", randn(&[c], 420 + i as u64)), ("b", randn(&[c], 425 + i as u64))]);
        let z = Tensor { shape: shape.to_vec(), data: randn(&shape, 430 + i as u64).data.iter().map(|v| 3.0 * v + 2.0).collect() };
        let op = Op::GroupNormSiluBackward { groups, eps: 1e-5 };
        cases.push(case(&format!("group_norm_silu_backward {shape:?} in {groups} groups"), op, w, vec![randn(&shape, 435 + i as u64), z]));
    }
    let target = Tensor { shape: vec![3, 2], data: vec![4.0, 1.0, 0.0, -2.5, 6.0, 0.3] };
    let logits = scaled(randn(&[3, 7], 440), 3.0);
    cases.push(case("log_softmax_backward", Op::LogSoftmaxBackward, HashMap::new(), vec![logits, target]));
    cases
}

fn tensors(bytes: &[u8]) -> HashMap<String, Tensor> {
    let st = safetensors::SafeTensors::deserialize(bytes).expect("fixture parses");
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let b = v.data();
            let data: Vec<f32> = match v.dtype() {
                safetensors::Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                safetensors::Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                d => panic!("unexpected dtype {d:?} in fixture"),
            };
            (name, Tensor { shape: v.shape().to_vec(), data })
        })
        .collect()
}

/// The PyTorch/diffusers cases of `tests/fixtures/ops.{json,safetensors}`, parameters from the JSON.
pub fn fixture_cases(ops_json: &str, ops_safetensors: &[u8]) -> Vec<OpCase> {
    let all = tensors(ops_safetensors);
    let cases: serde_json::Value = serde_json::from_str(ops_json).unwrap();
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let t: HashMap<String, Tensor> =
                all.iter().filter_map(|(k, v)| k.strip_prefix(&format!("{name}.")).map(|s| (s.to_string(), v.clone()))).collect();
            let u = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{name}: {k}")) as usize;
            let f = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("{name}: {k}")) as f32;
            let b = |k: &str| c[k].as_bool().unwrap_or_else(|| panic!("{name}: {k}"));
            let wb = |w: &str, bias: &str| named(vec![("w", t[w].clone()), ("b", t[bias].clone())]);
            let prefixed = |p: &str| -> HashMap<String, Tensor> {
                t.iter()
                    .filter(|(k, _)| !["x", "temb", "out"].contains(&k.as_str()))
                    .map(|(k, v)| {
                        let mut v = v.clone();
                        if p == "a" && v.shape.len() == 2 && k.contains("to_") {
                            v.shape.extend([1, 1]); // Linear over channels = 1x1 conv
                        }
                        (format!("{p}.{k}"), v)
                    })
                    .collect()
            };
            let (op, weights, inputs) = match c["op"].as_str().unwrap() {
                "conv2d" => {
                    let pad: Vec<usize> = c["pad"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                    let spec = ConvSpec { stride: u("stride"), pad: [pad[0], pad[1], pad[2], pad[3]], upsample: false };
                    (Op::Conv2d { spec, fused: false, out_scale: 1.0 }, wb("weight", "bias"), vec![t["x"].clone()])
                }
                "upsample" => (
                    Op::Conv2d { spec: ConvSpec { upsample: true, ..ConvSpec::SAME3 }, fused: false, out_scale: 1.0 },
                    wb("conv.weight", "conv.bias"),
                    vec![t["x"].clone()],
                ),
                "group_norm" => (
                    Op::GroupNorm { groups: u("groups"), eps: f("eps"), silu: b("silu") },
                    named(vec![("g", t["weight"].clone()), ("b", t["bias"].clone())]),
                    vec![t["x"].clone()],
                ),
                "linear" => (Op::Linear { silu_in: b("silu_in"), silu_out: b("silu_out") }, wb("weight", "bias"), vec![t["x"].clone()]),
                "timestep_embedding" => (
                    Op::TimestepEmbedding { dim: u("dim"), flip: b("flip_sin_to_cos"), shift: f("downscale_freq_shift") },
                    HashMap::new(),
                    vec![t["t"].clone()],
                ),
                "attention" => (
                    Op::AttentionBlock(AttentionSpec {
                        prefix: "a".into(),
                        channels: t["x"].shape[1],
                        heads: u("heads"),
                        dim_head: u("dim_head"),
                        groups: Some(u("groups")),
                        eps: f("eps"),
                        rescale: f("rescale"),
                    }),
                    prefixed("a"),
                    vec![t["x"].clone()],
                ),
                "resnet" => (
                    Op::Resnet(resnet_spec("r", &t["x"], t["conv1.weight"].shape[0], u("groups"), f("eps"), f("output_scale_factor"))),
                    prefixed("r"),
                    vec![t["x"].clone(), t["temb"].clone()],
                ),
                "avg_pool2d" => (Op::AvgPool2d { k: [u("kh"), u("kw")] }, HashMap::new(), vec![t["x"].clone()]),
                "avg_pool2d_backward" => {
                    let x = &t["x"].shape;
                    let shape = [x[0], x[1], x[2], x[3]];
                    (Op::AvgPool2dBackward { k: [u("kh"), u("kw")], shape }, HashMap::new(), vec![t["g"].clone()])
                }
                "group_norm_silu_backward" => (
                    Op::GroupNormSiluBackward { groups: u("groups"), eps: f("eps") },
                    named(vec![("g", t["weight"].clone()), ("b", t["bias"].clone())]),
                    vec![t["g"].clone(), t["x"].clone()],
                ),
                "log_softmax_backward" => (Op::LogSoftmaxBackward, HashMap::new(), vec![t["logits"].clone(), t["target"].clone()]),
                other => panic!("unknown op {other}"),
            };
            let tol = if matches!(op, Op::TimestepEmbedding { .. }) { 1.5e-4 } else { KERNEL_TOL };
            OpCase { name, op, weights, inputs, expected: Some(t["out"].clone()), tol }
        })
        .collect()
}

/// |got − want| ≤ tol · max(floor, max|want|); the message names the case and the numbers.
pub fn check_close(what: &str, got: &Tensor, want: &Tensor, tol: f32, floor: f32) -> std::result::Result<(), String> {
    if got.shape != want.shape {
        return Err(format!("{what}: shape {:?} vs {:?}", got.shape, want.shape));
    }
    let scale = want.max_abs().max(floor);
    let diff = got.max_abs_diff(want);
    if diff <= tol * scale {
        Ok(())
    } else {
        Err(format!("{what}: max |diff| = {diff:e} > {tol:e} × {scale}"))
    }
}

/// The fused scheduler-step kernel (DDIM with eta > 0, v-prediction, clipping, guidance) against the
/// CPU engine's step rule: 3 steps of the class fixture model through the run layer on both engines.
pub async fn scheduler_step_gpu_vs_cpu(gpu: ddim_webgpu::gpu::GpuDevice, model: &ddim_webgpu::Model) -> std::result::Result<(), String> {
    use ddim_webgpu::run::{run_to_end, ClassLabels, CpuEngine, RunOptions};
    let cfg = ddim_webgpu::sampler::SchedulerConfig::from_json(r#"{"clip_sample": true, "prediction_type": "v_prediction"}"#).unwrap();
    let plan = RunOptions::new().scheduler(cfg).steps(3).eta(0.7).batch(3).labels(ClassLabels::Each(vec![0, 1, 2])).guidance(1.5);
    let plan = plan.seed(9).plan(model).unwrap();
    let cpu = run_to_end(&mut CpuEngine::new(model), &plan).await.unwrap();
    let got = run_to_end(&mut ddim_webgpu::gpu::engine::GpuEngine::new(gpu, model).unwrap(), &plan).await.unwrap();
    check_close("scheduler step (gpu vs cpu, v-pred, eta 0.7, cfg 1.5)", &got, &cpu, 1e-4, 1.0)
}
