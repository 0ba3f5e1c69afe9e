//! `GpuRecorder`: the U-Net ops as WGSL dispatches. Calling an op does not run it: it allocates the
//! output from the pool, builds the bind group and appends a `Dispatch`; `program` replays the list.
//! A tensor's buffer is free for later ops of the same recording once its last handle drops —
//! safe because dispatches run in recording order. A recorded forward is planned (`Pool::plan`):
//! traced once for every activation's size and lifetime, then recorded over shared buffers.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::params::KernelParams;
use super::{grid, GpuDevice};
use crate::error::{Error, Result};
use crate::kernel_params;
use crate::model::{ConvSpec, GroupNorm, Model, UNetOps};

/// Where a recording's activation buffers come from.
#[derive(Default)]
pub struct Pool {
    /// Free buffers by size. A request takes the smallest free buffer of 1–3× its size (kernels
    /// read sizes from their params, never from the buffer), so one buffer serves tensors of many
    /// sizes; the bound keeps a small tensor from taking a buffer a large one will need next.
    free: BTreeMap<u64, Vec<wgpu::Buffer>>,
    /// Bytes of all buffers the pool ever created (activation memory).
    pub allocated: u64,
    mode: Mode,
}

/// How the pool answers a request.
#[derive(Default)]
enum Mode {
    /// From the free buffers (op tests, anything recorded without a plan).
    #[default]
    Reuse,
    /// A trace (`Pool::trace`): each request gets a tiny buffer of its own (the recording is thrown
    /// away) and its size and lifetime, in allocation/drop events, are noted.
    Trace { clock: usize, sizes: Vec<u64>, lives: Vec<(usize, usize)> },
    /// A planned recording (`Pool::plan`): request i gets the i-th buffer.
    Planned(std::collections::VecDeque<(u64, wgpu::Buffer)>),
}

/// The buffers of a planned recording that go back to the free list once it is recorded (all but
/// those of the tensors the recording keeps, its output).
pub struct Plan {
    shared: Vec<(u64, wgpu::Buffer)>,
}

/// A buffer of a plan: its size (its largest tensor's), whether it holds an output, and the
/// lifetimes (allocation, drop) of the tensors it serves.
struct PlannedBuffer {
    size: u64,
    output: bool,
    serves: Vec<(usize, usize)>,
}

/// Lifetime bound of a tensor still alive when the plan is made (the recording's output).
const ALIVE: usize = usize::MAX;

impl Pool {
    /// Starts tracing the requests of a recording.
    pub fn trace(&mut self) {
        self.mode = Mode::Trace { clock: 0, sizes: Vec::new(), lives: Vec::new() };
    }

    /// Ends a trace and plans the same recording again: tensors whose lifetimes do not overlap
    /// share a buffer, assigned largest first to the smallest planned buffer that fits (a
    /// "greedy by size" plan). Activation memory then stays near the most that is alive at once,
    /// where reuse in recording order strands buffers of the wrong size. Tensors alive at the end
    /// get buffers of their own.
    pub fn plan(&mut self, gpu: &GpuDevice) -> Result<Plan> {
        let Mode::Trace { sizes, lives, .. } = std::mem::take(&mut self.mode) else {
            return Err(Error::Gpu("planning a recording that was not traced".into()));
        };
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
        let mut slots: Vec<PlannedBuffer> = Vec::new();
        let mut slot_of = vec![0; sizes.len()];
        for i in order {
            let (start, end) = lives[i];
            let fits = |b: &PlannedBuffer| {
                b.size >= sizes[i] && !b.output && end != ALIVE && b.serves.iter().all(|&(s, e)| end <= s || e <= start)
            };
            let best = slots.iter().enumerate().filter(|(_, b)| fits(b)).min_by_key(|(_, b)| b.size).map(|(k, _)| k);
            let k = best.unwrap_or_else(|| {
                slots.push(PlannedBuffer { size: sizes[i], output: end == ALIVE, serves: Vec::new() });
                slots.len() - 1
            });
            slots[k].serves.push((start, end));
            slot_of[i] = k;
        }
        let mut buffers = Vec::with_capacity(slots.len());
        for b in &slots {
            buffers.push(self.take(gpu, b.size, "planned activation")?);
        }
        let per_request = slot_of.iter().map(|&k| buffers[k].clone()).collect();
        let shared = buffers.into_iter().zip(&slots).filter(|(_, slot)| !slot.output).map(|(b, _)| b).collect();
        self.mode = Mode::Planned(per_request);
        Ok(Plan { shared })
    }

