//! `ddim`: the native command line over the same engine (forward, sample, bench).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use ddim_webgpu::gpu::program::GpuEngine;
use ddim_webgpu::gpu::sampler::GpuSampler;
use ddim_webgpu::gpu::Gpu;
use ddim_webgpu::sampler::{self, NoiseSource, RunPlan, SampleOptions, SamplerKind, Schedule};
use ddim_webgpu::{Error, Model, Result, Tensor};
use safetensors::{Dtype, SafeTensors};

#[derive(Parser)]
#[command(name = "ddim", about = "Run a diffusers UNet2DModel with WGSL kernels (or the CPU reference) and sample it with DDIM/DDPM")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum SamplerArg {
    Ddim,
    Ddpm,
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
        #[arg(long)]
        cpu: bool,
    },
    /// Sample images with DDIM (or DDPM) from noise.
    Sample {
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        scheduler_config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "ddim")]
        sampler: SamplerArg,
        #[arg(long, default_value_t = 50)]
        steps: usize,
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        eta: f32,
        #[arg(long, conflicts_with = "noise")]
        seed: Option<u64>,
        /// safetensors file with `noise` [N,C,H,W] used as x_T
        #[arg(long)]
        noise: Option<PathBuf>,
        #[arg(long, default_value_t = 16)]
        num: usize,
        /// class label for every sample (class-conditional models)
        #[arg(long)]
        class: Option<u32>,
        /// classifier-free guidance w: (1+w)·ε(c) − w·ε(∅)
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        guidance: f32,
        #[arg(long)]
        cpu: bool,
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
    },
}

fn main() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Forward { model, input, out, cpu } => forward(model, &input, &out, cpu),
        Cmd::Sample { model, scheduler_config, sampler, steps, eta, seed, noise, num, class, guidance, cpu, out, out_tensor, frames } => {
            let kind = match sampler { SamplerArg::Ddim => SamplerKind::Ddim, SamplerArg::Ddpm => SamplerKind::Ddpm };
            let opts = SampleOptions { kind, steps, eta, seed: seed.unwrap_or(0), batch: num,
                                       class_labels: class.map(|c| vec![c; num]), guidance };
            sample(model, scheduler_config, opts, noise, cpu, &out, out_tensor, frames)
        }
        Cmd::Bench { model, batch, steps, guidance } => bench(model, batch, steps, guidance),
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
    if here.exists() { here } else { rel }
}

fn load(model: Option<PathBuf>) -> Result<Model> {
    let dir = model.unwrap_or_else(default_model);
    Model::load_dir(&dir)
}

fn gpu() -> Result<Gpu> {
    let gpu = pollster::block_on(Gpu::new())?;
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
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors.iter()
        .map(|(n, t)| (n.to_string(), bytemuck::cast_slice(&t.data).to_vec(), t.shape.clone()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes.iter()
        .map(|(n, b, s)| (n.clone(), safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).expect("sizes match")))
        .collect();
    let out = safetensors::serialize(views, None).map_err(|e| io_err(path, e))?;
    std::fs::write(path, out).map_err(|e| io_err(path, e))
}

fn forward(model: Option<PathBuf>, input: &Path, out: &Path, cpu: bool) -> Result<()> {
    let model = load(model)?;
    let (bytes, file) = read_tensors(input)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors { file: file.clone(), msg: e.to_string() })?;
    let sample = get_f32(&st, &file, "sample")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `sample`")))?;
    let n = sample.shape.first().copied().unwrap_or(0);
    let t = get_f32(&st, &file, "timestep")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `timestep`")))?;
    let timesteps = if t.len() == 1 { vec![t.data[0]; n] } else { t.data.clone() };
    let labels: Option<Vec<u32>> = get_f32(&st, &file, "class_labels")?.map(|l| l.data.iter().map(|&v| v.max(0.0) as u32).collect());
    let start = Instant::now();
    let result = if cpu {
        ddim_webgpu::cpu::forward(&model, &sample, &timesteps, labels.as_deref())?
    } else {
        let mut engine = GpuEngine::new(gpu()?, &model)?;
        pollster::block_on(engine.forward(&sample, &timesteps, labels.as_deref()))?
    };
    eprintln!("forward {:?} in {:.1} ms", result.shape, start.elapsed().as_secs_f64() * 1e3);
    write_tensors(out, &[("sample", &result)])
}

fn schedule_for(model: &Model, file: Option<PathBuf>) -> Result<Schedule> {
    match file {
        Some(p) => Schedule::from_json(&String::from_utf8_lossy(&std::fs::read(&p).map_err(|e| io_err(&p, e))?)),
        None => match &model.scheduler_config {
            Some(text) => Schedule::from_json(text),
            None => Schedule::new(Default::default()),
        },
    }
}

fn save_png(path: &Path, x: &Tensor) -> Result<()> {
    let (w, h, px) = ddim_webgpu::present::grid_rgba(x, ddim_webgpu::present::grid_cols(x.shape[0]));
    image::save_buffer(path, &px, w as u32, h as u32, image::ExtendedColorType::Rgba8).map_err(|e| io_err(path, e))
}

