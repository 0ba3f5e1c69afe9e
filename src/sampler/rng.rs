//! Seeded noise that is identical on every platform: Philox4x32-10 (Salmon et al., SC'11), a
//! counter-based generator, and a Box-Muller transform computed with `libm` (pure-Rust math, so the
//! same bits natively and in wasm). Stream 0 is x_T; stream s+1 is the noise added at step s.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// One Philox4x32-10 block: 4 random u32 for counter `ctr` under `key`.
pub fn philox4x32_10(mut ctr: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            key = [key[0].wrapping_add(W0), key[1].wrapping_add(W1)];
        }
        let p0 = (M0 as u64) * (ctr[0] as u64);
        let p1 = (M1 as u64) * (ctr[2] as u64);
        ctr = [((p1 >> 32) as u32) ^ ctr[1] ^ key[0], p1 as u32, ((p0 >> 32) as u32) ^ ctr[3] ^ key[1], p0 as u32];
    }
    ctr
}

/// A uniform in (0, 1) from 64 random bits (53 used).
fn uniform(hi: u32, lo: u32) -> f64 {
    let bits = (((hi as u64) << 32) | lo as u64) >> 11;
    (bits as f64 + 0.5) / (1u64 << 53) as f64
}

/// `count` standard normals of stream `stream` for `seed`.
pub fn normal(seed: u64, stream: u64, count: usize) -> Vec<f32> {
    let key = [seed as u32, (seed >> 32) as u32];
    let mut out = Vec::with_capacity(count + 1);
    let mut block = 0u64;
    while out.len() < count {
        let r = philox4x32_10([block as u32, (block >> 32) as u32, stream as u32, (stream >> 32) as u32], key);
        let (u1, u2) = (uniform(r[0], r[1]), uniform(r[2], r[3]));
        let radius = libm::sqrt(-2.0 * libm::log(u1));
        let angle = 2.0 * std::f64::consts::PI * u2;
        out.push((radius * libm::cos(angle)) as f32);
        out.push((radius * libm::sin(angle)) as f32);
        block += 1;
    }
    out.truncate(count);
    out
}