    /// Ends a planned recording; its buffers but the outputs' are free for other recordings (one
    /// recording's forward never runs interleaved with another's).
    pub fn finish(&mut self, plan: Plan) -> Result<()> {
        let left = match std::mem::take(&mut self.mode) {
            Mode::Planned(left) => left.len(),
            _ => 0,
        };
        for (size, b) in plan.shared {
            self.free.entry(size).or_default().push(b);
        }
        if left > 0 {
            return Err(Error::Gpu(format!("the planned recording made {left} fewer buffer requests than its trace")));
        }
        Ok(())
    }

    /// The smallest free buffer of 1–3× `bytes`, or a new one.
    fn take(&mut self, gpu: &GpuDevice, bytes: u64, what: &str) -> Result<(u64, wgpu::Buffer)> {
        let fit = self.free.range_mut(bytes..=bytes.saturating_mul(3)).find(|(_, v)| !v.is_empty());
        if let Some((size, b)) = fit.and_then(|(&size, v)| v.pop().map(|b| (size, b))) {
            return Ok((size, b));
        }
        let b = gpu.storage_buffer(bytes, what)?;
        self.allocated += bytes;
        Ok((bytes, b))
    }
}

/// Where a tensor's buffer came from, and what its drop does.
enum Origin {
    /// Back to the free list.
    Pooled,
    /// Notes the end of traced request i.
    Traced(usize),
    /// Nothing: the plan owns the buffer.
    Planned,
}

struct Slot {
    buffer: wgpu::Buffer,
    bytes: u64,
    pool: Option<(Rc<RefCell<Pool>>, Origin)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((pool, origin)) = &self.pool else { return };
        let mut pool = pool.borrow_mut();
        match (origin, &mut pool.mode) {
            (Origin::Pooled, _) => pool.free.entry(self.bytes).or_default().push(self.buffer.clone()),
            (Origin::Traced(i), Mode::Trace { clock, lives, .. }) => {
                lives[*i].1 = *clock;
                *clock += 1;
            }
            _ => {}
        }
    }
}

/// A tensor on the GPU: a buffer (pooled, or owned for weights and inputs) and its shape.
#[derive(Clone)]
pub struct GpuTensor {
    slot: Rc<Slot>,
    pub shape: Vec<usize>,
    /// A 3×3 conv weight's Winograd transform U [16][O/8][I][8] (`pack_winograd_weight`), where
    /// the model's are kept (`GpuWeights::upload_tensors`).
    winograd: Option<wgpu::Buffer>,
}

impl GpuTensor {
    /// A tensor that owns its buffer (weights, program inputs and outputs).
    pub fn owned(buffer: wgpu::Buffer, shape: Vec<usize>) -> Self {
        let bytes = buffer.size();
        GpuTensor { slot: Rc::new(Slot { buffer, bytes, pool: None }), shape, winograd: None }
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.slot.buffer
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dims(&self) -> [usize; 4] {
        let mut d = [1usize; 4];
        for (i, s) in self.shape.iter().take(4).enumerate() {
            d[i] = *s;
        }
        d
    }
}

/// The model's weights, uploaded once.
pub struct GpuWeights {
    pub tensors: HashMap<String, GpuTensor>,
    pub bytes: u64,
    /// Conv weights stored as f16 (`GpuDevice::f16_weights` at upload).
    pub f16: bool,
}

impl GpuWeights {
    pub fn upload(gpu: &GpuDevice, model: &Model) -> Result<Self> {
        Self::upload_tensors(gpu, &model.weights.tensors)
    }

