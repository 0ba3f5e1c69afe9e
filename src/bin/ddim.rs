//! `ddim`: the native command line over the same engine (forward, sample, bench).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand, ValueEnum};
use ddim_webgpu::gpu::engine::GpuEngine;
use ddim_webgpu::gpu::recording::GpuUNet;
use ddim_webgpu::gpu::GpuDevice;
use ddim_webgpu::run::options::{Edit, DEFAULT_JUMP_LENGTH, DEFAULT_JUMP_N_SAMPLE};
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

/// Options every run takes: the model, its scheduler, steps, class, guidance and the engine.
#[derive(clap::Args)]
struct CommonArgs {
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// inference steps [default: 50]
    #[arg(long)]
    steps: Option<usize>,
    /// class label for every sample (class-conditional models) [default: 0, 1, 2, … mixed; 0 for interpolate]
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
    /// store the GPU's conv weights as f16 (half their memory, f32 arithmetic; the bundled model's
    /// 50-step samples moved by ≤ 3e-5; devices with shader-f16 only)
    #[arg(long)]
    f16_weights: bool,
}

impl CommonArgs {
    fn options(&self) -> Result<RunOptions> {
        let mut opts = RunOptions::new();
        if let Some(p) = &self.scheduler_config {
            opts = opts.scheduler(read_scheduler(p)?);
        }
        if let Some(v) = self.steps {
            opts = opts.steps(v);
        }
        if let Some(v) = self.class {
            opts = opts.labels(ClassLabels::All(v));
        }
        if let Some(v) = self.guidance {
            opts = opts.guidance(v);
        }
        Ok(opts)
    }

    fn engine(&self) -> EngineArg {
        engine_arg(self.engine, self.cpu)
    }
}

/// The options of `sample`, `edit` and `inpaint`.
#[derive(clap::Args)]
struct SampleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// ddim, ddpm, dpm++2m, euler or heun [default: the scheduler config's class, else ddim]
    #[arg(long)]
    sampler: Option<SamplerKind>,
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
    /// images [default: 4, or the batch of --noise or of the image]
    #[arg(long)]
    num: Option<usize>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    out_tensor: Option<PathBuf>,
    /// write every frame (x_t) as a PNG into this folder
    #[arg(long)]
    frames: Option<PathBuf>,
}

