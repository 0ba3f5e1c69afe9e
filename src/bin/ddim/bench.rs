//! `ddim bench` and `ddim bench-matmul`: ms per U-Net item on each engine, the GPU convs' rate
//! against the best WGSL matmul, per-kernel profiles, peak memory.

use std::collections::HashMap;
use std::time::Instant;

use clap::builder::TypedValueParser;
use ddim_webgpu::gpu::engine::GpuEngine;
use ddim_webgpu::gpu::pool::GpuTensor;
use ddim_webgpu::gpu::recorder::GpuRecorder;
use ddim_webgpu::gpu::unet::GpuUNet;
use ddim_webgpu::gpu::weights::GpuWeights;
use ddim_webgpu::gpu::GpuDevice;
use ddim_webgpu::model::{ConvArgs, ConvSpec, UNetOps};
use ddim_webgpu::run::{self, ClassLabels, RunOptions};
use ddim_webgpu::{Error, Model, Result, Tensor};

/// GFLOP/s of each matmul yardstick at M = N = K = `size` (`bench_matmul_on`).
pub fn bench_matmul(size: usize) -> Result<f64> {
    let gpu = pollster::block_on(GpuDevice::new())?;
    println!("adapter: {}", gpu.adapter_name());
    let best = bench_matmul_on(&gpu, size, true)?;
    println!("best WGSL matmul: {best:.2} GFLOP/s");
    Ok(best)
}

/// The best GFLOP/s of the matmul yardsticks (each one printed where `print`): matmul.wgsl's
/// (4×4 register tiles; tiles staged in workgroup memory) and the convs' own GEMM kernel run as the
/// same matmul, so the yardstick cannot drift from what the convs run.
fn bench_matmul_on(gpu: &GpuDevice, size: usize, print: bool) -> Result<f64> {
    let n = size.next_multiple_of(64);
    let a = ddim_webgpu::sampler::rng::normal(1, 0, n * n);
    let b = ddim_webgpu::sampler::rng::normal(2, 0, n * n);
    let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("matmul"),
        source: wgpu::ShaderSource::Wgsl(include_str!("../../../shaders/matmul.wgsl").into()),
    });
    let (ab, bb, cb) = (gpu.upload(&a, "matmul a")?, gpu.upload(&b, "matmul b")?, gpu.storage_buffer((n * n * 4) as u64, "matmul c")?);
    let n32 = n as u32;
    let params = gpu.params(&ddim_webgpu::gpu::ops::matmul::MatmulParams { m: n32, n: n32, k: n32, _p: 0 });
    let mut best = 0.0f64;
    for (entry, groups) in
        [("tile4x4", [(n * n / 16).div_ceil(64) as u32, 1, 1]), ("workgroup_tiled", [(n / 64) as u32, (n / 64) as u32, 1])]
    {
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[(0, &ab), (1, &bb), (2, &cb), (3, &params)]
                .map(|(i, buf)| wgpu::BindGroupEntry { binding: i, resource: buf.as_entire_binding() }),
        });
        let run = || {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            }
            gpu.queue.submit([enc.finish()]);
            gpu.wait();
        };
        best = best.max(time_matmul(gpu, &format!("matmul.{entry}"), (n, &a, &b), run, &cb, print)?);
    }
    // The convs' GEMM: a 1×1 conv of b (n channels of a 1×n plane) by a into n channels reads b as
    // its patches (no im2col), so it is one dispatch of conv2d_gemm's kernel: c = a·b.
    let tensors = HashMap::from([
        ("w".to_string(), Tensor::new(vec![n, n, 1, 1], a.clone())?),
        ("b".to_string(), Tensor::new(vec![n], vec![0.0; n])?),
    ]);
    let weights = GpuWeights::upload_tensors(gpu, &tensors)?;
    let x = GpuTensor::owned(gpu.upload(&b, "matmul b")?, vec![1, n, 1, n]);
    let mut rec = GpuRecorder::new(gpu, &weights, Default::default())?;
    let (w, bias) = (rec.weight("w")?, rec.weight("b")?);
    let out = rec.conv2d(&x, ConvArgs::new(&w, &bias, ConvSpec::POINTWISE))?;
    let [gemm] = &rec.dispatches[..] else {
        return Err(Error::Gpu(format!("the conv GEMM as a matmul took {} dispatches, not one", rec.dispatches.len())));
    };
    let run = || {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            ddim_webgpu::gpu::recorder::encode(std::slice::from_ref(gemm), &mut pass);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.wait();
    };
    let name = format!("{} (the convs' own GEMM, in workgroups of {})", gemm.kernel, gpu.conv.gemm_workgroup);
    best = best.max(time_matmul(gpu, &name, (n, &a, &b), run, out.buffer(), print)?);
    Ok(best)
}

