// conv2d: out[n,o,y,x] = (Σ w[o,i,ky,kx]·in[n,i,y·s+ky−pt, x·s+kx−pl] + b[o] + chan_add[n,o] + residual) / out_scale,
//   reading the input through an optional fused 2× nearest upsample (diffusers Upsample2D).
// Bindings: 0 x, 1 weight packed as [O/8][I][K][K][8] (vec4 pairs; `pack_conv_weight`), 2 bias [O],
// 3 chan_add [N,O], 4 residual [N,O,OH,OW] (read); 5 out (rw); 6 params.
// conv2d is `im2col` then `gemm`: im2col writes the input patches of a chunk of output pixels as
// col [N][I·K·K][PC8] (PC = the chunk's pixels padded to a multiple of 8, zeros in the padding), and
// gemm multiplies the packed weights by it, 8 output channels × 8 pixels per invocation (`gemm4x4`,
// for GPUs: 4 × 4), with the epilogue. The loads feeding the FMAs are plain vec4 loads with no
// bounds tests, which is what the CPU adapters run fastest (`ddim bench-matmul`); a conv whose
// patches would not fit one buffer runs as several chunks of pixels [p0, p0 + pc). `im2col_norm`
// writes the patches of silu(group_norm(x)) instead (bindings 1 gamma [I], 2 beta [I], 3 moments [N·groups] as group_norm.wgsl's combine writes them).
// On the CPU adapters the 3×3 stride-1 convs run as Winograd F(2×2, 3×3) instead (the
// `winograd_*` entries and `gemm` with `wino`, at the end of this file).
// Workgroups: 64 invocations (gemm: GEMM_WG), 1-D (index = gid.x + gid.y·nwg.x·64).
// Why 8×8: on the CPU adapters (SwiftShader, lavapipe) every storage load is done lane by lane,
// so the FMAs per loaded value decide the speed: 16 loads feed 64 FMAs here (4×4 fed 16 with 8).

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, k: u32,
    stride: u32, pad_t: u32, pad_l: u32, up: u32,
    has_add: u32, has_res: u32, out_scale: f32, p0: u32,
    pc: u32, groups: u32, wino: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<vec4<f32>>;

// The packed weights' vec4 i. The GEMMs read weights only through this, so that the f16-weight
// variant (`gpu::conv2d_f16_source`: f16 storage, f32 arithmetic) changes two lines.
fn wload(i: u32) -> vec4<f32> {
    return weight[i];
}
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> chan_add: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

// col as the gemm reads it and as im2col writes it (aliases of bindings 0 and 5).
@group(0) @binding(0) var<storage, read> col: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> col_out: array<vec4<f32>>;

// col[n, (i·K + ky)·K + kx, q] = x at the tap (ky, kx) of output pixel p0 + q (0 outside). One
// invocation per (n, i, 4 pixels) writes those pixels' K·K taps: the pixel coordinates (integer
// divisions, slow on CPU adapters) are worked out once per invocation, not once per tap.
@compute @workgroup_size(64)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.n * p.ci * ((p.pc + 7u) / 8u) * 2u) {
        return;
    }
    write_patches(idx, false, vec2<f32>(1.0, 0.0));
}

// The normalised input of a ResnetBlock2D's conv, silu(group_norm(x)), made as the patches are
// written, so that it is never stored (at 256×256 it is one of the largest activations). Each
// channel's group statistics (group_norm.wgsl's `combine`) become one affine map per invocation.
@group(0) @binding(1) var<storage, read> norm_gamma: array<f32>;
@group(0) @binding(2) var<storage, read> norm_beta: array<f32>;
@group(0) @binding(3) var<storage, read> moments: array<vec2<f32>>;

@compute @workgroup_size(64)
fn im2col_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let p4 = ((p.pc + 7u) / 8u) * 2u;
    if (idx >= p.n * p.ci * p4) {
        return;
    }
    write_patches(idx, true, norm_affine(idx / p4));
}

// The affine map (a.x·v + a.y) that normalises plane ni = n·ci + i, from its group's moments.
fn norm_affine(ni: u32) -> vec2<f32> {
    let i = ni % p.ci;
    let m = moments[(ni / p.ci) * p.groups + i / (p.ci / p.groups)];
    let scale = m.y * norm_gamma[i];
    return vec2<f32>(scale, norm_beta[i] - m.x * scale);
}