impl SampleArgs {
    fn options(&self) -> Result<RunOptions> {
        let mut opts = self.common.options()?;
        if let Some(kind) = self.sampler {
            opts = opts.sampler(kind);
        }
        if let Some(v) = self.eta {
            opts = opts.eta(v);
        }
        if let Some(v) = self.seed {
            opts = opts.seed(v);
        }
        if let Some(v) = self.num {
            opts = opts.batch(v);
        }
        if let Some(p) = &self.noise {
            opts = opts.noise(read_noise(p)?);
        }
        Ok(opts)
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
        #[command(flatten)]
        args: SampleArgs,
    },
    /// SDEdit (image-to-image, as diffusers' img2img): noise INIT to --strength, then denoise it.
    Edit {
        #[command(flatten)]
        args: SampleArgs,
        /// the image to edit: PNG (resized to the model's size) or safetensors `sample` [N,C,H,W]
        #[arg(long)]
        init: PathBuf,
        /// how much to change, 0 < S ≤ 1: the last int(steps·S) steps are run
        #[arg(long)]
        strength: f64,
    },
    /// RePaint inpainting: keep INIT where MASK is white (1), fill where it is black (0).
    Inpaint {
        #[command(flatten)]
        args: SampleArgs,
        /// the image: PNG or safetensors `sample`
        #[arg(long)]
        init: PathBuf,
        /// PNG (grey ≥ 50 % keeps, darker is filled, as diffusers' RePaint pipeline thresholds it)
        /// or safetensors `sample` [N or 1, 1 or C, H, W] with 1 = keep, 0 = fill
        #[arg(long)]
        mask: PathBuf,
        /// RePaint's j: steps taken back up in one jump
        #[arg(long, default_value_t = DEFAULT_JUMP_LENGTH)]
        jump_length: usize,
        /// RePaint's r: times each jump is resampled
        #[arg(long, default_value_t = DEFAULT_JUMP_N_SAMPLE)]
        jump_n_sample: usize,
    },
    /// DDIM inversion: INIT run up the deterministic ODE to its x_T, then DDIM back down; prints
    /// the reconstruction error.
    Invert {
        #[command(flatten)]
        common: CommonArgs,
        /// the image to invert: PNG or safetensors `sample`
        #[arg(long)]
        init: PathBuf,
        /// where x_T goes (safetensors, key `noise`: `ddim sample --noise` and `ddim interpolate` read it)
        #[arg(long)]
        out_tensor: PathBuf,
        /// the reconstruction from x_T, as PNG
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Walk between two x_T (seeds or inverted images) by slerp and denoise each point: a strip.
    Interpolate {
        #[command(flatten)]
        common: CommonArgs,
        /// ddim, dpm++2m, euler or heun (deterministic samplers) [default: ddim]
        #[arg(long)]
        sampler: Option<SamplerKind>,
        /// a seed, or a safetensors x_T (`ddim invert --out-tensor`)
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// images in the strip, both ends included
        #[arg(long)]
        frames: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        out_tensor: Option<PathBuf>,
    },
    /// Time U-Net forwards (GPU and CPU) and a full sample.
    Bench {
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        opts: BenchOptions,
        /// only peak memory: the fast CPU engine takes the weights over, one forward, VmHWM
        #[arg(long)]
        memory: bool,
        /// a config.json to fill with seeded random weights instead of --model (e.g.
        /// tests/bench/configs/ddpm-cifar10-32.json)
        #[arg(long, conflicts_with = "model")]
        random_config: Option<PathBuf>,
    },
    /// GFLOP/s of the WGSL matmul variants in shaders/matmul.wgsl on the best adapter (the
    /// yardstick for conv2d's GFLOP/s in `ddim bench`)
    BenchMatmul {
        /// M = N = K
        #[arg(long, default_value_t = 256)]
        size: usize,
    },
}

fn main() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Forward { model, input, out, engine, cpu } => forward(model, &input, &out, engine_arg(engine, cpu)),
        Cmd::Sample { args } => args.options().and_then(|o| sample(&args, o)),
        Cmd::Edit { args, init, strength } => {
            let edit = |m: &Model| Ok(Edit::Img2Img { image: read_image(&init, m)?, strength });
            args.options().and_then(|o| edit_run(&args, o, edit))
        }
        Cmd::Inpaint { args, init, mask, jump_length, jump_n_sample } => {
            let edit =
                |m: &Model| Ok(Edit::Inpaint { image: read_image(&init, m)?, mask: read_mask(&mask, m)?, jump_length, jump_n_sample });
            args.options().and_then(|o| edit_run(&args, o, edit))
        }
        Cmd::Invert { common, init, out_tensor, out } => invert(&common, &init, &out_tensor, out.as_deref()),
        Cmd::Interpolate { common, sampler, from, to, frames, out, out_tensor } => {
            interpolate(&common, sampler, (&from, &to), frames, &out, out_tensor.as_deref())
        }
        Cmd::Bench { model, opts, memory, random_config } => {
            let model = match random_config {
                Some(p) => std::fs::read_to_string(&p).map_err(|e| io_err(&p, e)).and_then(|json| Model::random(&json, 0)),
                None => load(model),
            };
            model.and_then(|m| if memory { bench_memory(m, opts.batch) } else { bench(m, opts) })
        }
        Cmd::BenchMatmul { size } => bench_matmul(size).map(|_| ()),
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
    let bar = indicatif::ProgressBar::new(plan.frame_count() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} t={msg}").expect("valid template"));
    let mut last = Instant::now();
    let result = pollster::block_on(run::run(engine, plan, async |e: &mut E, info: StepInfo| {
        if let Some(dir) = frames {
            save_png(&dir.join(format!("step_{:04}.png", info.index)), &e.read(View::Xt).await?)?;
        }
        bar.set_message(format!("{} {} {:.1} ms/frame", info.timestep, info.phase.as_str(), last.elapsed().as_secs_f64() * 1e3));
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

/// The engine a command runs on, chosen at run time.
enum AnyEngine {
    Gpu(Box<GpuEngine>),
    Cpu(CpuEngine),
    Reference(CpuEngine<ddim_webgpu::cpu::CpuOps>),
}

/// Delegates an `Engine` call to the engine inside.
macro_rules! each_engine {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            AnyEngine::Gpu($e) => $call,
            AnyEngine::Cpu($e) => $call,
            AnyEngine::Reference($e) => $call,
        }
    };
}

impl Engine for AnyEngine {
    async fn start(&mut self, plan: &run::RunPlan) -> Result<()> {
        each_engine!(self, e => e.start(plan).await)
    }
    fn step(&mut self, plan: &run::RunPlan, index: usize, noise: Option<&[f32]>) -> Result<()> {
        each_engine!(self, e => e.step(plan, index, noise))
    }
    async fn sync(&mut self) -> Result<()> {
        each_engine!(self, e => e.sync().await)
    }
    async fn read(&mut self, view: View) -> Result<Tensor> {
        each_engine!(self, e => e.read(view).await)
    }
    fn write_x(&mut self, x: &[f32]) -> Result<()> {
        each_engine!(self, e => e.write_x(x))
    }
    async fn first_non_finite_step(&mut self) -> Result<Option<usize>> {
        each_engine!(self, e => e.first_non_finite_step().await)
    }
}

/// The engine of `args`, and the device-loss test hook's device for the GPU engine
/// (`DDIM_TEST_LOSE_DEVICE_AT_STEP=N` loses it after step N, 0-based, as a driver reset would).
fn make_engine(args: &CommonArgs, model: &Model) -> Result<(AnyEngine, Option<(wgpu::Device, usize)>)> {
    Ok(match args.engine() {
        EngineArg::Reference => {
            eprintln!("engine: CPU reference");
            (AnyEngine::Reference(CpuEngine::reference(model)), None)
        }
        EngineArg::Cpu => {
            let cpu = CpuEngine::new(model);
            eprintln!("engine: fast CPU ({})", cpu.ops().kernel_name());
            (AnyEngine::Cpu(cpu), None)
        }
        EngineArg::Gpu => {
            let mut gpu = gpu()?;
            if let Some(bytes) = args.max_buffer_bytes {
                gpu.cap_buffer_bytes(bytes);
            }
            if args.f16_weights {
                gpu.set_f16_weights(true)?;
            }
            let lose = std::env::var("DDIM_TEST_LOSE_DEVICE_AT_STEP").ok().and_then(|s| s.parse().ok()).map(|at| (gpu.device.clone(), at));
            (AnyEngine::Gpu(Box::new(GpuEngine::new(gpu, model)?)), lose)
        }
    })
}

/// Runs `plan` on a new engine of `args`, writing frames and the result as asked.
fn run_and_save(args: &SampleArgs, model: &Model, plan: &run::RunPlan) -> Result<Tensor> {
    if let Some(dir) = &args.frames {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let (mut engine, lose) = make_engine(&args.common, model)?;
    let start = Instant::now();
    let result = sample_with(&mut engine, plan, args.frames.as_deref(), lose)?;
    eprintln!("{} U-Net evaluations in {:.2} s", plan.steps.len(), start.elapsed().as_secs_f64());
    save_png(&args.out, &result)?;
    if let Some(p) = &args.out_tensor {
        write_tensors(p, &[("sample", &result)])?;
    }
    eprintln!("wrote {}", args.out.display());
    Ok(result)
}

fn sample(args: &SampleArgs, opts: RunOptions) -> Result<()> {
    let model = load(args.common.model.clone())?;
    run_and_save(args, &model, &opts.plan(&model)?).map(|_| ())
}

/// `edit` and `inpaint`: the image (and mask) read for the model, then one run.
fn edit_run(args: &SampleArgs, opts: RunOptions, edit: impl FnOnce(&Model) -> Result<Edit>) -> Result<()> {
    let model = load(args.common.model.clone())?;
    let plan = opts.edit(edit(&model)?).plan(&model)?;
    if let Some(known) = &plan.known {
        let jumps = known.after.iter().filter(|r| r.undo.is_some()).count();
        eprintln!("RePaint: {} evaluations, {jumps} jumps back", plan.steps.len());
    }
    run_and_save(args, &model, &plan).map(|_| ())
}

/// Reconstruction error of `got` against `want` (images in −1 … 1): RMSE, max |err|, PSNR over the range 2.
fn invert(args: &CommonArgs, init: &Path, out_tensor: &Path, out: Option<&Path>) -> Result<()> {
    let model = load(args.model.clone())?;
    let image = read_image(init, &model)?;
    let opts = args.options()?.edit(Edit::Invert { image: image.clone() });
    let plan = opts.plan(&model)?;
    let (mut engine, _) = make_engine(args, &model)?;
    let x_t = sample_with(&mut engine, &plan, None, None)?;
    write_tensors(out_tensor, &[("noise", &x_t)])?;
    eprintln!("wrote x_T to {}", out_tensor.display());
    let recon = opts.reconstruction(x_t).plan(&model)?;
    let recon = sample_with(&mut engine, &recon, None, None)?;
    let (rmse, max, psnr) = recon.reconstruction_error(&image);
    println!(
        "reconstruction error ({} DDIM steps each way): RMSE {rmse:.4}, max |err| {max:.4}, PSNR {psnr:.1} dB (images in −1 … 1)",
        plan.steps.len()
    );
    if let Some(p) = out {
        save_png(p, &recon)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// x_T of one image: the first item of seed S's x_T, or the first of a safetensors `noise` (or `sample`).
fn read_latent(spec: &str, model: &Model) -> Result<Tensor> {
    let (h, w) = model.config.sample_size.unwrap_or((32, 32));
    let c = model.config.in_channels;
    if let Ok(seed) = spec.parse::<u64>() {
        return Tensor::new(vec![1, c, h, w], ddim_webgpu::sampler::rng::normal(seed, 0, c * h * w));
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(Error::Input(format!("{spec:?}: neither a seed (a whole number) nor an existing x_T file")));
    }
    let (bytes, file) = read_tensors(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors { file: file.clone(), msg: e.to_string() })?;
    let t = match get_f32(&st, &file, "noise")? {
        Some(t) => t,
        None => get_f32(&st, &file, "sample")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `noise` or `sample`")))?,
    };
    match t.shape[..] {
        [_, tc, th, tw] if tc == c => Tensor::new(vec![1, c, th, tw], t.data[..c * th * tw].to_vec()),
        _ => Err(Error::Input(format!("{file}: x_T is {:?}, the model needs [N, {c}, H, W]", t.shape))),
    }
}

fn interpolate(
    args: &CommonArgs,
    sampler: Option<SamplerKind>,
    (from, to): (&str, &str),
    frames: usize,
    out: &Path,
    out_tensor: Option<&Path>,
) -> Result<()> {
    let model = load(args.model.clone())?;
    let (a, b) = (read_latent(from, &model)?, read_latent(to, &model)?);
    if a.shape != b.shape {
        return Err(Error::Input(format!("the two x_T differ in shape: {:?} and {:?}", a.shape, b.shape)));
    }
    if frames < 2 {
        return Err(Error::Input(format!("--frames {frames}: a strip needs at least 2 (both ends)")));
    }
    let kind = sampler.unwrap_or(SamplerKind::Ddim);
    if kind == SamplerKind::Ddpm {
        return Err(Error::Input(
            "interpolate needs a deterministic sampler (ddim, dpm++2m, euler or heun): DDPM adds fresh noise at every step".into(),
        ));
    }
    let x_t = Tensor::new(vec![frames, a.shape[1], a.shape[2], a.shape[3]], ddim_webgpu::sampler::slerp_frames(&a.data, &b.data, frames))?;
    let mut opts = args.options()?.sampler(kind).noise(GivenNoise { x_t, per_step: None, undo: None });
    if model.config.num_class_embeds.is_some() && args.class.is_none() {
        opts = opts.labels(ClassLabels::All(0));
        eprintln!("class 0 for every frame (--class C to choose)");
    }
    let plan = opts.plan(&model)?;
    let (mut engine, _) = make_engine(args, &model)?;
    let result = sample_with(&mut engine, &plan, None, None)?;
    let (w, h, px) = ddim_webgpu::image_grid::grid_rgba(&result, frames);
    image::save_buffer(out, &px, w as u32, h as u32, image::ExtendedColorType::Rgba8).map_err(|e| io_err(out, e))?;
    if let Some(p) = out_tensor {
        write_tensors(p, &[("sample", &result)])?;
    }
    eprintln!("wrote {} ({frames} frames)", out.display());
    Ok(())
}

/// An image for the model: a PNG (grey for 1 channel, RGB for 3; resized to the model's
/// sample_size) as [1, C, H, W] in −1 … 1, or a safetensors `sample` [N, C, H, W] as is.
fn read_image(path: &Path, model: &Model) -> Result<Tensor> {
    read_picture(path, model, false)
}

/// A RePaint mask: a PNG's grey ≥ 0.5 keeps (1), darker is filled (0); or a safetensors `sample`.
fn read_mask(path: &Path, model: &Model) -> Result<Tensor> {
    read_picture(path, model, true)
}

fn read_picture(path: &Path, model: &Model, mask: bool) -> Result<Tensor> {
    let is_png = std::fs::read(path).map_err(|e| io_err(path, e))?.starts_with(b"\x89PNG");
    if !is_png {
        let (bytes, file) = read_tensors(path)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Safetensors { file: file.clone(), msg: format!("{e} (expected a PNG or a safetensors file)") })?;
        let t = get_f32(&st, &file, "sample")?.ok_or_else(|| Error::Input(format!("{file}: no tensor `sample`")))?;
        return match t.shape.len() {
            3 => Tensor::new([&[1][..], &t.shape[..]].concat(), t.data),
            4 => Ok(t),
            _ => Err(Error::Input(format!("{file}: `sample` is {:?}, expected [N, C, H, W]", t.shape))),
        };
    }
    let img = image::open(path).map_err(|e| io_err(path, e))?;
    let (h, w) = model.config.sample_size.unwrap_or((img.height() as usize, img.width() as usize));
    if (img.width() as usize, img.height() as usize) != (w, h) {
        eprintln!("{}: {}x{} resized to the model's {w}x{h}", path.display(), img.width(), img.height());
    }
    let img = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    let c = if mask { 1 } else { model.config.in_channels };
    let planes: Vec<Vec<f32>> = match c {
        1 => vec![img.to_luma8().pixels().map(|p| p.0[0] as f32 / 255.0).collect()],
        3 => {
            let rgb = img.to_rgb8();
            (0..3).map(|ch| rgb.pixels().map(|p| p.0[ch] as f32 / 255.0).collect()).collect()
        }
        _ => {
            return Err(Error::Input(format!("a PNG gives 1 or 3 channels; this model has in_channels = {c}: give a safetensors `sample`")))
        }
    };
    let data = planes.concat().into_iter().map(|v| if mask { (v >= 0.5) as u8 as f32 } else { v * 2.0 - 1.0 }).collect();
    Tensor::new(vec![1, c, h, w], data)
}

/// GFLOP/s of each matmul.wgsl variant at M = N = K = `size` (median of 10 after a warm-up),
/// checked against a CPU product so a fast wrong kernel cannot win.
fn bench_matmul(size: usize) -> Result<f64> {
    let gpu = pollster::block_on(GpuDevice::new())?;
    println!("adapter: {}", gpu.adapter_name());
    let best = bench_matmul_on(&gpu, size, true)?;
    println!("best WGSL matmul: {best:.2} GFLOP/s");
    Ok(best)
}

/// The best GFLOP/s of the matmul.wgsl variants (each one printed where `print`).
fn bench_matmul_on(gpu: &GpuDevice, size: usize, print: bool) -> Result<f64> {
    let n = size.next_multiple_of(64);
    let a = ddim_webgpu::sampler::rng::normal(1, 0, n * n);
    let b = ddim_webgpu::sampler::rng::normal(2, 0, n * n);
    let packed = ddim_webgpu::gpu::recorder::pack_conv_weight(&Tensor::new(vec![n, n, 1, 1], a.clone())?);
    let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("matmul"),
        source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/matmul.wgsl").into()),
    });
    let (bb, cb) = (gpu.upload(&b, "matmul b")?, gpu.storage_buffer((n * n * 4) as u64, "matmul c")?);
    let n32 = n as u32;
    let params = gpu.params(&ddim_webgpu::gpu::recorder::MatmulParams { m: n32, n: n32, k: n32, _p: 0 });
    let mut best = 0.0f64;
    for (entry, a_data, groups) in [
        ("tile4x4", &a, [(n * n / 16).div_ceil(64) as u32, 1, 1]),
        ("tile8x8", &packed, [(n * n / 64).div_ceil(64) as u32, 1, 1]),
        ("tile8x8_k2", &packed, [(n * n / 64).div_ceil(64) as u32, 1, 1]),
        ("workgroup_tiled", &a, [(n / 64) as u32, (n / 64) as u32, 1]),
    ] {
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let ab = gpu.upload(a_data, "matmul a")?;
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
        run();
        let c = pollster::block_on(gpu.read(&cb, n * n))?;
        let (i, j) = (n / 3, n / 2 + 1);
        let want: f64 = (0..n).map(|k| a[i * n + k] as f64 * b[k * n + j] as f64).sum();
        if (c[i * n + j] as f64 - want).abs() > 1e-3 * (1.0 + want.abs()) {
            return Err(Error::Gpu(format!("matmul {entry}: c[{i},{j}] = {} but the product is {want}", c[i * n + j])));
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
            println!("  matmul {entry} {n}³: {:.2} ms median ({:.2}–{:.2}), {gflops:.2} GFLOP/s", ms[5], ms[0], ms[9]);
        }
        best = best.max(gflops);
    }
    Ok(best)
}

/// Times the recorded GPU forward alone (no readback); returns `GPU_CONV_ROUNDS` rounds of the
/// time its conv2d kernels took and the best matmul GFLOP/s of the same adapter right after.
fn bench_gpu_forward(gpu: GpuDevice, model: &Model, x: &Tensor, ts: &[f32], labels: Option<&[u32]>) -> Result<Vec<ConvRound>> {
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
    Ok(rounds)
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

/// `ddim bench`'s flags (all but the model and --memory).
#[derive(clap::Args)]
struct BenchOptions {
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
    /// only the GPU engine (the CPU engines' timings are skipped: for big shapes on a real GPU)
    #[arg(long, conflicts_with = "cpu_only")]
    gpu_only: bool,
    /// conv2d.wgsl's GEMM workgroup size instead of the adapter's default (to tune it)
    #[arg(long)]
    gemm_workgroup: Option<u32>,
    /// conv2d.wgsl's GEMM tile, 4 or 8 (output channels × pixels per invocation), instead of
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
        gpu.set_gemm(o.gemm_tile.unwrap_or(gpu.gemm_tile), o.gemm_workgroup.unwrap_or(gpu.gemm_workgroup));
        gpu.check()?;
    }
    if let Some(mib) = o.conv_chunk_mib {
        gpu.conv_col_max_bytes = mib << 20;
    }
    gpu.conv_winograd &= !o.no_winograd;
    if o.f16_weights {
        gpu.set_f16_weights(true)?;
    }
    Ok(gpu)
}

fn bench(model: Model, o: BenchOptions) -> Result<()> {
    let (batch, steps, guidance) = (o.batch, o.steps, o.guidance);
    let (h, w) = model.config.sample_size.unwrap_or((32, 32));
    let c = model.config.in_channels;
    let x = Tensor::new(vec![batch, c, h, w], ddim_webgpu::sampler::rng::normal(1, 0, batch * c * h * w))?;
    let ts = vec![500.0; batch];
    let labels = model.config.num_class_embeds.map(|_| vec![0u32; batch]);
    println!("model: {} parameters, {} x {}x{}x{}, batch {batch}", model.weights.parameter_count(), c, h, w, batch);
    let gpu_conv = if o.cpu_only { None } else { Some(bench_gpu_forward(bench_device(&o)?, &model, &x, &ts, labels.as_deref())?) };
    if !o.gpu_only {
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
    }
    // The fast engine's forward by op, and the conv FLOP count the GPU's conv GFLOP/s is taken from.
    let mut profiled = ddim_webgpu::cpu::profile::Profiled::new(ddim_webgpu::fast::FastOps::new(&model));
    let reps = if o.gpu_only { 1 } else { 10 };
    for _ in 0..reps {
        ddim_webgpu::cpu::forward_with(&mut profiled, &model.config, &x, &ts, labels.as_deref())?;
    }
    let parts: Vec<String> = profiled.ms.iter().map(|(k, v)| format!("{k} {:.2}", v / reps as f64)).collect();
    println!("  fast forward by op (ms): {}", parts.join(", "));
    let conv_ms = profiled.ms.iter().filter(|(k, _)| k.contains("conv")).map(|(_, v)| v).sum::<f64>();
    println!(
        "  convolutions (group norm + SiLU fused in included): {:.3} GFLOP per forward (direct-conv count) at {:.1} GFLOP/s",
        profiled.conv_flops / reps as f64 / 1e9,
        profiled.conv_flops / conv_ms / 1e6
    );
    if let Some(rounds) = gpu_conv {
        let flops = profiled.conv_flops / reps as f64;
        // Per round: conv GFLOP/s and its share of the matmul's; the round with the median share.
        let share = |ms: &dyn Fn(&ConvRound) -> f64, how: &str| {
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
                "gpu convolutions ({how}, im2col or Winograd transforms included, direct-conv FLOP count): {gflops:.2} GFLOP/s = {share:.0} % of the best WGSL matmul on this adapter ({best:.2} GFLOP/s): the median of {} alternated rounds ({:.0}–{:.0} %)",
                shares.len(),
                shares[0].0,
                shares[shares.len() - 1].0
            );
        };
        share(&|r| r.in_pass_ms, "in one pass, as a forward runs them");
        share(&|r| r.alone_ms, "each dispatch submitted alone");
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
