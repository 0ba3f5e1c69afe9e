// matmul: c[M,N] = a[M,K] · b[K,N], the yardsticks that measure what each adapter's WGSL can reach
// (`ddim bench-matmul`) beside the convs' own GEMM run as the same matmul (conv2d_gemm.wgsl's `gemm`,
// timed by `ddim bench` as a 1×1 conv), so conv2d's speed can be stated as a fraction of the best.
// Bindings: 0 a (layout per entry), 1 b [K, N] as vec4 rows, 2 c [M, N] as vec4 rows (rw), 3 params.
// M, N multiples of 64; K any. One invocation computes a register block; Workgroups of 64.
//   tile4x4: a row-major [M][K]; 4 rows × 4 columns (4 scalar a + 1 vec4 b loads feed 16 FMAs)
//   workgroup_tiled: a row-major; 16×16 threads of 4×4, 64-deep k tiles staged in workgroup memory (the
//           classic real-GPU GEMM; it needs 256 invocations per workgroup)

struct Params { m: u32, n: u32, k: u32, _p: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn tile4x4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = p.n / 4u;
    if (gid.x >= (p.m / 4u) * n4) {
        return;
    }
    let col = gid.x % n4;
    let r0 = (gid.x / n4) * 4u;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let bv = b[k * n4 + col];
        c0 += a[r0 * p.k + k] * bv;
        c1 += a[(r0 + 1u) * p.k + k] * bv;
        c2 += a[(r0 + 2u) * p.k + k] * bv;
        c3 += a[(r0 + 3u) * p.k + k] * bv;
    }
    c[r0 * n4 + col] = c0;
    c[(r0 + 1u) * n4 + col] = c1;
    c[(r0 + 2u) * n4 + col] = c2;
    c[(r0 + 3u) * n4 + col] = c3;
}

var<workgroup> ta: array<f32, 4096>;        // 64 rows × 64 k
var<workgroup> tb: array<vec4<f32>, 1024>;  // 64 k × 16 vec4 columns

@compute @workgroup_size(16, 16)
fn workgroup_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let n4 = p.n / 4u;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 16u; // in vec4
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += 64u) {
        for (var e = li; e < 4096u; e += 256u) {
            let r = row0 + e / 64u;
            let kk = k0 + e % 64u;
            ta[e] = select(0.0, a[min(r, p.m - 1u) * p.k + min(kk, p.k - 1u)], r < p.m && kk < p.k);
        }
        for (var e = li; e < 1024u; e += 256u) {
            let kk = k0 + e / 16u;
            let cc = col0 + e % 16u;
            tb[e] = select(vec4<f32>(0.0), b[min(kk, p.k - 1u) * n4 + min(cc, n4 - 1u)], kk < p.k && cc < n4);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 64u; kk++) {
            let bv = tb[kk * 16u + lid.x];
            c0 += ta[(lid.y * 4u) * 64u + kk] * bv;
            c1 += ta[(lid.y * 4u + 1u) * 64u + kk] * bv;
            c2 += ta[(lid.y * 4u + 2u) * 64u + kk] * bv;
            c3 += ta[(lid.y * 4u + 3u) * 64u + kk] * bv;
        }
        workgroupBarrier();
    }
    let r = row0 + lid.y * 4u;
    let cc = col0 + lid.x;
    if (r < p.m && cc < n4) {
        c[r * n4 + cc] = c0;
        c[(r + 1u) * n4 + cc] = c1;
        c[(r + 2u) * n4 + cc] = c2;
        c[(r + 3u) * n4 + cc] = c3;
    }
}
