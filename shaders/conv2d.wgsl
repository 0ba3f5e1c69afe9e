// conv2d, the part every conv kernel shares (composed in front of conv2d_gemm.wgsl and
// conv2d_winograd.wgsl by `gpu::SHADERS`; WGSL has no includes): the params, the bindings and the
// patch gather that im2col and Winograd's input transform both read the input through.
// Bindings: 0 x (as col: vec4s), 1 weight packed as [O/8][I][K][K][8] (vec4 pairs;
// `pack_conv_weight`), 2 bias [O], 3 chan_add [N,O], 4 residual [N,O,OH,OW] (read); 5 out (rw; as
// col_out: vec4s); 6 params. The `_norm` entries read 1 gamma [I], 2 beta [I], 3 moments
// [N·groups] (group_norm.wgsl's `combine`) instead, and apply silu(group_norm(x)) as they gather.
// Workgroups: 64 invocations (the GEMMs: GEMM_WG), 1-D (index = gid.x + gid.y·nwg.x·64).
// out[n,o,y,x] = (Σ w[o,i,ky,kx]·in[n,i,y·s+ky−pt, x·s+kx−pl] + b[o] + chan_add[n,o] + residual) / out_scale,
//   reading the input through an optional fused 2× nearest upsample (diffusers Upsample2D).

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
// variant (`ops::conv2d::conv2d_f16_source`: f16 storage, f32 arithmetic) changes two lines.
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

// The normalised input of a ResnetBlock2D's conv, silu(group_norm(x)), made as the patches are
// written, so that it is never stored (at 256×256 it is one of the largest activations). Each
// channel's group statistics (group_norm.wgsl's `combine`) become one affine map per invocation.
@group(0) @binding(1) var<storage, read> norm_gamma: array<f32>;
@group(0) @binding(2) var<storage, read> norm_beta: array<f32>;
@group(0) @binding(3) var<storage, read> moments: array<vec2<f32>>;

// The affine map (a.x·v + a.y) that normalises plane ni = n·ci + i, from its group's moments.
fn norm_affine(ni: u32) -> vec2<f32> {
    let i = ni % p.ci;
    let m = moments[(ni / p.ci) * p.groups + i / (p.ci / p.groups)];
    let scale = m.y * norm_gamma[i];
    return vec2<f32>(scale, norm_beta[i] - m.x * scale);
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
