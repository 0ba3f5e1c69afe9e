// conv2d_winograd: 3×3 stride-1 convs as Winograd F(2×2, 3×3) (after conv2d.wgsl, composed by
// `gpu::SHADERS`). Bindings: conv2d.wgsl's (winograd_weights reads binding 1 as f32s, `weight_f`).
// Workgroups: 64 invocations, 1-D. Its 16 GEMMs are conv2d_gemm.wgsl's `gemm` with `wino`.

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