// The K·K taps of invocation idx's (n, i, 4 pixels); with `norm`, each value inside the image is
// silu(v·a.x + a.y) (the zero padding stays zero: torch pads the normalised map).
fn write_patches(idx: u32, norm: bool, a: vec2<f32>) {
    let p4 = ((p.pc + 7u) / 8u) * 2u;
    let q = idx % p4;
    let ni = idx / p4; // = n·ci + i
    let o = origins(q, p.ow, p.stride);
    var r = ni * p.k * p.k * p4 + q; // col index of (n, i, ky = 0, kx = 0, q)
    for (var ky = 0u; ky < p.k; ky++) {
        let row = row_at(ni, o.iy + i32(ky), o.live);
        for (var kx = 0u; kx < p.k; kx++) {
            col_out[r] = gather(ni, row, o.ix + i32(kx), norm, a);
            r += p4;
        }
    }
}

// The input coordinates of the top-left taps of four items q·4 + j of the chunk (items p0 + …):
// output pixels (`per_row` = OW, `step` = the stride) or Winograd's 2×2 tiles (tiles per row, 2).
struct Origins { iy: vec4<i32>, ix: vec4<i32>, live: vec4<bool> }

fn origins(q: u32, per_row: u32, step: u32) -> Origins {
    var o: Origins;
    for (var j = 0u; j < 4u; j++) {
        let item = p.p0 + q * 4u + j;
        o.iy[j] = i32((item / per_row) * step) - i32(p.pad_t);
        o.ix[j] = i32((item % per_row) * step) - i32(p.pad_l);
        o.live[j] = q * 4u + j < p.pc;
    }
    return o;
}

// Where rows iy of plane ni (= n·ci + i) start in x, and whether they are inside the (upsampled) image.
struct Row { at: vec4<u32>, ok: vec4<bool> }

fn row_at(ni: u32, iy: vec4<i32>, live: vec4<bool>) -> Row {
    let ok = live & (iy >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.h << p.up)));
    return Row(vec4<u32>(ni * p.h * p.w) + (vec4<u32>(max(iy, vec4<i32>(0))) >> vec4<u32>(p.up)) * p.w, ok);
}

// x at columns ix of `row` (0 outside the image; with `norm`, silu(x·a.x + a.y): torch pads
// the normalised map with zeros).
fn gather(ni: u32, row: Row, ix: vec4<i32>, norm: bool, a: vec2<f32>) -> vec4<f32> {
    let ok = row.ok & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.w << p.up)));
    let last = (ni + 1u) * p.h * p.w - 1u;
    let at = min(row.at + (vec4<u32>(max(ix, vec4<i32>(0))) >> vec4<u32>(p.up)), vec4<u32>(last));
    var v = vec4<f32>(x[at.x], x[at.y], x[at.z], x[at.w]);
    if (norm) {
        v = v * a.x + a.y;
        v = v / (1.0 + exp(-v));
    }
    return select(vec4<f32>(0.0), v, ok);
}

// Invocations per gemm workgroup, set per adapter (`GpuDevice::gemm_workgroup`): 64 on GPUs, 16 on
// the CPU adapters, which run each workgroup on one thread: a batch-1 conv at 7×7 has 56
// invocations, one workgroup of 64, so one core did it all.
override GEMM_WG: u32 = 64u;