/// GFLOP/s of one matmul c = a·b of n×n (median of 10 runs after one), after checking an entry
/// of c against the CPU's product so that a fast wrong kernel cannot win.
fn time_matmul(
    gpu: &GpuDevice,
    name: &str,
    (n, a, b): (usize, &[f32], &[f32]),
    run: impl Fn(),
    c: &wgpu::Buffer,
    print: bool,
) -> Result<f64> {
    run();
    let got = pollster::block_on(gpu.read(c, n * n))?;
    let (i, j) = (n / 3, n / 2 + 1);
    let want: f64 = (0..n).map(|k| a[i * n + k] as f64 * b[k * n + j] as f64).sum();
    if (got[i * n + j] as f64 - want).abs() > 1e-3 * (1.0 + want.abs()) {
        return Err(Error::Gpu(format!("{name}: c[{i},{j}] = {} but the product is {want}", got[i * n + j])));
    }
    let mut ms: Vec<f64> = (0..10)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let gflops = 2.0 * (n * n * n) as f64 / ms[5] / 1e6;
    if print {
        println!("  {name} {n}³: {:.2} ms median ({:.2}–{:.2}), {gflops:.2} GFLOP/s", ms[5], ms[0], ms[9]);
    }
    Ok(gflops)
}

/// Times the recorded GPU forward alone (no readback); returns `GPU_CONV_ROUNDS` rounds of the
/// time its conv2d kernels took and the best matmul GFLOP/s of the same adapter right after, and
/// the floating-point operations the conv GEMMs of one forward do.
fn bench_gpu_forward(gpu: GpuDevice, model: &Model, x: &Tensor, ts: &[f32], labels: Option<&[u32]>) -> Result<(Vec<ConvRound>, f64)> {
    let [batch, _, h, w] = x.shape[..] else { return Err(Error::Input("bench input is 4-D".into())) };
    let mut unet = GpuUNet::new(gpu, model)?;
    println!("adapter: {}", unet.gpu.adapter_name());
    pollster::block_on(unet.forward(x, ts, labels))?; // records the forward, warms up
    let prog = pollster::block_on(unet.recording(batch, h, w))?;
    let reps = 10;
    let start = Instant::now();
    for _ in 0..reps {
        let mut enc = unet.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            prog.encode(&mut pass);
        }
        unet.gpu.queue.submit([enc.finish()]);
        unet.gpu.wait();
    }
    let gpu_ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!(
        "gpu forward: {gpu_ms:.2} ms ({} dispatches, weights {:.1} MB, activations {:.1} MB)",
        prog.dispatch_count(),
        unet.weights.bytes as f64 / 1e6,
        unet.activation_bytes() as f64 / 1e6
    );
    // The convs and the matmul alternate, round after round: this VM's speed drifts between
    // timings a minute apart, and the goal is their ratio.
    let mut rounds = Vec::new();
    for round in 0..GPU_CONV_ROUNDS {
        let profile = profile_dispatches(&unet.gpu, prog.dispatches(), 3);
        if round == 0 {
            let parts: Vec<String> = profile.iter().map(|(k, ms, n)| format!("{k} {ms:.1} ({n}×)")).collect();
            println!("  gpu forward by kernel, each dispatch submitted alone (ms): {}", parts.join(", "));
            println!("  conv2d variant: {}", unet.gpu.conv_variant());
        }
        let conv_ms = profile.iter().filter(|(k, _, _)| k.starts_with("conv2d")).map(|(_, ms, _)| ms).sum();
        let convs: Vec<_> = prog.dispatches().iter().filter(|d| d.kernel.starts_with("conv2d")).collect();
        let in_pass_ms = time_in_one_pass(&unet.gpu, &convs, 10);
        // The yardstick's size: 256³ keeps the CPU adapters' rounds short; a GPU needs 2048³ to be busy.
        let size = if unet.gpu.info.device_type == wgpu::DeviceType::Cpu { 256 } else { 2048 };
        rounds.push(ConvRound { alone_ms: conv_ms, in_pass_ms, matmul_gflops: bench_matmul_on(&unet.gpu, size, round == 0)? });
    }
    // The arithmetic the conv GEMMs actually do (Winograd's 16 products per 2×2 tile, padding to
    // whole tiles), beside the direct-conv count the rates are usually quoted in.
    let done = prog.dispatches().iter().filter(|d| d.kernel.starts_with("conv2d")).map(|d| d.flops).sum();
    Ok((rounds, done))
}

