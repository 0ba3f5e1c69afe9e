//! conv2d on the GPU (`shaders/conv2d_gemm.wgsl`, `conv2d_winograd.wgsl`, both after the shared
//! `conv2d.wgsl`): im2col + a register-tiled GEMM over packed weights,
//! or, for 3×3 stride-1 convs where the adapter runs them, Winograd F(2×2, 3×3) (input transform,
//! 16 GEMMs, output transform). Either fuses the epilogue (bias, time-embedding add, residual,
//! scale) and optionally silu(group_norm(x)) into the patch reads (`norm_silu_conv2d`). Which
//! algorithm and tile run is `ConvPolicy`'s (on `GpuDevice`); the chunking keeps scratch within
//! its patch budget.

use super::{dim32, groups_1d};
use crate::error::{Error, Result};
use crate::gpu::pool::{tensor_bytes, GpuTensor};
use crate::gpu::recorder::GpuRecorder;
use crate::gpu::{compute_pipeline, is_conv_gemm, GpuDevice, SHADERS};
use crate::kernel_params;
use crate::model::ConvArgs;

kernel_params!(Conv2dParams for "conv2d" {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, k: u32,
    stride: u32, pad_t: u32, pad_l: u32, up: u32,
    has_add: u32, has_res: u32, out_scale: f32, p0: u32,
    pc: u32, groups: u32, wino: u32, _p2: u32,
});

/// silu(group_norm(x)) in front of a conv (`norm_silu_conv2d`): the group statistics
/// (`group_norm::group_moments`), γ and β.
#[derive(Clone, Copy)]
pub struct PreNorm<'t> {
    pub moments: &'t GpuTensor,
    pub gamma: &'t GpuTensor,
    pub beta: &'t GpuTensor,
    pub groups: usize,
}

/// conv2d of x, or of silu(group_norm(x)) where `pre` is given.
pub fn conv2d(r: &mut GpuRecorder, x: &GpuTensor, pre: Option<PreNorm>, conv: ConvArgs<'_, GpuTensor>) -> Result<GpuTensor> {
    let ConvArgs { weight: w, bias: b, spec, chan_add, residual, out_scale } = conv;
    let [n, ci, h, wd] = x.dims();
    let [co, wci, k, _] = w.dims();
    if wci != ci {
        return Err(Error::Input(format!("conv2d: weight {:?} does not fit input {:?}", w.shape, x.shape)));
    }
    let (oh, ow) = spec.out_size(h, wd, k).ok_or_else(|| Error::Input(format!("conv2d: input {h}x{wd} too small")))?;
    let out = r.alloc(vec![n, co, oh, ow], "conv2d output")?;
    let params = Conv2dParams {
        n: dim32(n),
        ci: dim32(ci),
        h: dim32(h),
        w: dim32(wd),
        co: dim32(co),
        oh: dim32(oh),
        ow: dim32(ow),
        k: dim32(k),
        stride: dim32(spec.stride),
        pad_t: dim32(spec.pad[0]),
        pad_l: dim32(spec.pad[1]),
        up: spec.upsample as u32,
        has_add: chan_add.is_some() as u32,
        has_res: residual.is_some() as u32,
        out_scale,
        ..Default::default()
    };
    let dummy = r.unused();
    let add = chan_add.map_or(&dummy, |t| t.buffer());
    let res = residual.map_or(&dummy, |t| t.buffer());
    if k == 3 && spec.stride == 1 && r.gpu.winograd_convs() && !r.weights.f16 {
        if let Some(tiles) = winograd_chunk(r.gpu, n, ci, co) {
            let epilogue = [(2, b.buffer()), (3, add), (4, res), (5, out.buffer())];
            conv_winograd(r, x, pre, w, &epilogue, params, tiles)?;
            return Ok(out);
        }
    }
    // Chunks of output pixels whose patches fit one buffer (one chunk but for very large convs).
    let (rows, pix) = (ci * k * k, oh * ow);
    let col_bytes = |pixels: usize| tensor_bytes(&[n, rows, pixels.next_multiple_of(8)]);
    let cap = r.gpu.max_buffer_bytes().min(r.gpu.conv.col_max_bytes);
    let per_pixel8 = col_bytes(8);
    if per_pixel8 > cap {
        return Err(Error::Limits(format!(
            "conv2d: 8 pixels of {ci}×{k}×{k} patches need {per_pixel8} bytes; this adapter allows {cap} per buffer"
        )));
    }
    let chunk = ((cap / per_pixel8) as usize * 8).min(pix.next_multiple_of(8));
    // A 1×1 conv over a plane of a multiple of 8 pixels, in one chunk, reads its input as the col buffer.
    let plain = pre.is_none() && k == 1 && spec.stride == 1 && spec.pad == [0; 4] && !spec.upsample && pix % 8 == 0 && chunk >= pix;
    for p0 in (0..pix).step_by(chunk) {
        let pc = chunk.min(pix - p0);
        let params = Conv2dParams { p0: dim32(p0), pc: dim32(pc), ..params };
        let col = if plain {
            x.clone()
        } else {
            let col = r.alloc_scratch(vec![n, rows, pc.next_multiple_of(8)], "conv2d im2col")?;
            record_patches(r, "conv2d_gemm.im2col", x, pre, &col, params, n * ci * pc.next_multiple_of(8) / 4);
            col
        };
        let (gemm, invocations) = r.gpu.conv_gemm_entry(n, co, pc.next_multiple_of(8), r.weights.f16);
        r.record(
            gemm,
            &[(0, col.buffer()), (1, w.buffer()), (2, b.buffer()), (3, add), (4, res), (5, out.buffer())],
            &params,
            6,
            groups_1d(invocations, r.gpu.conv.gemm_workgroup as usize),
        );
        r.count_flops(2.0 * (n * co.next_multiple_of(8) * rows * pc.next_multiple_of(8)) as f64);
    }
    Ok(out)
}