// out[n, o, p0 + q] = Σ_r weight[o, r] · col[n, r, q] + epilogue; 8 channels × 8 pixels per invocation.
@compute @workgroup_size(GEMM_WG)
fn gemm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * GEMM_WG;
    let p4 = ((p.pc + 7u) / 8u) * 2u;
    let ocbs = (p.co + 7u) / 8u;
    if (idx >= p.n * select(1u, 16u, p.wino != 0u) * ocbs * (p4 / 2u)) {
        return;
    }
    let c4 = (idx % (p4 / 2u)) * 2u;
    let ob = (idx / (p4 / 2u)) % ocbs;
    let n = idx / ((p4 / 2u) * ocbs); // with `wino`: ξ·N + n
    let rows = select(p.ci * p.k * p.k, p.ci, p.wino != 0u);
    var x0 = vec4<f32>(0.0); var y0 = vec4<f32>(0.0);
    var x1 = vec4<f32>(0.0); var y1 = vec4<f32>(0.0);
    var x2 = vec4<f32>(0.0); var y2 = vec4<f32>(0.0);
    var x3 = vec4<f32>(0.0); var y3 = vec4<f32>(0.0);
    var x4 = vec4<f32>(0.0); var y4 = vec4<f32>(0.0);
    var x5 = vec4<f32>(0.0); var y5 = vec4<f32>(0.0);
    var x6 = vec4<f32>(0.0); var y6 = vec4<f32>(0.0);
    var x7 = vec4<f32>(0.0); var y7 = vec4<f32>(0.0);
    // Winograd: U_ξ is block ξ of the transformed weights, V_ξ block ξ·N + n of the patches.
    var wi = (select(0u, (n / p.n) * ocbs, p.wino != 0u) + ob) * rows * 2u;
    var ci = n * rows * p4 + c4;
    // Two rows per step, their eight loads issued before the FMAs (the CPU adapters do each load
    // lane by lane; grouping them lets the next ones overlap the FMAs).
    var r = 0u;
    for (; r + 2u <= rows; r += 2u) {
        let lo = wload(wi);
        let hi = wload(wi + 1u);
        let lo1 = wload(wi + 2u);
        let hi1 = wload(wi + 3u);
        let u = col[ci];
        let v = col[ci + 1u];
        let u1 = col[ci + p4];
        let v1 = col[ci + p4 + 1u];
        x0 += lo.x * u; y0 += lo.x * v;
        x1 += lo.y * u; y1 += lo.y * v;
        x2 += lo.z * u; y2 += lo.z * v;
        x3 += lo.w * u; y3 += lo.w * v;
        x4 += hi.x * u; y4 += hi.x * v;
        x5 += hi.y * u; y5 += hi.y * v;
        x6 += hi.z * u; y6 += hi.z * v;
        x7 += hi.w * u; y7 += hi.w * v;
        x0 += lo1.x * u1; y0 += lo1.x * v1;
        x1 += lo1.y * u1; y1 += lo1.y * v1;
        x2 += lo1.z * u1; y2 += lo1.z * v1;
        x3 += lo1.w * u1; y3 += lo1.w * v1;
        x4 += hi1.x * u1; y4 += hi1.x * v1;
        x5 += hi1.y * u1; y5 += hi1.y * v1;
        x6 += hi1.z * u1; y6 += hi1.z * v1;
        x7 += hi1.w * u1; y7 += hi1.w * v1;
        wi += 4u;
        ci += 2u * p4;
    }
    for (; r < rows; r++) {
        let lo = wload(wi);
        let hi = wload(wi + 1u);
        let u = col[ci];
        let v = col[ci + 1u];
        x0 += lo.x * u; y0 += lo.x * v;
        x1 += lo.y * u; y1 += lo.y * v;
        x2 += lo.z * u; y2 += lo.z * v;
        x3 += lo.w * u; y3 += lo.w * v;
        x4 += hi.x * u; y4 += hi.x * v;
        x5 += hi.y * u; y5 += hi.y * v;
        x6 += hi.z * u; y6 += hi.z * v;
        x7 += hi.w * u; y7 += hi.w * v;
        wi += 2u;
        ci += p4;
    }
    let o = ob * 8u;
    if (p.wino != 0u) {
        // M_ξ [ξ·N + n][CO8][TC8], left for `winograd_output` (through `out`: the entry point
        // already stores through that view of binding 5).
        var m = ((n * ocbs * 8u + o) * p4 + c4) * 4u;
        let row = p4 * 4u;
        store_m(m, x0, y0); m += row;
        store_m(m, x1, y1); m += row;
        store_m(m, x2, y2); m += row;
        store_m(m, x3, y3); m += row;
        store_m(m, x4, y4); m += row;
        store_m(m, x5, y5); m += row;
        store_m(m, x6, y6); m += row;
        store_m(m, x7, y7);
        return;
    }
    let q0 = c4 * 4u;
    store_row(n, o, q0, x0, y0);
    store_row(n, o + 1u, q0, x1, y1);
    store_row(n, o + 2u, q0, x2, y2);
    store_row(n, o + 3u, q0, x3, y3);
    store_row(n, o + 4u, q0, x4, y4);
    store_row(n, o + 5u, q0, x5, y5);
    store_row(n, o + 6u, q0, x6, y6);
    store_row(n, o + 7u, q0, x7, y7);
}

