//! `ddim`: the native command line over the same engine (forward, sample, bench).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use ddim_webgpu::gpu::engine::GpuEngine;
use ddim_webgpu::gpu::recording::GpuUNet;
use ddim_webgpu::gpu::GpuDevice;
use ddim_webgpu::run::{self, ClassLabels, CpuEngine, Engine, Flow, GivenNoise, RunOptions, StepInfo, View};
use ddim_webgpu::sampler::{SamplerKind, SchedulerConfig};
use ddim_webgpu::{Error, Model, Result, Tensor};
use safetensors::{Dtype, SafeTensors};

#[derive(Parser)]
#[command(name = "ddim", about = "Run a diffusers UNet2DModel with WGSL kernels (or the CPU reference) and sample it with DDIM/DDPM")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Which engine runs the U-Net.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineArg {
    /// WGSL kernels on the best WebGPU adapter
    Gpu,
    /// the fast CPU engine (packed weights, SIMD GEMM)
    Cpu,
    /// the plain CPU reference (the test oracle)
    Reference,
}

fn engine_arg(engine: EngineArg, cpu: bool) -> EngineArg {
    if cpu {
        EngineArg::Cpu
    } else {
        engine
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// One U-Net forward: IN holds `sample` [N,C,H,W], `timestep` [N], optional `class_labels` [N].
    Forward {
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "gpu")]
        engine: EngineArg,
        /// same as --engine cpu
        #[arg(long)]
        cpu: bool,
    },
    /// Sample images from noise with DDIM, DDPM, DPM-Solver++(2M), Euler or Heun.
    Sample {
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        scheduler_config: Option<PathBuf>,
        /// ddim, ddpm, dpm++2m, euler or heun [default: the scheduler config's class, else ddim]
        #[arg(long)]
        sampler: Option<SamplerKind>,
        /// inference steps [default: 50]
        #[arg(long)]
        steps: Option<usize>,
        /// DDIM's eta [default: 0]
        #[arg(long, allow_negative_numbers = true)]
        eta: Option<f32>,
        /// seed of x_T and the step noise [default: 0]
        #[arg(long, conflicts_with = "noise")]
        seed: Option<u64>,
        /// safetensors file with `noise` [N,C,H,W] used as x_T (sets the batch and the size), and
        /// `step_noise` [S,N,C,H,W] for the steps that add noise (DDPM, eta > 0)
        #[arg(long)]
        noise: Option<PathBuf>,
        /// images [default: 4, or the batch of --noise]
        #[arg(long)]
        num: Option<usize>,
        /// class label for every sample (class-conditional models) [default: 0, 1, 2, … mixed]
        #[arg(long, allow_negative_numbers = true)]
        class: Option<i64>,
        /// classifier-free guidance w: (1+w)·ε(c) − w·ε(∅) [default: 0]
        #[arg(long, allow_negative_numbers = true)]
        guidance: Option<f32>,
        #[arg(long, value_enum, default_value = "gpu")]
        engine: EngineArg,
        /// same as --engine cpu
        #[arg(long)]
        cpu: bool,
        /// refuse buffers over this many bytes, as a smaller GPU would (check that a model fits
        /// WebGPU's default 134217728-byte binding limit on a bigger adapter)
        #[arg(long)]
        max_buffer_bytes: Option<u64>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        out_tensor: Option<PathBuf>,
        /// write every x_t as a PNG into this folder
        #[arg(long)]
        frames: Option<PathBuf>,
    },
    /// Time U-Net forwards (GPU and CPU) and a full sample.
    Bench {
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// classifier-free guidance for the full-sample timing (doubles the U-Net batch)
        #[arg(long, default_value_t = 0.0)]
        guidance: f32,
        /// only the CPU engines (no GPU timings)
        #[arg(long)]
        cpu_only: bool,
        /// only peak memory: the fast CPU engine takes the weights over, one forward, VmHWM
        #[arg(long)]
        memory: bool,
        /// a config.json to fill with seeded random weights instead of --model (e.g.
        /// tests/bench/configs/ddpm-cifar10-32.json)
        #[arg(long, conflicts_with = "model")]
        random_config: Option<PathBuf>,
    },
}