/// Rounds of conv timings and the best matmul's GFLOP/s in `ddim bench`.
const GPU_CONV_ROUNDS: usize = 5;

/// One round of `bench_gpu_forward`: the conv2d dispatches of a forward timed each alone (each
/// submitted and waited for) and all in one compute pass as the forward runs them, then the best
/// matmul right after.
struct ConvRound {
    alone_ms: f64,
    in_pass_ms: f64,
    matmul_gflops: f64,
}

/// ms of `dispatches` encoded back to back in one compute pass and submitted once (median of
/// `reps` after a warm-up): their time within a forward, without a submission and a wait each.
fn time_in_one_pass(gpu: &GpuDevice, dispatches: &[&ddim_webgpu::gpu::recorder::Dispatch], reps: usize) -> f64 {
    let mut ms: Vec<f64> = (0..=reps)
        .map(|_| {
            let start = Instant::now();
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for d in dispatches {
                    ddim_webgpu::gpu::recorder::encode(std::slice::from_ref(*d), &mut pass);
                }
            }
            gpu.queue.submit([enc.finish()]);
            gpu.wait();
            start.elapsed().as_secs_f64() * 1e3
        })
        .skip(1)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[reps / 2]
}

/// ms per kernel: each dispatch submitted alone and waited for, `reps` times (the sum exceeds a
/// whole forward by the per-submission overhead).
fn profile_dispatches(gpu: &GpuDevice, dispatches: &[ddim_webgpu::gpu::recorder::Dispatch], reps: usize) -> Vec<(String, f64, usize)> {
    let mut by_kernel: Vec<(String, f64, usize)> = Vec::new();
    for d in dispatches {
        let start = Instant::now();
        for _ in 0..reps {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                ddim_webgpu::gpu::recorder::encode(std::slice::from_ref(d), &mut pass);
            }
            gpu.queue.submit([enc.finish()]);
            gpu.wait();
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
        match by_kernel.iter_mut().find(|(k, _, _)| *k == d.kernel) {
            Some(e) => {
                e.1 += ms;
                e.2 += 1;
            }
            None => by_kernel.push((d.kernel.clone(), ms, 1)),
        }
    }
    by_kernel.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_kernel
}

/// Median (min–max) ms of `reps` forwards after one warm-up.
fn time_forwards<O: ddim_webgpu::reference::HostOps>(
    ops: &mut O,
    model: &Model,
    x: &Tensor,
    ts: &[f32],
    labels: Option<&[u32]>,
    reps: usize,
) -> Result<String> {
    ddim_webgpu::reference::forward_with(ops, &model.config, x, ts, labels)?;
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        ddim_webgpu::reference::forward_with(ops, &model.config, x, ts, labels)?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(format!("{:.2} ms median ({:.2}–{:.2}, {reps} runs)", ms[reps / 2], ms[0], ms[reps - 1]))
}