/// `kernel` (conv2d_gemm.im2col, conv2d_winograd.winograd_input) of x into `out`, or of silu(group_norm(x))
/// (`{kernel}_norm`) where `pre` is given; `invocations` of 4 pixels or tiles each.
fn record_patches(
    r: &mut GpuRecorder,
    kernel: &str,
    x: &GpuTensor,
    pre: Option<PreNorm>,
    out: &GpuTensor,
    params: Conv2dParams,
    invocations: usize,
) {
    let groups = groups_1d(invocations, 64);
    match pre {
        None => r.record(kernel, &[(0, x.buffer()), (5, out.buffer())], &params, 6, groups),
        Some(norm) => {
            let params = Conv2dParams { groups: dim32(norm.groups), ..params };
            let bufs = [(0, x.buffer()), (1, norm.gamma.buffer()), (2, norm.beta.buffer()), (3, norm.moments.buffer()), (5, out.buffer())];
            r.record(&format!("{kernel}_norm"), &bufs, &params, 6, groups);
        }
    }
}

/// Tiles per chunk of a Winograd conv (a multiple of 8), or None where its scratch would not
/// fit the conv's patch budget (`conv_col_max_bytes`): the transformed weights U (16·CO8·CI)
/// take at most half, the transformed patches V (16·N·CI per tile) and products M (16·N·CO8
/// per tile) a quarter each, so the budget bounds the memory as im2col's patches do.
fn winograd_chunk(gpu: &GpuDevice, n: usize, ci: usize, co: usize) -> Option<usize> {
    let cap = gpu.max_buffer_bytes().min(gpu.conv.col_max_bytes);
    let pow2 = |b: u64| b.checked_next_power_of_two().unwrap_or(u64::MAX);
    if pow2(tensor_bytes(&[16, co.next_multiple_of(8), ci])) > cap / 2 {
        return None;
    }
    let per_tile = tensor_bytes(&[16, n, ci.max(co.next_multiple_of(8))]);
    // Power-of-two rounding of the scratch buffers can double them: count it.
    let tiles = ((prev_pow2(cap / 4) / per_tile) as usize).min(gpu.conv.winograd_tiles) / 8 * 8;
    (tiles >= 8).then_some(tiles)
}

