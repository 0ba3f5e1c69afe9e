//! `ddim`: the native command line over the same engine (forward, sample, edit, invert,
//! interpolate, bench). This file: the commands and their arguments; `io` reads and writes
//! tensors, images and configs; `engine` picks the engine; `bench` measures.

mod bench;
mod engine;
mod io;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};
use ddim_webgpu::gpu::unet::GpuUNet;
use ddim_webgpu::hub;
use ddim_webgpu::run::options::{Edit, DEFAULT_JUMP_LENGTH, DEFAULT_JUMP_N_SAMPLE};
use std::str::FromStr;

use ddim_webgpu::engines::EngineChoice;
use ddim_webgpu::run::{self, ClassLabels, Engine, Flow, GivenNoise, RunOptions, StepInfo, View};
use ddim_webgpu::sampler::SamplerKind;
use ddim_webgpu::{Error, Model, Result, Tensor};

use bench::{bench, bench_matmul, bench_memory, BenchOptions};
use engine::{gpu, make_engine};
use io::*;
use safetensors::SafeTensors;

#[derive(Parser)]
#[command(name = "ddim", about = "Run a diffusers UNet2DModel with WGSL kernels (or the CPU reference) and sample it with DDIM/DDPM")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// `--engine` (or `--cpu`): which engine runs the U-Net.
fn engine_arg(engine: EngineChoice, cpu: bool) -> EngineChoice {
    if cpu {
        EngineChoice::Cpu { threads: None }
    } else {
        engine
    }
}

/// Options every run takes: the model, its scheduler, steps, class, guidance and the engine.
#[derive(clap::Args)]
struct CommonArgs {
    /// a diffusers UNet2DModel folder or pipeline folder, or hf:owner/name[@revision] (a Hub repo,
    /// downloaded into huggingface_hub's cache; $HF_ENDPOINT for a mirror) [default: the bundled model]
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
    /// classifier guidance scale s: ε̂ − s·σ_t·∇ₓ log p(y | x_t, t) (Dhariwal & Nichol) [default: 0]
    #[arg(long, allow_negative_numbers = true)]
    classifier_scale: Option<f32>,
    /// the noise-aware classifier's folder (config.json + model.safetensors, docs/classifier.md)
    /// [default: the bundled digit classifier]
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// the class classifier guidance steers towards [default: --class where the classifier has
    /// it, else 0, 1, 2, … mixed]; `--class 10 --classifier-class 3` makes the bundled model's
    /// unconditional run a 3
    #[arg(long, allow_negative_numbers = true)]
    classifier_class: Option<i64>,
    /// gpu (WGSL kernels on the best WebGPU adapter), cpu (the fast CPU engine: packed weights,
    /// SIMD GEMM; all cores), cpu:N (N threads) or reference (the plain CPU reference, the oracle)
    #[arg(long, default_value = "gpu", value_parser = EngineChoice::from_str)]
    engine: EngineChoice,
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
        if let (Some(p), None | Some(0.0)) = (&self.classifier, self.classifier_scale) {
            eprintln!("--classifier {} is not used without --classifier-scale", p.display());
        }
        if let Some((config, _)) = self.classifier_source()? {
            let scale = self.classifier_scale.unwrap_or(0.0);
            opts = opts.classifier_guidance(&config, scale, self.classifier_class.map(ClassLabels::All));
        }
        Ok(opts)
    }

    /// The classifier's folder and its checked config, where classifier guidance is asked for
    /// (a scale other than 0): what planning needs, without reading the weights.
    fn classifier_source(&self) -> Result<Option<(ddim_webgpu::classifier::ClassifierConfig, PathBuf)>> {
        if self.classifier_scale.unwrap_or(0.0) == 0.0 {
            return Ok(None);
        }
        let dir = self.classifier.clone().unwrap_or_else(|| bundled("digit-classifier"));
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
        Ok(Some((ddim_webgpu::classifier::ClassifierConfig::from_json(&text)?, dir)))
    }

    /// The classifier of classifier guidance, weights and all (the engine loads it once).
    fn classifier(&self) -> Result<Option<ddim_webgpu::classifier::Classifier>> {
        let Some((config, dir)) = self.classifier_source()? else { return Ok(None) };
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let (tensors, dtype) = ddim_webgpu::model::weights::read_tensors(&bytes, "model.safetensors", true)?;
        Ok(Some(ddim_webgpu::classifier::Classifier::from_tensors(config, tensors, dtype)?))
    }

    fn engine(&self) -> EngineChoice {
        engine_arg(self.engine, self.cpu)
    }
}

/// The options of `sample`, `edit` and `inpaint`.
#[derive(clap::Args)]
struct SampleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// a sampler name (ddim, ddpm, dpm++2m, euler, heun; pndm, lms, euler-ancestral, … stepped on the host) or a
    /// diffusers class name [default: the scheduler config's class, else ddim]
    #[arg(long)]
    sampler: Option<SamplerKind>,
    /// DDIM's eta [default: 0]
    #[arg(long, allow_negative_numbers = true)]
    eta: Option<f32>,
    /// rtol and atol of the adaptive ODE solver (--sampler vp-ode-rk45) [default: 1e-5]
    #[arg(long)]
    tolerance: Option<f64>,
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
        if let Some(v) = self.tolerance {
            opts = opts.tolerance(v);
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
        /// a model folder or hf:owner/name[@revision], as for sample
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// gpu, cpu, cpu:N or reference (as for sample)
        #[arg(long, default_value = "gpu", value_parser = EngineChoice::from_str)]
        engine: EngineChoice,
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
        /// a model folder or hf:owner/name[@revision], as for sample
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
    bundled("mnist-cond")
}

