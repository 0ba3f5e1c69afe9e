//! Host memory a model needs, estimated before anything is allocated: the CPU engines check it
//! against what the host can hold (a wasm32 heap: 4 GiB at most), so a model or batch too large
//! for the browser is an error with the numbers, not a failed `memory.grow` that kills the engine.

use std::sync::atomic::{AtomicU64, Ordering};

use super::config::{BlockKind, UNetConfig};
use crate::error::{Error, Result};

/// The most a wasm32 heap can hold (32-bit addresses).
pub const WASM32_HEAP_BYTES: u64 = 4 << 30;

/// The host limit the checks use: a wasm32 heap's 4 GiB in the browser; none natively (the OS
/// decides), unless a test caps it (`cap_host_bytes`).
static CAP: AtomicU64 = AtomicU64::new(if cfg!(target_arch = "wasm32") { WASM32_HEAP_BYTES } else { u64::MAX });

pub fn host_limit() -> u64 {
    CAP.load(Ordering::Relaxed)
}

/// Caps the host limit, as a smaller heap would (tests: the checks' refusals without allocating
/// 4 GiB). Process-wide.
pub fn cap_host_bytes(bytes: u64) {
    CAP.store(bytes, Ordering::Relaxed);
}

/// Refuses `bytes` of `what` over the host limit, naming both numbers.
pub fn check_host_bytes(bytes: u64, what: &str) -> Result<()> {
    let limit = host_limit();
    if bytes > limit {
        let heap = if limit == WASM32_HEAP_BYTES { " (a wasm32 heap's 4 GiB)" } else { "" };
        return Err(Error::HostMemory(format!("{what} need about {bytes} bytes; this host holds at most {limit}{heap}")));
    }
    Ok(())
}

/// Bytes of f32 activations one U-Net forward of `batch` items of h×w holds at its peak, from the
/// config: the skip connections the down path keeps for the up path (conv_in's output, each
/// resnet's and each downsampler's), a working set of four of the largest tensors at any level (a
/// resnet's input concatenated with its skip, its norm, its two convs), and the largest attention
/// score matrix (heads × L², L the pixels of an attention level). An estimate of the engines'
/// real peak, which reuses buffers (it errs high).
pub fn activation_bytes(cfg: &UNetConfig, batch: usize, h: usize, w: usize) -> u64 {
    let ch = &cfg.block_out_channels;
    let levels = ch.len();
    let pixels = |i: usize| ((h >> i).max(1) * (w >> i).max(1)) as u64;
    let mut skips = ch[0] as u64 * pixels(0);
    let mut largest = 0u64;
    let mut scores = 0u64;
    for i in 0..levels {
        let c = ch[i] as u64;
        skips += cfg.layers_per_block as u64 * c * pixels(i);
        if i + 1 < levels {
            skips += c * pixels(i + 1);
        }
        // The up path at this level reads the channels from below and the skip.
        let from_below = ch[(i + 1).min(levels - 1)] as u64;
        largest = largest.max((c + from_below.max(c)) * pixels(i));
        let attends = matches!(cfg.down_blocks[i], BlockKind::Attn | BlockKind::AttnSkip)
            || matches!(cfg.up_blocks[levels - 1 - i], BlockKind::Attn | BlockKind::AttnSkip)
            || (i + 1 == levels && cfg.mid_block && cfg.add_attention);
        if attends {
            let (heads, _) = cfg.attention_heads(ch[i]);
            scores = scores.max(heads as u64 * pixels(i) * pixels(i));
        }
    }
    4 * batch as u64 * (skips + 4 * largest + scores)
}