/// A 3×3 stride-1 conv as Winograd F(2×2, 3×3) (conv2d_winograd.wgsl): the weights transformed into
/// scratch, then per chunk of 2×2 output tiles the input transform, 16 GEMMs (`gemm` with
/// `wino`) and the output transform with the epilogue (`epilogue`: bindings 2–5).
#[allow(clippy::too_many_arguments)]
fn conv_winograd(
    r: &mut GpuRecorder,
    x: &GpuTensor,
    pre: Option<PreNorm>,
    w: &GpuTensor,
    epilogue: &[(u32, &wgpu::Buffer)],
    params: Conv2dParams,
    chunk: usize,
) -> Result<()> {
    let (n, ci, co) = (params.n as usize, params.ci as usize, params.co as usize);
    let co8 = co.next_multiple_of(8);
    let tiles = (params.oh as usize).div_ceil(2) * (params.ow as usize).div_ceil(2);
    let scratch;
    let u = match &w.winograd {
        Some(kept) => kept,
        None => {
            scratch = r.alloc_scratch(vec![16, co8, ci], "conv2d winograd weights")?;
            r.record("conv2d_winograd.winograd_weights", &[(1, w.buffer()), (5, scratch.buffer())], &params, 6, groups_1d(co8 * ci, 64));
            scratch.buffer()
        }
    };
    for t0 in (0..tiles).step_by(chunk) {
        let tc = chunk.min(tiles - t0);
        let params = Conv2dParams { p0: dim32(t0), pc: dim32(tc), ..params };
        let tc8 = tc.next_multiple_of(8);
        let v = r.alloc_scratch(vec![16, n, ci, tc8], "conv2d winograd patches")?;
        record_patches(r, "conv2d_winograd.winograd_input", x, pre, &v, params, n * ci * tc8 / 4);
        let m = r.alloc_scratch(vec![16, n, co8, tc8], "conv2d winograd products")?;
        let gemm = Conv2dParams { wino: 1, ..params };
        let invocations = 16 * n * co8 / 8 * tc8 / 8;
        let unused = r.unused();
        let bufs = [(0, v.buffer()), (1, u), (2, &unused), (3, &unused), (4, &unused), (5, m.buffer())];
        r.record("conv2d_gemm.gemm", &bufs, &gemm, 6, groups_1d(invocations, r.gpu.conv.gemm_workgroup as usize));
        r.count_flops(2.0 * (16 * n * co8 * ci * tc8) as f64);
        drop(v);
        let mut bufs = vec![(0, m.buffer())];
        bufs.extend_from_slice(epilogue);
        r.record("conv2d_winograd.winograd_output", &bufs, &params, 6, groups_1d(n * co * tc8 / 4, 64));
    }
    Ok(())
}

/// The largest power of two ≤ b (b ≥ 1).
fn prev_pow2(b: u64) -> u64 {
    1 << (63 - b.max(1).leading_zeros())
}

/// conv2d_gemm's module with its packed weights stored as f16 (`GpuDevice::set_f16_weights`): the GEMMs
/// load them through `wload`, which converts each vec4 to f32.
fn conv2d_f16_source() -> String {
    let (_, source, _) = SHADERS.iter().find(|(name, ..)| *name == "conv2d_gemm").expect("conv2d_gemm is in SHADERS");
    let swaps = [
        ("var<storage, read> weight: array<vec4<f32>>;", "var<storage, read> weight: array<vec4<f16>>;"),
        ("    return weight[i];", "    return vec4<f32>(weight[i]);"),
    ];
    let mut f16 = format!("enable f16;\n{source}");
    for (from, to) in swaps {
        assert_eq!(f16.matches(from).count(), 1, "conv2d.wgsl's `{from}` changed: update conv2d_f16_source");
        f16 = f16.replace(from, to);
    }
    f16
}