    pub fn upload_tensors(gpu: &GpuDevice, named: &HashMap<String, crate::Tensor>) -> Result<Self> {
        // Every tensor is checked against the limits before the first buffer is made.
        let mut sorted: Vec<_> = named.iter().collect();
        sorted.sort_by_key(|(name, _)| name.as_str());
        let f16 = gpu.f16_weights;
        for (name, t) in &sorted {
            let bytes = if t.shape.len() == 4 { packed_conv_len(&t.shape) * if f16 { 2 } else { 4 } } else { t.data.len() * 4 };
            gpu.check_buffer_bytes(bytes as u64, &format!("weight `{name}`"))?;
        }
        // Where the adapter runs Winograd convs and all 3×3 weights' transforms fit the budget,
        // they are made once here instead of in scratch at every forward.
        let is_3x3 = |t: &crate::Tensor| t.shape.len() == 4 && t.shape[2] == 3 && t.shape[3] == 3;
        let winograd_bytes: u64 = sorted.iter().filter(|(_, t)| is_3x3(t)).map(|(_, t)| 4 * winograd_len(&t.shape) as u64).sum();
        let keep_winograd = gpu.winograd_convs() && !f16 && winograd_bytes <= gpu.winograd_resident_bytes;
        let mut tensors = HashMap::new();
        let mut bytes = 0;
        for (name, t) in sorted {
            // 4-D weights are conv kernels, and conv2d reads them packed.
            let buf = match (t.shape.len() == 4, f16) {
                (true, false) => gpu.upload(&pack_conv_weight(t), name)?,
                (true, true) => gpu.upload_f16(&pack_conv_weight(t), name)?,
                (false, _) => gpu.upload(&t.data, name)?,
            };
            bytes += buf.size();
            let mut tensor = GpuTensor::owned(buf, t.shape.clone());
            if keep_winograd && is_3x3(t) {
                let u = gpu.upload(&pack_winograd_weight(t), name)?;
                bytes += u.size();
                tensor.winograd = Some(u);
            }
            tensors.insert(name.clone(), tensor);
        }
        Ok(GpuWeights { tensors, bytes, f16 })
    }
}

/// A conv weight [O, I, K, K] as conv2d.wgsl reads it: [O/8][I][K][K][8], output channels
/// innermost in blocks of 8 (zero-padded), so one (i, ky, kx) is two vec4 loads.
pub fn pack_conv_weight(t: &crate::Tensor) -> Vec<f32> {
    let rest = t.shape[1..].iter().product::<usize>();
    let mut packed = vec![0.0; packed_conv_len(&t.shape)];
    if rest == 0 {
        return packed;
    }
    for (oc, row) in t.data.chunks_exact(rest).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            packed[((oc / 8) * rest + j) * 8 + oc % 8] = v;
        }
    }
    packed
}

/// A 3×3 conv weight [O, I, 3, 3] as Winograd F(2×2, 3×3) multiplies it: U = G g Gᵀ per (o, i),
/// G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1], as [16][O/8][I][8] (conv2d.wgsl's `winograd_weights`
/// makes the same in scratch where it is not kept).
pub fn pack_winograd_weight(t: &crate::Tensor) -> Vec<f32> {
    let (co, ci) = (t.shape[0], t.shape[1]);
    let step = co.next_multiple_of(8) * ci;
    let mut u = vec![0.0; winograd_len(&t.shape)];
    for (oi, k) in t.data.chunks_exact(9).enumerate() {
        let (o, i) = (oi / ci, oi % ci);
        let at = ((o / 8) * ci + i) * 8 + o % 8;
        for (pos, v) in crate::fast::winograd::transform_weight(k).into_iter().enumerate() {
            u[at + pos * step] = v;
        }
    }
    u
}

/// Floats in a Winograd-transformed 3×3 weight: 16 per (o, i), output channels in blocks of 8.
fn winograd_len(shape: &[usize]) -> usize {
    16 * shape[0].next_multiple_of(8) * shape[1]
}

/// Floats in a packed conv weight: output channels rounded up to a block of 8.
fn packed_conv_len(shape: &[usize]) -> usize {
    shape[0].next_multiple_of(8) * shape[1..].iter().product::<usize>()
}

/// The largest power of two ≤ b (b ≥ 1).
fn prev_pow2(b: u64) -> u64 {
    1 << (63 - b.max(1).leading_zeros())
}

/// Bytes of an f32 tensor of `shape` (at least 16), in u64 and saturating: on wasm32 a large batch
/// overflows usize before the limit check.
fn tensor_bytes(shape: &[usize]) -> u64 {
    shape.iter().fold(4u64, |a, &d| a.saturating_mul(d as u64)).max(16)
}

/// One recorded kernel launch.
pub struct Dispatch {
    /// "file.entry" of the kernel (profiles group by it).
    pub kernel: String,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
}

pub struct GpuRecorder<'a> {
    pub gpu: &'a GpuDevice,
    weights: &'a GpuWeights,
    pool: Rc<RefCell<Pool>>,
    pub dispatches: Vec<Dispatch>,
    dummy: wgpu::Buffer,
}