fn main() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Forward { model, input, out, engine, cpu } => forward(model, &input, &out, engine_arg(engine, cpu)),
        Cmd::Sample {
            model,
            scheduler_config,
            sampler,
            steps,
            eta,
            seed,
            noise,
            num,
            class,
            guidance,
            engine,
            cpu,
            max_buffer_bytes,
            out,
            out_tensor,
            frames,
        } => {
            let mut opts = RunOptions::new();
            if let Some(kind) = sampler {
                opts = opts.sampler(kind);
            }
            opts = match steps {
                Some(v) => opts.steps(v),
                None => opts,
            };
            opts = match eta {
                Some(v) => opts.eta(v),
                None => opts,
            };
            opts = match seed {
                Some(v) => opts.seed(v),
                None => opts,
            };
            opts = match num {
                Some(v) => opts.batch(v),
                None => opts,
            };
            opts = match class {
                Some(v) => opts.labels(ClassLabels::All(v)),
                None => opts,
            };
            opts = match guidance {
                Some(v) => opts.guidance(v),
                None => opts,
            };
            let engine = engine_arg(engine, cpu);
            sample(model, scheduler_config, opts, noise, (engine, max_buffer_bytes), &out, out_tensor, frames)
        }
        Cmd::Bench { model, batch, steps, guidance, cpu_only, memory, random_config } => {
            let model = match random_config {
                Some(p) => std::fs::read_to_string(&p).map_err(|e| io_err(&p, e)).and_then(|json| Model::random(&json, 0)),
                None => load(model),
            };
            model.and_then(|m| if memory { bench_memory(m, batch) } else { bench(m, batch, steps, guidance, cpu_only) })
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The bundled default model, found next to the executable's source tree or the working directory.
fn default_model() -> PathBuf {
    let rel = Path::new("weights").join("mnist-cond");
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel);
    if here.exists() {
        here
    } else {
        rel
    }
}

fn load(model: Option<PathBuf>) -> Result<Model> {
    let dir = model.unwrap_or_else(default_model);
    Model::load_dir(&dir)
}

fn gpu() -> Result<GpuDevice> {
    let gpu = pollster::block_on(GpuDevice::new())?;
    eprintln!("adapter: {}", gpu.adapter_name());
    Ok(gpu)
}

fn io_err(p: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io { path: p.display().to_string(), msg: e.to_string() }
}

fn read_tensors(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    Ok((bytes, path.display().to_string()))
}

/// Reads tensor `name` of `st` as f32 (F32/F16/BF16/I64/I32 accepted).
fn get_f32(st: &SafeTensors, file: &str, name: &str) -> Result<Option<Tensor>> {
    let view = match st.tensor(name) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let b = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        Dtype::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        d => return Err(Error::Input(format!("{file}: tensor `{name}` has unsupported dtype {d:?}"))),
    };
    Ok(Some(Tensor::new(view.shape().to_vec(), data)?))
}

fn write_tensors(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> =
        tensors.iter().map(|(n, t)| (n.to_string(), bytemuck::cast_slice(&t.data).to_vec(), t.shape.clone())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| (n.clone(), safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).expect("sizes match")))
        .collect();
    let out = safetensors::serialize(views, None).map_err(|e| io_err(path, e))?;
    std::fs::write(path, out).map_err(|e| io_err(path, e))
}

fn forward(model: Option<PathBuf>, input: &Path, out: &Path, engine: EngineArg) -> Result<()> {
    let model = load(model)?;
    let (bytes, file) = read_tensors(input)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors { file: file.clone(), msg: e.to_string() })?;
    let sample = get_f32(&st, &file, "sample")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `sample`")))?;
    let n = sample.shape.first().copied().unwrap_or(0);
    let t = get_f32(&st, &file, "timestep")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `timestep`")))?;
    let timesteps = if t.len() == 1 { vec![t.data[0]; n] } else { t.data.clone() };
    let labels = get_f32(&st, &file, "class_labels")?
        .map(|l| {
            l.data
                .iter()
                .map(|&v| u32::try_from(v as i64).map_err(|_| Error::Input(format!("{file}: class label {v} is negative"))))
                .collect::<Result<Vec<u32>>>()
        })
        .transpose()?;
    let start = Instant::now();
    let labels = labels.as_deref();
    let result = if engine == EngineArg::Reference {
        ddim_webgpu::cpu::forward(&model, &sample, &timesteps, labels)?
    } else if engine == EngineArg::Cpu {
        ddim_webgpu::cpu::forward_with(&mut ddim_webgpu::fast::FastOps::new(&model), &model.config, &sample, &timesteps, labels)?
    } else {
        let mut unet = GpuUNet::new(gpu()?, &model)?;
        pollster::block_on(unet.forward(&sample, &timesteps, labels))?
    };
    eprintln!("forward {:?} in {:.1} ms", result.shape, start.elapsed().as_secs_f64() * 1e3);
    write_tensors(out, &[("sample", &result)])
}

fn read_scheduler(p: &Path) -> Result<SchedulerConfig> {
    SchedulerConfig::from_json(&String::from_utf8_lossy(&std::fs::read(p).map_err(|e| io_err(p, e))?))
}

