//! Where a recording's activation buffers come from: the free list, a trace of a recording's
//! requests (sizes and lifetimes), or a plan made from that trace (`Pool::plan`: tensors whose
//! lifetimes do not overlap share a buffer). `GpuTensor` is a buffer of the pool (or an owned one)
//! with its shape; its buffer goes back to the pool when its last handle drops.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::GpuDevice;
use crate::error::{Error, Result};

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
    pub(super) winograd: Option<wgpu::Buffer>,
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

    pub(super) fn dims(&self) -> [usize; 4] {
        let mut d = [1usize; 4];
        for (i, s) in self.shape.iter().take(4).enumerate() {
            d[i] = *s;
        }
        d
    }
}

/// Answers a request of `bytes` for a tensor of `shape` from `pool`, as its mode says.
pub(super) fn request(pool: &Rc<RefCell<Pool>>, gpu: &GpuDevice, shape: Vec<usize>, bytes: u64, what: &str) -> Result<GpuTensor> {
    let mut p = pool.borrow_mut();
    let (bytes, buffer, origin) = match &mut p.mode {
        Mode::Reuse => {
            let (size, b) = p.take(gpu, bytes, what)?;
            (size, b, Origin::Pooled)
        }
        Mode::Trace { clock, sizes, lives } => {
            // Its own buffer, so a bind group never sees one buffer as both input and output.
            let b = gpu.storage_buffer(256, "traced activation")?;
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
    drop(p);
    Ok(GpuTensor { slot: Rc::new(Slot { buffer, bytes, pool: Some((pool.clone(), origin)) }), shape, winograd: None })
}

/// Bytes of an f32 tensor of `shape` (at least 16), in u64 and saturating: on wasm32 a large batch
/// overflows usize before the limit check.
pub(super) fn tensor_bytes(shape: &[usize]) -> u64 {
    shape.iter().fold(4u64, |a, &d| a.saturating_mul(d as u64)).max(16)
}