// `gemm` with 4 output channels × 4 pixels per invocation, for GPUs (`GpuDevice::gemm_tile`):
// they hide memory latency with tens of thousands of invocations in flight, and the 8×8 tile
// gives a quarter as many: on an H100 a 256×256 model's convs ran at 2 TFLOP/s with it, while
// the same 8×8 matmul reached 15 at 2048³. One vec4 of weights (half of a packed 8-channel
// block) and one of patches feed 16 FMAs per step.
@compute @workgroup_size(GEMM_WG)
fn gemm4x4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * GEMM_WG;
    let p4 = ((p.pc + 7u) / 8u) * 2u;
    let oqs = ((p.co + 7u) / 8u) * 2u; // groups of 4 channels: halves of the packed 8-channel blocks
    if (idx >= p.n * oqs * p4) {
        return;
    }
    let c4 = idx % p4;
    let oq = (idx / p4) % oqs;
    let n = idx / (p4 * oqs);
    let rows = p.ci * p.k * p.k;
    var x0 = vec4<f32>(0.0);
    var x1 = vec4<f32>(0.0);
    var x2 = vec4<f32>(0.0);
    var x3 = vec4<f32>(0.0);
    var wi = (oq / 2u) * rows * 2u + (oq & 1u);
    var ci = n * rows * p4 + c4;
    // Four rows per step, their eight loads issued before the FMAs: with few invocations per
    // core the loads' latency is what is left to hide.
    var r = 0u;
    for (; r + 4u <= rows; r += 4u) {
        let w0 = wload(wi);
        let w1 = wload(wi + 2u);
        let w2 = wload(wi + 4u);
        let w3 = wload(wi + 6u);
        let u0 = col[ci];
        let u1 = col[ci + p4];
        let u2 = col[ci + 2u * p4];
        let u3 = col[ci + 3u * p4];
        x0 += w0.x * u0; x1 += w0.y * u0; x2 += w0.z * u0; x3 += w0.w * u0;
        x0 += w1.x * u1; x1 += w1.y * u1; x2 += w1.z * u1; x3 += w1.w * u1;
        x0 += w2.x * u2; x1 += w2.y * u2; x2 += w2.z * u2; x3 += w2.w * u2;
        x0 += w3.x * u3; x1 += w3.y * u3; x2 += w3.z * u3; x3 += w3.w * u3;
        wi += 8u;
        ci += 4u * p4;
    }
    for (; r < rows; r++) {
        let w = wload(wi);
        let u = col[ci];
        x0 += w.x * u;
        x1 += w.y * u;
        x2 += w.z * u;
        x3 += w.w * u;
        wi += 2u;
        ci += p4;
    }
    let o = oq * 4u;
    let q0 = c4 * 4u;
    store4(n, o, q0, x0);
    store4(n, o + 1u, q0, x1);
    store4(n, o + 2u, q0, x2);
    store4(n, o + 3u, q0, x3);
}


// Eight raw products from out[at] on (Winograd's M).
fn store_m(at: u32, lo: vec4<f32>, hi: vec4<f32>) {
    out[at] = lo.x; out[at + 1u] = lo.y; out[at + 2u] = lo.z; out[at + 3u] = lo.w;
    out[at + 4u] = hi.x; out[at + 5u] = hi.y; out[at + 6u] = hi.z; out[at + 7u] = hi.w;
}

// Writes chunk pixels q0..q0+7 (output pixels p0 + q) of output channel o: + bias, time-embedding
// add, residual, / scale.
fn store_row(n: u32, o: u32, q0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    store4(n, o, q0, lo);
    store4(n, o, q0 + 4u, hi);
}