/// `noise` [N,C,H,W] and, if present, `step_noise` [S,N,C,H,W] from a safetensors file.
fn read_noise(p: &Path) -> Result<GivenNoise> {
    let (bytes, file) = read_tensors(p)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors { file: file.clone(), msg: e.to_string() })?;
    let x_t = get_f32(&st, &file, "noise")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `noise`")))?;
    Ok(GivenNoise { x_t, per_step: get_f32(&st, &file, "step_noise")?, undo: get_f32(&st, &file, "undo_noise")? })
}

/// Samples through the run layer, showing progress, writing frames if asked.
/// `lose`: the test hook of `DDIM_TEST_LOSE_DEVICE_AT_STEP` (the device to lose and the step).
fn sample_with<E: Engine>(
    engine: &mut E,
    plan: &run::RunPlan,
    frames: Option<&Path>,
    lose: Option<(wgpu::Device, usize)>,
) -> Result<Tensor> {
    let bar = indicatif::ProgressBar::new(plan.steps.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} t={msg}").expect("valid template"));
    let mut last = Instant::now();
    let result = pollster::block_on(run::run(engine, plan, async |e: &mut E, info: StepInfo| {
        if let Some(dir) = frames {
            save_png(&dir.join(format!("step_{:04}.png", info.index)), &e.read(View::Xt).await?)?;
        }
        bar.set_message(format!("{} {:.1} ms/step", info.timestep, last.elapsed().as_secs_f64() * 1e3));
        last = Instant::now();
        bar.inc(1);
        if let Some((device, _)) = lose.as_ref().filter(|(_, at)| *at == info.index) {
            device.destroy();
        }
        Ok(Flow::Continue)
    }));
    bar.finish();
    result
}

fn save_png(path: &Path, x: &Tensor) -> Result<()> {
    let (w, h, px) = ddim_webgpu::image_grid::grid_rgba(x, ddim_webgpu::image_grid::grid_cols(x.shape[0]));
    image::save_buffer(path, &px, w as u32, h as u32, image::ExtendedColorType::Rgba8).map_err(|e| io_err(path, e))
}