impl GpuDevice {
    /// Sets the conv GEMM's tile (8: `gemm`, 4: `gemm4x4`) and rebuilds conv2d_gemm.wgsl's GEMM entries
    /// with `GEMM_WG` = `workgroup` invocations per workgroup (the adapter's choice is made in
    /// `from_device`; the tests run each). A pipeline error shows in `check`.
    pub fn set_gemm(&mut self, tile: u32, workgroup: u32) {
        assert!(tile == 4 || tile == 8, "conv2d_gemm.wgsl has 4×4 and 8×8 GEMM tiles, not {tile}");
        let (_, source, entries) = SHADERS.iter().find(|(name, ..)| *name == "conv2d_gemm").expect("conv2d_gemm is in SHADERS");
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("conv2d_gemm"),
            source: wgpu::ShaderSource::Wgsl((*source).into()),
        });
        for entry in entries.iter().filter(|e| is_conv_gemm("conv2d_gemm", e)) {
            let pipeline = compute_pipeline(&self.device, &module, "conv2d_gemm", entry, &[("GEMM_WG", workgroup as f64)]);
            self.pipelines.insert(format!("conv2d_gemm.{entry}"), pipeline);
        }
        self.conv.gemm_workgroup = workgroup;
        self.conv.gemm_tile = tile;
        if self.f16_weights {
            self.build_f16_gemms();
        }
    }

    /// Stores the conv weights of models uploaded from now on as f16 (`true`), halving their
    /// memory and the bandwidth the GEMMs spend on them; the arithmetic stays f32, and the
    /// Winograd path is not taken (its transforms read f32 weights). For devices with the
    /// `shader-f16` feature only (not SwiftShader). Not the default: rounding the weights moves a
    /// conv's output by ~2e-4 of its largest value (the random op cases), where the f32 engine
    /// matches diffusers to ~6e-6 (the bundled model's 50-step samples moved by ≤ 3e-5).
    pub fn set_f16_weights(&mut self, on: bool) -> Result<()> {
        if on && !self.device.features().contains(wgpu::Features::SHADER_F16) {
            return Err(Error::Gpu(format!("f16 weights need the shader-f16 feature, which {} does not have", self.adapter_name())));
        }
        self.f16_weights = on;
        if on {
            self.build_f16_gemms();
        }
        Ok(())
    }

    /// conv2d_f16's GEMM pipelines ("conv2d_gemm_f16.gemm", "conv2d_gemm_f16.gemm4x4"), in the current `GEMM_WG`.
    fn build_f16_gemms(&mut self) {
        let (_, _, entries) = SHADERS.iter().find(|(name, ..)| *name == "conv2d_gemm").expect("conv2d_gemm is in SHADERS");
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("conv2d_gemm_f16"),
            source: wgpu::ShaderSource::Wgsl(conv2d_f16_source().into()),
        });
        for entry in entries.iter().filter(|e| is_conv_gemm("conv2d_gemm", e)) {
            let pipeline =
                compute_pipeline(&self.device, &module, "conv2d_gemm_f16", entry, &[("GEMM_WG", self.conv.gemm_workgroup as f64)]);
            self.pipelines.insert(format!("conv2d_gemm_f16.{entry}"), pipeline);
        }
    }

    /// The conv GEMM pipeline's name and its invocations for `n` items, `co` output channels and
    /// `pc8` pixels (a multiple of 8).
    pub(crate) fn conv_gemm_entry(&self, n: usize, co: usize, pc8: usize, f16: bool) -> (&'static str, usize) {
        let t = self.conv.gemm_tile as usize;
        let name = match (t == 4, f16) {
            (true, false) => "conv2d_gemm.gemm4x4",
            (false, false) => "conv2d_gemm.gemm",
            (true, true) => "conv2d_gemm_f16.gemm4x4",
            (false, true) => "conv2d_gemm_f16.gemm",
        };
        (name, n * co.next_multiple_of(8) / t * pc8 / t)
    }

    /// Whether 3×3 stride-1 convs over f32 weights run as Winograd: `conv_winograd`, on the 8×8
    /// GEMM (the only one batched over the 16 transforms).
    pub(crate) fn winograd_convs(&self) -> bool {
        self.conv.winograd && self.conv.gemm_tile == 8
    }

    /// Which conv2d kernels run, for reports.
    pub fn conv_variant(&self) -> String {
        let t = self.conv.gemm_tile;
        let wino =
            if self.winograd_convs() && !self.f16_weights { "3×3 stride-1 convs as Winograd F(2×2, 3×3), the others as " } else { "" };
        let f16 = if self.f16_weights { "f16 " } else { "" };
        format!(
            "{wino}im2col + {t}×{t}-register GEMM over packed {f16}weights in workgroups of {}, in chunks where the patches exceed {} MiB",
            self.conv.gemm_workgroup,
            self.conv.col_max_bytes.min(self.max_buffer_bytes()) >> 20
        )
    }
}