/// The fast engine with its ops split across `threads` (`fast::fork`, where the cost model says
/// it pays) against the same engine whose ops stay on one thread (the batch split alone, as before
/// the split existed), alternated in rounds: the ratio is what to read (this VM drifts).
fn split_against_one_thread_ops(
    model: &Model,
    (x, ts, labels): (&Tensor, &[f32], Option<&[u32]>),
    o: &BenchOptions,
    threads: usize,
) -> Result<()> {
    use ddim_webgpu::fast::{fork::Split, FastOps};
    let mut split = fast_ops(model, o)?.with_threads(threads);
    let mut single = fast_ops(model, o)?.with_threads(threads).with_split(Split::new(1));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let time = |ops: &mut FastOps| -> Result<f64> {
        let start = Instant::now();
        ddim_webgpu::reference::forward_with(ops, &model.config, x, ts, labels)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    time(&mut split)?;
    time(&mut single)?;
    for _ in 0..15 {
        a.push(time(&mut split)?);
        b.push(time(&mut single)?);
    }
    let mut ratios: Vec<f64> = a.iter().zip(&b).map(|(s, o)| s / o).collect();
    for v in [&mut a, &mut b, &mut ratios] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "  ops split across {threads} threads: {:.2} ms median; ops on one thread (batch split only): {:.2} ms; split / one-thread ops {:.2}× ({:.2}–{:.2}, 15 alternated pairs; fork/join here {:.0} µs)",
        a[7],
        b[7],
        ratios[7],
        ratios[0],
        ratios[14],
        ddim_webgpu::fast::fork::fork_join_ns() / 1e3
    );
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in MB, where /proc has it.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak memory of the fast CPU engine: the model is loaded, handed over to the engine (which keeps
/// packed conv weights only), and one forward runs; VmHWM against 1.5× weights + the two largest
/// activations.
pub fn bench_memory(model: Model, batch: usize) -> Result<()> {
    let (h, w) = model.config.sample_size.unwrap_or((32, 32));
    let (c, config) = (model.config.in_channels, model.config.clone());
    let weights_mb = model.weights.parameter_count() as f64 * 4.0 / 1e6;
    let labels = model.config.num_class_embeds.map(|_| vec![0u32; batch]);
    let mut ops = ddim_webgpu::reference::profile::Profiled::new(ddim_webgpu::fast::FastOps::from_model(model));
    let x = Tensor::new(vec![batch, c, h, w], ddim_webgpu::sampler::rng::normal(1, 0, batch * c * h * w))?;
    let start = Instant::now();
    ddim_webgpu::reference::forward_with(&mut ops, &config, &x, &vec![500.0; batch], labels.as_deref())?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let act_mb = ops.largest.iter().sum::<usize>() as f64 * 4.0 / 1e6;
    let peak = peak_rss_mb().map_or("unknown".into(), |mb| format!("{:.0} MB", mb * 1.048576));
    println!(
        "memory: batch {batch}, {h}x{w}: peak resident {peak}; f32 weights {weights_mb:.0} MB, two largest activations {act_mb:.0} MB \
              → goal 1.5 × weights + activations = {:.0} MB (the process itself adds a few MB); forward {ms:.0} ms",
        1.5 * weights_mb + act_mb
    );
    Ok(())
}

/// The fast CPU engine on `model`, with the microkernel `--kernel` names.
fn fast_ops(model: &Model, o: &BenchOptions) -> Result<ddim_webgpu::fast::FastOps> {
    use ddim_webgpu::fast::gemm::Kernel;
    let ops = ddim_webgpu::fast::FastOps::new(model);
    let Some(id) = &o.kernel else { return Ok(ops) };
    let available = Kernel::available();
    match available.iter().find(|k| k.id() == id) {
        Some(&k) => Ok(ops.with_kernel(k)),
        None => {
            Err(Error::Input(format!("--kernel {id}: this CPU runs {}", available.iter().map(|k| k.id()).collect::<Vec<_>>().join(", "))))
        }
    }
}

/// `ddim bench`'s flags (all but the model and --memory).
#[derive(clap::Args)]
pub struct BenchOptions {
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// classifier-free guidance for the full-sample timing (doubles the U-Net batch)
    #[arg(long, default_value_t = 0.0)]
    guidance: f32,
    /// only the CPU engines (no GPU timings)
    #[arg(long)]
    cpu_only: bool,
    /// only the GPU engine (the CPU engines' timings are skipped: for big shapes on a real GPU)
    #[arg(long, conflicts_with = "cpu_only")]
    gpu_only: bool,
    /// the fast CPU engine's GEMM microkernel: avx512, avx2 or portable (default: the best this
    /// CPU has; an AVX-512 machine times an AVX2-only one's path with avx2)
    #[arg(long)]
    kernel: Option<String>,
    /// only the fast CPU engine's forward (what tests/bench/side_by_side.py alternates with
    /// onnxruntime: no reference, GPU or full-sample timings)
    #[arg(long, conflicts_with = "gpu_only")]
    fast_only: bool,
    /// conv2d_gemm.wgsl's GEMM workgroup size instead of the adapter's default (to tune it)
    #[arg(long)]
    gemm_workgroup: Option<u32>,
    /// conv2d_gemm.wgsl's GEMM tile, 4 or 8 (output channels × pixels per invocation), instead of
    /// the adapter's default
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["4", "8"]).map(|t| t.parse::<u32>().expect("4 or 8")))]
    gemm_tile: Option<u32>,
    /// the largest im2col buffer in MiB (a conv whose patches need more runs in chunks of
    /// pixels) instead of the default
    #[arg(long)]
    conv_chunk_mib: Option<u64>,
    /// run the 3×3 stride-1 convs as im2col + GEMM where the adapter would run them as
    /// Winograd (CPU adapters)
    #[arg(long)]
    no_winograd: bool,
    /// store the conv weights as f16 (devices with shader-f16; the arithmetic stays f32)
    #[arg(long)]
    f16_weights: bool,
}