// The same for pixels q0..q0+3.
fn store4(n: u32, o: u32, q0: u32, v4: vec4<f32>) {
    if (o >= p.co) {
        return;
    }
    var add = bias[o];
    if (p.has_add != 0u) {
        add += chan_add[n * p.co + o];
    }
    let base = (n * p.co + o) * p.oh * p.ow + p.p0;
    for (var j = 0u; j < 4u; j++) {
        let q = q0 + j;
        if (q >= p.pc) {
            return;
        }
        var v = v4[j] + add;
        if (p.has_res != 0u) {
            v += residual[base + q];
        }
        out[base + q] = v / p.out_scale;
    }
}

// Winograd F(2×2, 3×3) for 3×3 stride-1 convs on the CPU adapters (`GpuDevice::conv_winograd`):
// per 2×2 output tile, Y = Aᵀ[Σ_i (G g_oi Gᵀ) ⊙ (Bᵀ d_i B)]A (Lavin & Gray 2015), so the GEMM
// does 16 products per 4 outputs instead of 36: 16 GEMMs M_ξ = U_ξ · V_ξ (`gemm` with `wino`),
// between `winograd_weights`, `winograd_input` and `winograd_output`. Tiles are numbered
// t = ty·⌈OW/2⌉ + tx; a chunk is tiles [p0, p0 + pc), padded to TC8 (a multiple of 8).

// U_ξ = (G g Gᵀ)_ξ, G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1], from the packed 3×3 weights (binding 1)
// into [16][CO8/8][CI][8] (out, binding 5). Done per forward into scratch: kept, the transformed
// weights would cost 16/9 of the 3×3 weights' memory. One invocation per (o < CO8, i).
@compute @workgroup_size(64)
fn winograd_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let co8 = ((p.co + 7u) / 8u) * 8u;
    if (idx >= co8 * p.ci) {
        return;
    }
    let o = idx % co8;
    let i = idx / co8;
    let g0 = packed_row(o, i, 0u);
    let g1 = packed_row(o, i, 1u);
    let g2 = packed_row(o, i, 2u);
    // G g: rows of 3 taps.
    let r1 = (g0 + g1 + g2) * 0.5;
    let r2 = (g0 - g1 + g2) * 0.5;
    let ocbs = co8 / 8u;
    let at = ((o / 8u) * p.ci + i) * 8u + o % 8u;
    let step = ocbs * p.ci * 8u;
    store_u(at, step, 0u, g0);
    store_u(at, step, 1u, r1);
    store_u(at, step, 2u, r2);
    store_u(at, step, 3u, g2);
}

// Taps (ky, 0..3) of weight (o, i) in the packed [O/8][I][3][3][8] layout.
fn packed_row(o: u32, i: u32, ky: u32) -> vec3<f32> {
    let base = (((o / 8u) * p.ci + i) * 9u + ky * 3u) * 8u + o % 8u;
    return vec3<f32>(weight_f[base], weight_f[base + 8u], weight_f[base + 16u]);
}

// Row r of G g times Gᵀ: U[r][0..4].
fn store_u(at: u32, step: u32, r: u32, t: vec3<f32>) {
    let xi = r * 4u;
    out[at + xi * step] = t.x;
    out[at + (xi + 1u) * step] = (t.x + t.y + t.z) * 0.5;
    out[at + (xi + 2u) * step] = (t.x - t.y + t.z) * 0.5;
    out[at + (xi + 3u) * step] = t.z;
}

@group(0) @binding(1) var<storage, read> weight_f: array<f32>;

// V_ξ = (Bᵀ d B)_ξ, Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], of the 4×4 input patch d of each
// tile, into [16][N][CI][TC8] (col_out). One invocation per (n, i, 4 tiles), as vec4s over them.
@compute @workgroup_size(64)
fn winograd_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if (idx >= p.n * p.ci * ((p.pc + 7u) / 8u) * 2u) {
        return;
    }
    winograd_patches(idx, false, vec2<f32>(1.0, 0.0));
}

// The same of silu(group_norm(x)) (as `im2col_norm`).
@compute @workgroup_size(64)
fn winograd_input_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let p4 = ((p.pc + 7u) / 8u) * 2u;
    if (idx >= p.n * p.ci * p4) {
        return;
    }
    winograd_patches(idx, true, norm_affine(idx / p4));
}