#[allow(clippy::too_many_arguments)]
fn sample(model: Option<PathBuf>, sched: Option<PathBuf>, opts: SampleOptions, noise: Option<PathBuf>, cpu: bool,
          out: &Path, out_tensor: Option<PathBuf>, frames: Option<PathBuf>) -> Result<()> {
    let model = load(model)?;
    let schedule = schedule_for(&model, sched)?;
    let (h, w) = model.config.sample_size.ok_or_else(|| Error::Config("config has no sample_size: cannot pick an image size".into()))?;
    let noise = match noise {
        Some(p) => {
            let (bytes, file) = read_tensors(&p)?;
            let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors { file: file.clone(), msg: e.to_string() })?;
            let t = get_f32(&st, &file, "noise")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `noise`")))?;
            NoiseSource::Given { x_t: t.data, per_step: Vec::new() }
        }
        None => NoiseSource::Seed(opts.seed),
    };
    let plan = RunPlan::new(&model, &schedule, &opts, noise, h, w)?;
    if let Some(dir) = &frames {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let bar = indicatif::ProgressBar::new(plan.steps.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} t={msg}").expect("valid template"));
    let start = Instant::now();
    let frame = |i: usize, x: &Tensor| -> Result<()> {
        match &frames { Some(d) => save_png(&d.join(format!("step_{i:04}.png")), x), None => Ok(()) }
    };
    let result = if cpu {
        eprintln!("engine: CPU reference");
        let mut last = Instant::now();
        let mut err = None;
        let res = sampler::run_cpu(&model, &plan, |info, x, _| {
            bar.set_message(format!("{} {:.1} ms/step", info.timestep, last.elapsed().as_secs_f64() * 1e3));
            last = Instant::now();
            bar.inc(1);
            if frames.is_some() {
                if let Err(e) = Tensor::new(plan.shape.to_vec(), x.to_vec()).and_then(|t| frame(info.index, &t)) { err = Some(e); return false; }
            }
            true
        });
        if let Some(e) = err { return Err(e); }
        res?
    } else {
        let mut engine = GpuEngine::new(gpu()?, &model)?;
        let mut s = GpuSampler::new(&mut engine, plan)?;
        let gpu = &engine.gpu;
        let mut last = Instant::now();
        while let Some(info) = s.step(gpu, |_| {})? {
            if frames.is_some() {
                frame(info.index, &pollster::block_on(s.read_x(gpu))?)?;
            } else {
                gpu.wait();
            }
            bar.set_message(format!("{} {:.1} ms/step", info.timestep, last.elapsed().as_secs_f64() * 1e3));
            last = Instant::now();
            bar.inc(1);
        }
        pollster::block_on(s.read_x(gpu))?
    };
    bar.finish();
    eprintln!("{} steps in {:.2} s", opts.steps, start.elapsed().as_secs_f64());
    save_png(out, &result)?;
    if let Some(p) = out_tensor {
        write_tensors(&p, &[("sample", &result)])?;
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn bench(model: Option<PathBuf>, batch: usize, steps: usize, guidance: f32) -> Result<()> {
    let model = load(model)?;
    let (h, w) = model.config.sample_size.unwrap_or((32, 32));
    let c = model.config.in_channels;
    let x = Tensor::new(vec![batch, c, h, w], ddim_webgpu::sampler::rng::normal(1, 0, batch * c * h * w))?;
    let ts = vec![500.0; batch];
    let labels = model.config.num_class_embeds.map(|_| vec![0u32; batch]);
    println!("model: {} parameters, {} x {}x{}x{}, batch {batch}", model.weights.parameter_count(), c, h, w, batch);
    let mut engine = GpuEngine::new(pollster::block_on(Gpu::new())?, &model)?;
    println!("adapter: {}", engine.gpu.adapter_name());
    pollster::block_on(engine.forward(&x, &ts, labels.as_deref()))?; // records the program, warms up
    let prog = engine.program(batch, h, w)?;
    let reps = 10;
    let start = Instant::now();
    for _ in 0..reps {
        let mut enc = engine.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            prog.encode(&mut pass);
        }
        engine.gpu.queue.submit([enc.finish()]);
        engine.gpu.wait();
    }
    let gpu_ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("gpu forward: {gpu_ms:.2} ms ({} dispatches, weights {:.1} MB, activations {:.1} MB)", prog.dispatch_count(),
             engine.weights.bytes as f64 / 1e6, engine.activation_bytes() as f64 / 1e6);
    let start = Instant::now();
    let cpu_reps = 3;
    let mut backend = ddim_webgpu::cpu::CpuBackend::new(&model);
    for _ in 0..cpu_reps {
        ddim_webgpu::cpu::forward_with(&mut backend, &model, &x, &ts, labels.as_deref())?;
    }
    println!("cpu forward: {:.2} ms", start.elapsed().as_secs_f64() * 1e3 / cpu_reps as f64);
    let schedule = schedule_for(&model, None)?;
    let opts = SampleOptions { steps, batch, class_labels: labels.clone(), guidance, ..Default::default() };
    let plan = RunPlan::new(&model, &schedule, &opts, NoiseSource::Seed(0), h, w)?;
    let start = Instant::now();
    let mut s = GpuSampler::new(&mut engine, plan)?;
    while s.step(&engine.gpu, |_| {})?.is_some() {}
    pollster::block_on(s.read_x(&engine.gpu))?;
    println!("gpu sample: {steps} DDIM steps, batch {batch}, guidance {guidance} in {:.1} ms ({:.2} ms/step)",
             start.elapsed().as_secs_f64() * 1e3, start.elapsed().as_secs_f64() * 1e3 / steps as f64);
    Ok(())
}