impl<'a> GpuRecorder<'a> {
    pub fn new(gpu: &'a GpuDevice, weights: &'a GpuWeights, pool: Rc<RefCell<Pool>>) -> Result<Self> {
        let dummy = gpu.storage_buffer(16, "unused binding")?;
        Ok(GpuRecorder { gpu, weights, pool, dispatches: Vec::new(), dummy })
    }

    /// An activation tensor from the pool.
    pub fn alloc(&mut self, shape: Vec<usize>, what: &str) -> Result<GpuTensor> {
        let bytes = tensor_bytes(&shape);
        self.alloc_bytes(shape, bytes, what)
    }

    /// A transient buffer (im2col patches) of at least the shape's size, rounded up to a power of
    /// two: the pool reuses buffers by exact size, so the many patch sizes of a U-Net share a few.
    fn alloc_scratch(&mut self, shape: Vec<usize>, what: &str) -> Result<GpuTensor> {
        let bytes = tensor_bytes(&shape);
        let rounded = bytes.checked_next_power_of_two().unwrap_or(bytes).min(self.gpu.max_buffer_bytes().max(bytes));
        self.alloc_bytes(shape, rounded, what)
    }

    fn alloc_bytes(&mut self, shape: Vec<usize>, bytes: u64, what: &str) -> Result<GpuTensor> {
        let mut pool = self.pool.borrow_mut();
        let (bytes, buffer, origin) = match &mut pool.mode {
            Mode::Reuse => {
                let (size, b) = pool.take(self.gpu, bytes, what)?;
                (size, b, Origin::Pooled)
            }
            Mode::Trace { clock, sizes, lives } => {
                // Its own buffer, so a bind group never sees one buffer as both input and output.
                let b = self.gpu.storage_buffer(256, "traced activation")?;
                sizes.push(bytes);
                lives.push((*clock, ALIVE));
                *clock += 1;
                (bytes, b, Origin::Traced(sizes.len() - 1))
            }
            Mode::Planned(next) => match next.pop_front() {
                Some((size, b)) if size >= bytes => (size, b, Origin::Planned),
                _ => return Err(Error::Gpu(format!("the planned recording diverged from its trace at {what}"))),
            },
        };
        drop(pool);
        Ok(GpuTensor { slot: Rc::new(Slot { buffer, bytes, pool: Some((self.pool.clone(), origin)) }), shape, winograd: None })
    }

    /// Records `kernel` ("file.entry") with buffers at their bindings and `params` at the last binding.
    pub fn record<P: KernelParams>(
        &mut self,
        kernel: &str,
        buffers: &[(u32, &wgpu::Buffer)],
        params: &P,
        params_binding: u32,
        groups: [u32; 3],
    ) {
        debug_assert!(kernel.starts_with(P::SHADER), "{kernel} recorded with the params of {}", P::SHADER);
        let uniform = self.gpu.params(params);
        let mut entries = buffers.to_vec();
        entries.push((params_binding, &uniform));
        let bind_group = self.gpu.bind(kernel, &entries);
        self.dispatches.push(Dispatch { kernel: kernel.to_string(), pipeline: self.gpu.pipeline(kernel).clone(), bind_group, groups });
    }
}

/// A dimension as the u32 a kernel reads.
fn dim32(v: usize) -> u32 {
    v as u32
}

kernel_params!(Conv2dParams for "conv2d" {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, k: u32,
    stride: u32, pad_t: u32, pad_l: u32, up: u32,
    has_add: u32, has_res: u32, out_scale: f32, p0: u32,
    pc: u32, groups: u32, wino: u32, _p2: u32,
});
kernel_params!(GroupNormParams for "group_norm" { n: u32, c: u32, hw: u32, groups: u32, eps: f32, silu: u32, chunks: u32, _p: u32 });
kernel_params!(LinearParams for "linear" { n: u32, fin: u32, fout: u32, silu_in: u32, silu_out: u32, _p0: u32, _p1: u32, _p2: u32 });
kernel_params!(TimestepEmbeddingParams for "timestep_embedding" { n: u32, dim: u32, flip: u32, shift: f32 });
kernel_params!(ClassEmbeddingParams for "class_embedding" { n: u32, d: u32, classes: u32, _p: u32 });
kernel_params!(AffineParams for "affine" { count: u32, scale: f32, shift: f32, _p: u32 });
kernel_params!(ConcatParams for "concat_channels" { n: u32, ca: u32, cb: u32, hw: u32 });
kernel_params!(MatmulParams for "matmul" { m: u32, n: u32, k: u32, _p: u32 });
kernel_params!(AttentionParams for "attention" { n: u32, heads: u32, d: u32, l: u32, scale: f32, _p0: u32, _p1: u32, _p2: u32 });