fn winograd_patches(idx: u32, norm: bool, a: vec2<f32>) {
    let p4 = ((p.pc + 7u) / 8u) * 2u;
    let q = idx % p4;
    let ni = idx / p4; // = n·ci + i
    let o = origins(q, (p.ow + 1u) / 2u, 2u);
    var d: array<array<vec4<f32>, 4>, 4>; // d[row][col], over the 4 tiles
    for (var r = 0u; r < 4u; r++) {
        let row = row_at(ni, o.iy + i32(r), o.live);
        for (var c = 0u; c < 4u; c++) {
            d[r][c] = gather(ni, row, o.ix + i32(c), norm, a);
        }
    }
    let step = p.n * p.ci * p4; // from V_ξ to V_ξ+1
    var at = ni * p4 + q;
    // Bᵀ d (the rows combined, column by column), then (Bᵀ d) B row by row, stored as V_4r+c.
    for (var c = 0u; c < 4u; c++) {
        let t0 = d[0][c] - d[2][c];
        let t1 = d[1][c] + d[2][c];
        let t2 = d[2][c] - d[1][c];
        let t3 = d[1][c] - d[3][c];
        d[0][c] = t0; d[1][c] = t1; d[2][c] = t2; d[3][c] = t3;
    }
    for (var r = 0u; r < 4u; r++) {
        col_out[at] = d[r][0] - d[r][2];
        col_out[at + step] = d[r][1] + d[r][2];
        col_out[at + 2u * step] = d[r][2] - d[r][1];
        col_out[at + 3u * step] = d[r][1] - d[r][3];
        at += 4u * step;
    }
}

// Y = Aᵀ M A, Aᵀ = [1 1 1 0; 0 1 −1 −1], for each tile of output channel o, with conv2d's
// epilogue. M_ξ [16][N][CO8][TC8] (col). One invocation per (n, o, 4 tiles).
@compute @workgroup_size(64)
fn winograd_output(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let p4 = ((p.pc + 7u) / 8u) * 2u;
    if (idx >= p.n * p.co * p4) {
        return;
    }
    let q = idx % p4;
    let o = (idx / p4) % p.co;
    let n = idx / (p4 * p.co);
    let co8 = ((p.co + 7u) / 8u) * 8u;
    let step = p.n * co8 * p4;
    var at = (n * co8 + o) * p4 + q;
    var s0: array<vec4<f32>, 4>; // (Aᵀ M) row 0, by column
    var s1: array<vec4<f32>, 4>;
    for (var c = 0u; c < 4u; c++) {
        let m0 = col[at + c * step];
        let m1 = col[at + (4u + c) * step];
        let m2 = col[at + (8u + c) * step];
        let m3 = col[at + (12u + c) * step];
        s0[c] = m0 + m1 + m2;
        s1[c] = m1 - m2 - m3;
    }
    let y00 = s0[0] + s0[1] + s0[2];
    let y01 = s0[1] - s0[2] - s0[3];
    let y10 = s1[0] + s1[1] + s1[2];
    let y11 = s1[1] - s1[2] - s1[3];
    var add = bias[o];
    if (p.has_add != 0u) {
        add += chan_add[n * p.co + o];
    }
    let base = (n * p.co + o) * p.oh * p.ow;
    let tw = (p.ow + 1u) / 2u;
    for (var j = 0u; j < 4u; j++) {
        if (q * 4u + j >= p.pc) {
            return;
        }
        let t = p.p0 + q * 4u + j;
        let y = (t / tw) * 2u;
        let xx = (t % tw) * 2u;
        tile_out(base, y, xx, y00[j] + add);
        tile_out(base, y, xx + 1u, y01[j] + add);
        tile_out(base, y + 1u, xx, y10[j] + add);
        tile_out(base, y + 1u, xx + 1u, y11[j] + add);
    }
}

// out at (y, x) of a plane = (v + residual) / scale, if inside it (odd sizes end in half tiles).
fn tile_out(base: u32, y: u32, xx: u32, v: f32) {
    if (y >= p.oh || xx >= p.ow) {
        return;
    }
    let at = base + y * p.ow + xx;
    var r = v;
    if (p.has_res != 0u) {
        r += residual[at];
    }
    out[at] = r / p.out_scale;
}