/// The bench's GPU device: the best adapter, with conv2d's GEMM tile and workgroup size from
/// `--gemm-tile`, `--gemm-workgroup`, its patch budget from `--conv-chunk-mib`, `--no-winograd`
/// and `--f16-weights`.
fn bench_device(o: &BenchOptions) -> Result<GpuDevice> {
    let mut gpu = pollster::block_on(GpuDevice::new())?;
    if o.gemm_workgroup.is_some() || o.gemm_tile.is_some() {
        gpu.set_gemm(o.gemm_tile.unwrap_or(gpu.conv.gemm_tile), o.gemm_workgroup.unwrap_or(gpu.conv.gemm_workgroup));
        gpu.check()?;
    }
    if let Some(mib) = o.conv_chunk_mib {
        gpu.conv.col_max_bytes = mib << 20;
    }
    gpu.conv.winograd &= !o.no_winograd;
    if o.f16_weights {
        gpu.set_f16_weights(true)?;
    }
    Ok(gpu)
}

pub fn bench(model: Model, o: BenchOptions) -> Result<()> {
    let (batch, steps, guidance) = (o.batch, o.steps, o.guidance);
    let (h, w) = model.config.sample_size.unwrap_or((32, 32));
    let c = model.config.in_channels;
    let x = Tensor::new(vec![batch, c, h, w], ddim_webgpu::sampler::rng::normal(1, 0, batch * c * h * w))?;
    let ts = vec![500.0; batch];
    let labels = model.config.num_class_embeds.map(|_| vec![0u32; batch]);
    println!("model: {} parameters, {} x {}x{}x{}, batch {batch}", model.weights.parameter_count(), c, h, w, batch);
    if o.fast_only {
        let mut fast = fast_ops(&model, &o)?;
        let (kernel, threads) = (fast.kernel_name(), fast.threads());
        let fast = time_forwards(&mut fast, &model, &x, &ts, labels.as_deref(), 20)?;
        println!("cpu fast forward ({kernel}, threads {threads}): {fast}");
        return Ok(());
    }
    let gpu_conv = if o.cpu_only { None } else { Some(bench_gpu_forward(bench_device(&o)?, &model, &x, &ts, labels.as_deref())?) };
    if !o.gpu_only {
        let reference = time_forwards(&mut ddim_webgpu::reference::ReferenceOps::new(&model), &model, &x, &ts, labels.as_deref(), 5)?;
        println!("cpu reference forward (1 thread): {reference}");
        let mut fast = fast_ops(&model, &o)?;
        let (kernel, threads) = (fast.kernel_name(), fast.threads());
        let fast = time_forwards(&mut fast, &model, &x, &ts, labels.as_deref(), 20)?;
        println!("cpu fast forward ({kernel}, threads {threads}): {fast}");
        if threads > 1 {
            split_against_one_thread_ops(&model, (&x, &ts, labels.as_deref()), &o, threads)?;
        }
        if let Some(mb) = peak_rss_mb() {
            let weights_mb = model.weights.parameter_count() as f64 * 4.0 / 1e6;
            println!("  peak resident memory so far: {mb:.0} MB (f32 weights {weights_mb:.0} MB, held by the model, the reference and the fast engine)");
        }
    }
    // The fast engine's forward by op, and the conv FLOP count the GPU's conv GFLOP/s is taken from.
    let mut profiled = ddim_webgpu::reference::profile::Profiled::new(fast_ops(&model, &o)?);
    let reps = if o.gpu_only { 1 } else { 10 };
    for _ in 0..reps {
        ddim_webgpu::reference::forward_with(&mut profiled, &model.config, &x, &ts, labels.as_deref())?;
    }
    let parts: Vec<String> = profiled.ms.iter().map(|(k, v)| format!("{k} {:.2}", v / reps as f64)).collect();
    println!("  fast forward by op (ms): {}", parts.join(", "));
    let conv_ms = profiled.ms.iter().filter(|(k, _)| k.contains("conv")).map(|(_, v)| v).sum::<f64>();
    println!(
        "  convolutions (group norm + SiLU fused in included): {:.3} GFLOP per forward (direct-conv count) at {:.1} GFLOP/s",
        profiled.conv_flops / reps as f64 / 1e9,
        profiled.conv_flops / conv_ms / 1e6
    );
    if let Some((rounds, done)) = gpu_conv {
        let direct = profiled.conv_flops / reps as f64;
        // Per round: conv GFLOP/s and its share of the matmul's; the round with the median share.
        let share = |ms: &dyn Fn(&ConvRound) -> f64, how: &str, (flops, count): (f64, &str)| {
            let mut shares: Vec<(f64, f64, f64)> = rounds
                .iter()
                .map(|r| {
                    let gflops = flops / ms(r) / 1e6;
                    (100.0 * gflops / r.matmul_gflops, gflops, r.matmul_gflops)
                })
                .collect();
            shares.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (share, gflops, best) = shares[shares.len() / 2];
            println!(
                "gpu convolutions ({how}, im2col or Winograd transforms included, {count}): {gflops:.2} GFLOP/s = {share:.0} % of the best WGSL matmul on this adapter ({best:.2} GFLOP/s): the median of {} alternated rounds ({:.0}–{:.0} %)",
                shares.len(),
                shares[0].0,
                shares[shares.len() - 1].0
            );
        };
        let counts = [(direct, "direct-conv FLOP count"), (done, "FLOPs the GEMMs actually do: Winograd's products and tile padding")];
        for count in counts {
            share(&|r| r.in_pass_ms, "in one pass, as a forward runs them", count);
            share(&|r| r.alone_ms, "each dispatch submitted alone", count);
        }
    }
    let mut opts = RunOptions::new().steps(steps).batch(batch).guidance(guidance);
    if let Some(l) = &labels {
        opts = opts.labels(ClassLabels::Each(l.iter().map(|&v| v as i64).collect()));
    }
    let plan = opts.plan(&model)?;
    if o.cpu_only {
        return Ok(());
    }
    let mut engine = GpuEngine::new(bench_device(&o)?, &model)?;
    let start = Instant::now();
    pollster::block_on(run::run_to_end(&mut engine, &plan))?;
    println!(
        "gpu sample: {steps} DDIM steps, batch {batch}, guidance {guidance} in {:.1} ms ({:.2} ms/step)",
        start.elapsed().as_secs_f64() * 1e3,
        start.elapsed().as_secs_f64() * 1e3 / steps as f64
    );
    Ok(())
}