/// Elements per partial sum of group_norm.wgsl (its `CHUNK`).
const GROUP_NORM_CHUNK: usize = 1024;

fn groups_1d(count: usize, per_group: usize) -> [u32; 3] {
    grid(count.div_ceil(per_group) as u32)
}

/// silu(group_norm(x)) in front of a conv (`norm_silu_conv2d`): the group statistics
/// (`GpuRecorder::group_moments`), γ and β.
#[derive(Clone, Copy)]
struct PreNorm<'t> {
    moments: &'t GpuTensor,
    gamma: &'t GpuTensor,
    beta: &'t GpuTensor,
    groups: usize,
}

fn group_norm_params(x: &GpuTensor, groups: usize, eps: f32, silu: bool) -> GroupNormParams {
    let [n, c, h, w] = x.dims();
    GroupNormParams {
        n: dim32(n),
        c: dim32(c),
        hw: dim32(h * w),
        groups: dim32(groups),
        eps,
        silu: silu as u32,
        chunks: dim32((c / groups.max(1) * h * w).div_ceil(GROUP_NORM_CHUNK)),
        _p: 0,
    }
}

impl GpuRecorder<'_> {
    /// conv2d of x, or of silu(group_norm(x)) where `pre` is given.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: &GpuTensor,
        pre: Option<PreNorm>,
        w: &GpuTensor,
        b: &GpuTensor,
        spec: ConvSpec,
        chan_add: Option<&GpuTensor>,
        residual: Option<&GpuTensor>,
        out_scale: f32,
    ) -> Result<GpuTensor> {
        let [n, ci, h, wd] = x.dims();
        let [co, wci, k, _] = w.dims();
        if wci != ci {
            return Err(Error::Input(format!("conv2d: weight {:?} does not fit input {:?}", w.shape, x.shape)));
        }
        let (oh, ow) = spec.out_size(h, wd, k).ok_or_else(|| Error::Input(format!("conv2d: input {h}x{wd} too small")))?;
        let out = self.alloc(vec![n, co, oh, ow], "conv2d output")?;
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
        let dummy = self.dummy.clone();
        let add = chan_add.map_or(&dummy, |t| t.buffer());
        let res = residual.map_or(&dummy, |t| t.buffer());
        if k == 3 && spec.stride == 1 && self.gpu.winograd_convs() && !self.weights.f16 {
            if let Some(tiles) = self.winograd_chunk(n, ci, co) {
                let epilogue = [(2, b.buffer()), (3, add), (4, res), (5, out.buffer())];
                self.conv_winograd(x, pre, w, &epilogue, params, tiles)?;
                return Ok(out);
            }
        }
        // Chunks of output pixels whose patches fit one buffer (one chunk but for very large convs).
        let (rows, pix) = (ci * k * k, oh * ow);
        let col_bytes = |pixels: usize| tensor_bytes(&[n, rows, pixels.next_multiple_of(8)]);
        let cap = self.gpu.max_buffer_bytes().min(self.gpu.conv_col_max_bytes);
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
                let col = self.alloc_scratch(vec![n, rows, pc.next_multiple_of(8)], "conv2d im2col")?;
                self.record_patches("im2col", x, pre, &col, params, n * ci * pc.next_multiple_of(8) / 4);
                col
            };
            let (gemm, invocations) = self.gpu.conv_gemm_entry(n, co, pc.next_multiple_of(8), self.weights.f16);
            self.record(
                gemm,
                &[(0, col.buffer()), (1, w.buffer()), (2, b.buffer()), (3, add), (4, res), (5, out.buffer())],
                &params,
                6,
                groups_1d(invocations, self.gpu.gemm_workgroup as usize),
            );
        }
        Ok(out)
    }

    /// conv2d.wgsl's `entry` (im2col, winograd_input) of x into `out`, or of silu(group_norm(x))
    /// (`{entry}_norm`) where `pre` is given; `invocations` of 4 pixels or tiles each.
    fn record_patches(
        &mut self,
        entry: &str,
        x: &GpuTensor,
        pre: Option<PreNorm>,
        out: &GpuTensor,
        params: Conv2dParams,
        invocations: usize,
    ) {
        let groups = groups_1d(invocations, 64);
        match pre {
            None => self.record(&format!("conv2d.{entry}"), &[(0, x.buffer()), (5, out.buffer())], &params, 6, groups),
            Some(norm) => {
                let params = Conv2dParams { groups: dim32(norm.groups), ..params };
                let bufs =
                    [(0, x.buffer()), (1, norm.gamma.buffer()), (2, norm.beta.buffer()), (3, norm.moments.buffer()), (5, out.buffer())];
                self.record(&format!("conv2d.{entry}_norm"), &bufs, &params, 6, groups);
            }
        }
    }

    /// Tiles per chunk of a Winograd conv (a multiple of 8), or None where its scratch would not
    /// fit the conv's patch budget (`conv_col_max_bytes`): the transformed weights U (16·CO8·CI)
    /// take at most half, the transformed patches V (16·N·CI per tile) and products M (16·N·CO8
    /// per tile) a quarter each, so the budget bounds the memory as im2col's patches do.
    fn winograd_chunk(&self, n: usize, ci: usize, co: usize) -> Option<usize> {
        let cap = self.gpu.max_buffer_bytes().min(self.gpu.conv_col_max_bytes);
        let pow2 = |b: u64| b.checked_next_power_of_two().unwrap_or(u64::MAX);
        if pow2(tensor_bytes(&[16, co.next_multiple_of(8), ci])) > cap / 2 {
            return None;
        }
        let per_tile = tensor_bytes(&[16, n, ci.max(co.next_multiple_of(8))]);
        // Power-of-two rounding of the scratch buffers can double them: count it.
        let tiles = ((prev_pow2(cap / 4) / per_tile) as usize).min(self.gpu.conv_winograd_tiles) / 8 * 8;
        (tiles >= 8).then_some(tiles)
    }

    /// A 3×3 stride-1 conv as Winograd F(2×2, 3×3) (conv2d.wgsl): the weights transformed into
    /// scratch, then per chunk of 2×2 output tiles the input transform, 16 GEMMs (`gemm` with
    /// `wino`) and the output transform with the epilogue (`epilogue`: bindings 2–5).
    fn conv_winograd(
        &mut self,
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
                scratch = self.alloc_scratch(vec![16, co8, ci], "conv2d winograd weights")?;
                self.record("conv2d.winograd_weights", &[(1, w.buffer()), (5, scratch.buffer())], &params, 6, groups_1d(co8 * ci, 64));
                scratch.buffer()
            }
        };
        for t0 in (0..tiles).step_by(chunk) {
            let tc = chunk.min(tiles - t0);
            let params = Conv2dParams { p0: dim32(t0), pc: dim32(tc), ..params };
            let tc8 = tc.next_multiple_of(8);
            let v = self.alloc_scratch(vec![16, n, ci, tc8], "conv2d winograd patches")?;
            self.record_patches("winograd_input", x, pre, &v, params, n * ci * tc8 / 4);
            let m = self.alloc_scratch(vec![16, n, co8, tc8], "conv2d winograd products")?;
            let gemm = Conv2dParams { wino: 1, ..params };
            let invocations = 16 * n * co8 / 8 * tc8 / 8;
            let unused = self.dummy.clone();
            let bufs = [(0, v.buffer()), (1, u), (2, &unused), (3, &unused), (4, &unused), (5, m.buffer())];
            self.record("conv2d.gemm", &bufs, &gemm, 6, groups_1d(invocations, self.gpu.gemm_workgroup as usize));
            drop(v);
            let mut bufs = vec![(0, m.buffer())];
            bufs.extend_from_slice(epilogue);
            self.record("conv2d.winograd_output", &bufs, &params, 6, groups_1d(n * co * tc8 / 4, 64));
        }
        Ok(())
    }

    /// Per (n, group): (mean, 1/√(var + ε)) of x (group_norm.wgsl's `stats` and `combine`).
    fn group_moments(&mut self, x: &GpuTensor, groups: usize, eps: f32) -> Result<GpuTensor> {
        let [n, c, ..] = x.dims();
        if groups == 0 || c % groups != 0 {
            return Err(Error::Input(format!("group_norm: {c} channels are not divisible into {groups} groups")));
        }
        let params = group_norm_params(x, groups, eps, false);
        let chunks = params.chunks as usize;
        let partial = self.alloc(vec![n * groups * chunks, 2], "group_norm partial sums")?;
        let moments = self.alloc(vec![n * groups, 2], "group_norm moments")?;
        self.record("group_norm.stats", &[(0, x.buffer()), (5, partial.buffer())], &params, 4, groups_1d(n * groups * chunks, 64));
        self.record("group_norm.combine", &[(5, partial.buffer()), (6, moments.buffer())], &params, 4, groups_1d(n * groups, 64));
        Ok(moments)
    }
}