#[allow(clippy::too_many_arguments)]
fn sample(
    model: Option<PathBuf>,
    sched: Option<PathBuf>,
    mut opts: RunOptions,
    noise: Option<PathBuf>,
    (engine, max_buffer_bytes): (EngineArg, Option<u64>),
    out: &Path,
    out_tensor: Option<PathBuf>,
    frames: Option<PathBuf>,
) -> Result<()> {
    let model = load(model)?;
    if let Some(p) = sched {
        opts = opts.scheduler(read_scheduler(&p)?);
    }
    if let Some(p) = noise {
        opts = opts.noise(read_noise(&p)?);
    }
    let plan = opts.plan(&model)?;
    if let Some(dir) = &frames {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let start = Instant::now();
    let result = if engine == EngineArg::Reference {
        eprintln!("engine: CPU reference");
        sample_with(&mut CpuEngine::reference(&model), &plan, frames.as_deref(), None)?
    } else if engine == EngineArg::Cpu {
        let mut cpu = CpuEngine::new(&model);
        eprintln!("engine: fast CPU ({})", cpu.ops().kernel_name());
        sample_with(&mut cpu, &plan, frames.as_deref(), None)?
    } else {
        let mut gpu = gpu()?;
        if let Some(bytes) = max_buffer_bytes {
            gpu.cap_buffer_bytes(bytes);
        }
        // Test hook: DDIM_TEST_LOSE_DEVICE_AT_STEP=N loses the device after step N (0-based), as
        // a driver reset would, to test that the run ends with a named error.
        let lose = std::env::var("DDIM_TEST_LOSE_DEVICE_AT_STEP").ok().and_then(|s| s.parse().ok()).map(|at| (gpu.device.clone(), at));
        sample_with(&mut GpuEngine::new(gpu, &model)?, &plan, frames.as_deref(), lose)?
    };
    eprintln!("{} U-Net evaluations in {:.2} s", plan.steps.len(), start.elapsed().as_secs_f64());
    save_png(out, &result)?;
    if let Some(p) = out_tensor {
        write_tensors(&p, &[("sample", &result)])?;
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Times the recorded GPU forward alone (no readback).
fn bench_gpu_forward(model: &Model, x: &Tensor, ts: &[f32], labels: Option<&[u32]>) -> Result<()> {
    let [batch, _, h, w] = x.shape[..] else { return Err(Error::Input("bench input is 4-D".into())) };
    let mut unet = GpuUNet::new(pollster::block_on(GpuDevice::new())?, model)?;
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
    Ok(())
}

/// Median (min–max) ms of `reps` forwards after one warm-up.
fn time_forwards<O: ddim_webgpu::cpu::HostOps>(
    ops: &mut O,
    model: &Model,
    x: &Tensor,
    ts: &[f32],
    labels: Option<&[u32]>,
    reps: usize,
) -> Result<String> {
    ddim_webgpu::cpu::forward_with(ops, &model.config, x, ts, labels)?;
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        ddim_webgpu::cpu::forward_with(ops, &model.config, x, ts, labels)?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(format!("{:.2} ms median ({:.2}–{:.2}, {reps} runs)", ms[reps / 2], ms[0], ms[reps - 1]))
}

/// Peak resident memory of this process (VmHWM), in MB, where /proc has it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak memory of the fast CPU engine: the model is loaded, handed over to the engine (which keeps
/// packed conv weights only), and one forward runs; VmHWM against 1.5× weights + the two largest
/// activations.
fn bench_memory(model: Model, batch: usize) -> Result<()> {
    let (h, w) = model.config.sample_size.unwrap_or((32, 32));
    let (c, config) = (model.config.in_channels, model.config.clone());
    let weights_mb = model.weights.parameter_count() as f64 * 4.0 / 1e6;
    let labels = model.config.num_class_embeds.map(|_| vec![0u32; batch]);
    let mut ops = ddim_webgpu::cpu::profile::Profiled::new(ddim_webgpu::fast::FastOps::from_model(model));
    let x = Tensor::new(vec![batch, c, h, w], ddim_webgpu::sampler::rng::normal(1, 0, batch * c * h * w))?;
    let start = Instant::now();
    ddim_webgpu::cpu::forward_with(&mut ops, &config, &x, &vec![500.0; batch], labels.as_deref())?;
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

fn bench(model: Model, batch: usize, steps: usize, guidance: f32, cpu_only: bool) -> Result<()> {
    let (h, w) = model.config.sample_size.unwrap_or((32, 32));
    let c = model.config.in_channels;
    let x = Tensor::new(vec![batch, c, h, w], ddim_webgpu::sampler::rng::normal(1, 0, batch * c * h * w))?;
    let ts = vec![500.0; batch];
    let labels = model.config.num_class_embeds.map(|_| vec![0u32; batch]);
    println!("model: {} parameters, {} x {}x{}x{}, batch {batch}", model.weights.parameter_count(), c, h, w, batch);
    if !cpu_only {
        bench_gpu_forward(&model, &x, &ts, labels.as_deref())?;
    }
    let reference = time_forwards(&mut ddim_webgpu::cpu::CpuOps::new(&model), &model, &x, &ts, labels.as_deref(), 5)?;
    println!("cpu reference forward (1 thread): {reference}");
    let mut fast = ddim_webgpu::fast::FastOps::new(&model);
    let (kernel, threads) = (fast.kernel_name(), fast.threads());
    let fast = time_forwards(&mut fast, &model, &x, &ts, labels.as_deref(), 20)?;
    println!("cpu fast forward ({kernel}, threads {threads}): {fast}");
    if let Some(mb) = peak_rss_mb() {
        let weights_mb = model.weights.parameter_count() as f64 * 4.0 / 1e6;
        println!("  peak resident memory so far: {mb:.0} MB (f32 weights {weights_mb:.0} MB, held by the model, the reference and the fast engine)");
    }
    let mut profiled = ddim_webgpu::cpu::profile::Profiled::new(ddim_webgpu::fast::FastOps::new(&model));
    let reps = 10;
    for _ in 0..reps {
        ddim_webgpu::cpu::forward_with(&mut profiled, &model.config, &x, &ts, labels.as_deref())?;
    }
    let parts: Vec<String> = profiled.ms.iter().map(|(k, v)| format!("{k} {:.2}", v / reps as f64)).collect();
    println!("  fast forward by op (ms): {}", parts.join(", "));
    let conv_ms = profiled.ms.iter().filter(|(k, _)| k.starts_with("conv")).map(|(_, v)| v).sum::<f64>();
    println!(
        "  convolutions: {:.3} GFLOP per forward at {:.1} GFLOP/s",
        profiled.conv_flops / reps as f64 / 1e9,
        profiled.conv_flops / conv_ms / 1e6
    );
    let mut opts = RunOptions::new().steps(steps).batch(batch).guidance(guidance);
    if let Some(l) = &labels {
        opts = opts.labels(ClassLabels::Each(l.iter().map(|&v| v as i64).collect()));
    }
    let plan = opts.plan(&model)?;
    if cpu_only {
        return Ok(());
    }
    let mut engine = GpuEngine::new(pollster::block_on(GpuDevice::new())?, &model)?;
    let start = Instant::now();
    pollster::block_on(run::run_to_end(&mut engine, &plan))?;
    println!(
        "gpu sample: {steps} DDIM steps, batch {batch}, guidance {guidance} in {:.1} ms ({:.2} ms/step)",
        start.elapsed().as_secs_f64() * 1e3,
        start.elapsed().as_secs_f64() * 1e3 / steps as f64
    );
    Ok(())
}
