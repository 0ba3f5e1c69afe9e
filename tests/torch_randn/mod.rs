//! torch's CPU `randn` under `torch.manual_seed(seed)`, so the Rust tests draw the noise diffusers'
//! scheduler tests draw: mt19937 (the generator of torch's `CPUGeneratorImpl`), uniform floats
//! from its 24 low bits, and `normal_fill`'s Box-Muller over blocks of 16 (u1 from the first 8,
//! u2 from the last 8). torch's AVX2 path evaluates log/sin/cos with Sleef (≤ 1 ulp apart from
//! Rust's), so draws agree to ~1e-7, not bit for bit; `randn_seed0` in the fixture checks it.

pub struct TorchGenerator {
    mt: [u32; 624],
    index: usize,
}

impl TorchGenerator {
    /// `torch.manual_seed(seed)`.
    pub fn manual_seed(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        TorchGenerator { mt, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.mt[i] = self.mt[(i + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `torch.randn(n, generator=g)` for n ≥ 16 (a multiple of 16 here: the dummy samples).
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        assert!(n >= 16 && n.is_multiple_of(16), "normal_fill's tail recomputation is not ported");
        let mut data: Vec<f32> = (0..n).map(|_| (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)).collect();
        for block in data.chunks_exact_mut(16) {
            for j in 0..8 {
                let u1 = 1.0 - block[j];
                let u2 = block[j + 8];
                let radius = (-2.0 * u1.ln()).sqrt();
                let theta = (2.0 * std::f64::consts::PI * u2 as f64) as f32;
                block[j] = radius * theta.cos();
                block[j + 8] = radius * theta.sin();
            }
        }
        data
    }
}