/// A folder of `weights/`, found next to the executable's source tree or the working directory.
fn bundled(name: &str) -> PathBuf {
    let rel = Path::new("weights").join(name);
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel);
    if here.exists() {
        here
    } else {
        rel
    }
}

/// `--model`: a local folder, or `hf:owner/name[@revision]` downloaded from the Hub first.
fn load(model: Option<PathBuf>) -> Result<Model> {
    let dir = model.unwrap_or_else(default_model);
    match dir.to_str().filter(|s| s.starts_with(hub::PREFIX)) {
        Some(source) => Model::load_dir(&download(source)?),
        None => Model::load_dir(&dir),
    }
}

/// Downloads a Hub model into the cache (`Hub::from_env`: $HF_ENDPOINT, $HF_HOME, …), the
/// weights' progress as a bar on stderr; the folder to load.
fn download(source: &str) -> Result<PathBuf> {
    let id = hub::HubId::parse(source)?;
    let hub = hub::Hub::from_env();
    eprintln!("hf:{}@{} from {}", id.repo(), id.revision, hub.endpoint());
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut weights = None; // (file, bytes, cached): said in a line where the bar is hidden (no terminal)
    let snapshot = hub.download(&id, &mut |p| {
        let bar = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(p.total.unwrap_or(0));
            let style = indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}");
            bar.set_style(style.expect("valid template"));
            bar.set_message(p.file.to_string());
            bar
        });
        bar.set_position(p.loaded);
        weights = Some((p.file.to_string(), p.loaded, p.cached));
    })?;
    if let (Some(bar), Some((file, bytes, cached))) = (bar, weights) {
        bar.finish();
        if bar.is_hidden() {
            eprintln!("{file}: {bytes} bytes{}", if cached { ", cached" } else { " downloaded" });
        }
    }
    if let Some(note) = snapshot.note {
        eprintln!("{note}");
    }
    eprintln!("model folder: {}", snapshot.dir.display());
    Ok(snapshot.dir)
}

fn forward(model: Option<PathBuf>, input: &Path, out: &Path, engine: EngineChoice) -> Result<()> {
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
    let result = match engine {
        EngineChoice::Reference => ddim_webgpu::reference::forward(&model, &sample, &timesteps, labels)?,
        EngineChoice::Cpu { threads } => {
            let mut ops = ddim_webgpu::fast::FastOps::new(&model);
            if let Some(n) = threads {
                ops = ops.with_threads(n);
            }
            ddim_webgpu::reference::forward_with(&mut ops, &model.config, &sample, &timesteps, labels)?
        }
        EngineChoice::Gpu => {
            let mut unet = GpuUNet::new(gpu()?, &model)?;
            pollster::block_on(unet.forward(&sample, &timesteps, labels))?
        }
    };
    eprintln!("forward {:?} in {:.1} ms", result.shape, start.elapsed().as_secs_f64() * 1e3);
    write_tensors(out, &[("sample", &result)])
}

/// Samples through the run layer, showing progress, writing frames if asked.
/// `lose`: the test hook of `DDIM_TEST_LOSE_DEVICE_AT_STEP` (the device to lose and the step).
fn sample_with<E: Engine>(
    engine: &mut E,
    plan: &run::RunPlan,
    frames: Option<&Path>,
    lose: Option<(wgpu::Device, usize)>,
) -> Result<Tensor> {
    sample_counting(engine, plan, frames, lose).map(|(x, _)| x)
}

/// `sample_with`, also counting the U-Net evaluations (the frames of the reverse and inversion
/// phases).
fn sample_counting<E: Engine>(
    engine: &mut E,
    plan: &run::RunPlan,
    frames: Option<&Path>,
    lose: Option<(wgpu::Device, usize)>,
) -> Result<(Tensor, usize)> {
    let mut evaluations = 0;
    let bar = indicatif::ProgressBar::new(plan.frame_count() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} t={msg}").expect("valid template"));
    let mut last = Instant::now();
    let result = pollster::block_on(run::run(engine, plan, async |e: &mut E, info: StepInfo| {
        if let Some(dir) = frames {
            save_png(&dir.join(format!("step_{:04}.png", info.index)), &e.read(View::Xt).await?)?;
        }
        evaluations += (info.phase != run::Phase::Forward) as usize;
        bar.set_message(format!("{} {} {:.1} ms/frame", info.timestep, info.phase.as_str(), last.elapsed().as_secs_f64() * 1e3));
        last = Instant::now();
        bar.inc(1);
        if let Some((device, _)) = lose.as_ref().filter(|(_, at)| *at == info.index) {
            device.destroy();
        }
        Ok(Flow::Continue)
    }));
    bar.finish();
    result.map(|x| (x, evaluations))
}

/// Runs `plan` on a new engine of `args`, writing frames and the result as asked.
fn run_and_save(args: &SampleArgs, model: &Model, plan: &run::RunPlan) -> Result<Tensor> {
    if let Some(dir) = &args.frames {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let (mut engine, lose) = make_engine(&args.common, model)?;
    let start = Instant::now();
    let (result, evaluations) = sample_counting(&mut engine, plan, args.frames.as_deref(), lose)?;
    // Counted as they happen: an adaptive solver's (RK45) are what its tolerance made them.
    eprintln!("{evaluations} U-Net evaluations in {:.2} s", start.elapsed().as_secs_f64());
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