impl UNetOps for GpuRecorder<'_> {
    type T = GpuTensor;

    fn weight(&self, name: &str) -> Result<GpuTensor> {
        self.weights.tensors.get(name).cloned().ok_or_else(|| Error::MissingTensor(name.into()))
    }

    fn dims(&self, t: &GpuTensor) -> [usize; 4] {
        t.dims()
    }

    fn conv2d(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        b: &GpuTensor,
        spec: ConvSpec,
        chan_add: Option<&GpuTensor>,
        residual: Option<&GpuTensor>,
        out_scale: f32,
    ) -> Result<GpuTensor> {
        self.conv(x, None, w, b, spec, chan_add, residual, out_scale)
    }

    /// Group statistics, then the conv with the normalisation applied as its patches are written
    /// (`conv2d.im2col_norm`): the normalised map is never stored.
    fn norm_silu_conv2d(
        &mut self,
        parts: &[GpuTensor],
        norm: GroupNorm<'_, GpuTensor>,
        w: &GpuTensor,
        b: &GpuTensor,
        spec: ConvSpec,
        chan_add: Option<&GpuTensor>,
        residual: Option<&GpuTensor>,
        out_scale: f32,
    ) -> Result<GpuTensor> {
        let x = self.cat(parts)?;
        let moments = self.group_moments(&x, norm.groups, norm.eps)?;
        let pre = PreNorm { moments: &moments, gamma: norm.gamma, beta: norm.beta, groups: norm.groups };
        self.conv(&x, Some(pre), w, b, spec, chan_add, residual, out_scale)
    }

    fn group_norm(&mut self, x: &GpuTensor, gamma: &GpuTensor, beta: &GpuTensor, groups: usize, eps: f32, silu: bool) -> Result<GpuTensor> {
        let moments = self.group_moments(x, groups, eps)?;
        let out = self.alloc(x.shape.clone(), "group_norm output")?;
        let params = group_norm_params(x, groups, eps, silu);
        self.record(
            "group_norm.apply",
            &[(0, x.buffer()), (1, gamma.buffer()), (2, beta.buffer()), (3, out.buffer()), (6, moments.buffer())],
            &params,
            4,
            groups_1d(x.len(), 64),
        );
        Ok(out)
    }

    fn linear(&mut self, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, silu_in: bool, silu_out: bool) -> Result<GpuTensor> {
        let n = x.shape[0];
        let fin = x.len() / n.max(1);
        let [fout, wfin, _, _] = w.dims();
        if wfin != fin {
            return Err(Error::Input(format!("linear: weight {:?} does not fit input {:?}", w.shape, x.shape)));
        }
        let out = self.alloc(vec![n, fout], "linear output")?;
        let params = LinearParams {
            n: dim32(n),
            fin: dim32(fin),
            fout: dim32(fout),
            silu_in: silu_in as u32,
            silu_out: silu_out as u32,
            ..Default::default()
        };
        self.record(
            "linear.main",
            &[(0, x.buffer()), (1, w.buffer()), (2, b.buffer()), (3, out.buffer())],
            &params,
            4,
            groups_1d(n * fout, 64),
        );
        Ok(out)
    }

    fn timestep_embedding(&mut self, t: &GpuTensor, dim: usize, flip: bool, shift: f32) -> Result<GpuTensor> {
        let n = t.len();
        let out = self.alloc(vec![n, dim], "timestep embedding")?;
        let params = TimestepEmbeddingParams { n: dim32(n), dim: dim32(dim), flip: flip as u32, shift };
        self.record(
            "timestep_embedding.main",
            &[(0, t.buffer()), (1, out.buffer())],
            &params,
            2,
            [dim32((n * (dim / 2)).div_ceil(64).max(1)), 1, 1],
        );
        Ok(out)
    }

    fn class_embedding_add(&mut self, emb: &GpuTensor, table: &GpuTensor, labels: &GpuTensor) -> Result<GpuTensor> {
        let (n, d) = (emb.shape[0], emb.shape[1]);
        let out = self.alloc(emb.shape.clone(), "class embedding")?;
        let params = ClassEmbeddingParams { n: dim32(n), d: dim32(d), classes: dim32(table.shape[0]), _p: 0 };
        self.record(
            "class_embedding.main",
            &[(0, emb.buffer()), (1, table.buffer()), (2, labels.buffer()), (3, out.buffer())],
            &params,
            4,
            [dim32((n * d).div_ceil(64).max(1)), 1, 1],
        );
        Ok(out)
    }

    fn affine(&mut self, x: &GpuTensor, scale: f32, shift: f32) -> Result<GpuTensor> {
        let out = self.alloc(x.shape.clone(), "affine output")?;
        let params = AffineParams { count: dim32(x.len()), scale, shift, _p: 0 };
        self.record("affine.main", &[(0, x.buffer()), (1, out.buffer())], &params, 2, groups_1d(x.len(), 64));
        Ok(out)
    }

    fn concat_channels(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        let [n, ca, h, w] = a.dims();
        let [nb, cb, hb, wb] = b.dims();
        if (n, h, w) != (nb, hb, wb) {
            return Err(Error::Input(format!("concat: {:?} and {:?} differ outside the channel axis", a.shape, b.shape)));
        }
        let out = self.alloc(vec![n, ca + cb, h, w], "concat output")?;
        let params = ConcatParams { n: dim32(n), ca: dim32(ca), cb: dim32(cb), hw: dim32(h * w) };
        self.record("concat_channels.main", &[(0, a.buffer()), (1, b.buffer()), (2, out.buffer())], &params, 3, groups_1d(out.len(), 64));
        Ok(out)
    }

    fn attention(&mut self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, heads: usize, d: usize) -> Result<GpuTensor> {
        let [n, inner, h, w] = q.dims();
        if inner != heads * d || k.shape != q.shape || v.shape != q.shape {
            return Err(Error::Input(format!("attention: q {:?} k {:?} v {:?} for {heads} heads of {d}", q.shape, k.shape, v.shape)));
        }
        let l = h * w;
        let params = AttentionParams {
            n: dim32(n),
            heads: dim32(heads),
            d: dim32(d),
            l: dim32(l),
            scale: 1.0 / (d as f32).sqrt(),
            ..Default::default()
        };
        let scores = self.alloc(vec![n * heads, l, l], "attention scores")?;
        self.record(
            "attention.scores",
            &[(0, q.buffer()), (1, k.buffer()), (2, scores.buffer())],
            &params,
            3,
            groups_1d(n * heads * l * l, 64),
        );
        self.record("attention.softmax", &[(2, scores.buffer())], &params, 3, groups_1d(n * heads * l, 64));
        let out = self.alloc(q.shape.clone(), "attention output")?;
        self.record(
            "attention.apply",
            &[(0, scores.buffer()), (1, v.buffer()), (2, out.buffer())],
            &params,
            3,
            groups_1d(n * heads * d * l, 64),
        );
        Ok(out)
    }
}

/// Appends recorded dispatches to a compute pass, in order.
pub fn encode(dispatches: &[Dispatch], pass: &mut wgpu::ComputePass<'_>) {
    for d in dispatches {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.bind_group, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}

/// Runs one op (or a few) on the GPU right away and reads the result back: the op tests' harness.
pub async fn run_now(
    gpu: &GpuDevice,
    weights: &HashMap<String, crate::Tensor>,
    inputs: &[&crate::Tensor],
    op: impl FnOnce(&mut GpuRecorder, &[GpuTensor]) -> Result<GpuTensor>,
) -> Result<crate::Tensor> {
    let w = GpuWeights::upload_tensors(gpu, weights)?;
    let ins = inputs.iter().map(|t| Ok(GpuTensor::owned(gpu.upload(&t.data, "input")?, t.shape.clone()))).collect::<Result<Vec<_>>>()?;
    let mut b = GpuRecorder::new(gpu, &w, Rc::default())?;
    let out = op(&mut b, &ins)?;
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        encode(&b.dispatches, &mut pass);
    }
    gpu.queue.submit([enc.finish()]);
    let data = gpu.read(out.buffer(), out.len()).await?;
    crate::Tensor::new(out.shape.clone(), data)
}
