// conv2d_gemm: conv2d as `im2col` then `gemm` (after conv2d.wgsl, composed by `gpu::SHADERS`).
// Bindings: conv2d.wgsl's. Workgroups: 64 invocations (gemm, gemm4x4: GEMM_WG), 1-D.
// im2col writes the input patches of a chunk of output pixels as col [N][I·K·K][PC8] (PC = the
// chunk's pixels padded to a multiple of 8, zeros in the padding), and gemm multiplies the packed
// weights by it, 8 output channels × 8 pixels per invocation (`gemm4x4`, for GPUs: 4 × 4), with
// the epilogue. The loads feeding the FMAs are plain vec4 loads with no bounds tests, which is what
// the CPU adapters run fastest (`ddim bench-matmul`); a conv whose patches would not fit one buffer
// runs as several chunks of pixels [p0, p0 + pc). `im2col_norm` writes the patches of
// silu(group_norm(x)) instead. `gemm` with `wino` is also Winograd's 16 GEMMs (conv2d_winograd.wgsl).
// Why 8×8: on the CPU adapters (SwiftShader, lavapipe) every storage load is done lane by lane,
// so the FMAs per loaded value decide the speed: 16 loads feed 64 FMAs here (4×4 fed 16 with 8).

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


@compute @workgroup_size(64)
fn im2col_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let p4 = ((p.pc + 7u) / 8u) * 2u;
    if (idx >= p.n * p.ci * p4) {
        return;
    }
    write_patches(idx, true, norm_affine(idx / p4));
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
