// log_softmax_backward: the gradient of scale_n · log softmax(logits_n)[y_n] with respect to the
//   logits [N, K]: scale_n·(onehot(y_n) − softmax(logits_n)) — the seed of the classifier's
//   backward, scaled by the guidance scale times σ_t so the whole backward yields the guidance term.
// Bindings: 0 logits [N, K] (read), 1 target [N, 2] = (y_n as f32, scale_n) (read); 2 out (rw);
// 3 params. Workgroup: 64, one item each (K is small), 1-D over wid.x + wid.y·nwg.x.

struct Params { n: u32, k: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> tgt: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = gid.x + gid.y * nwg.x * 64u;
    if (n >= p.n) {
        return;
    }
    let row = n * p.k;
    var m = logits[row];
    for (var j = 1u; j < p.k; j++) {
        m = max(m, logits[row + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.k; j++) {
        sum += exp(logits[row + j] - m);
    }
    let y = u32(tgt[2u * n]);
    let scale = tgt[2u * n + 1u];
    for (var j = 0u; j < p.k; j++) {
        let onehot = select(0.0, 1.0, j == y);
        out[row + j] = scale * (onehot - exp(logits[row + j] - m) / sum);
    }
}
