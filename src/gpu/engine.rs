//! The GPU engine of the run layer: x_t never leaves the device. A step is one submission: copy
//! x_t into the recorded forward's input (twice when guiding), the recorded U-Net, and the fused
//! scheduler update (`shaders/scheduler_step.wgsl`, DDIM and DDPM alike).

use std::rc::Rc;

use super::classifier::{GpuClassifier, RecordedGradient};
use super::draw::Look;
use super::ops::scheduler_step::SchedulerStepParams;
use super::unet::{GpuUNet, RecordedForward};
use super::{grid, GpuDevice};
use crate::classifier::Classifier;
use crate::error::{Error, Result};
use crate::run::cpu::held;
use crate::run::{Engine, RunPlan, View};
use crate::{Model, Tensor};

/// The buffers of the run in progress.
struct GpuRun {
    recording: Rc<RecordedForward>,
    shape: [usize; 4],
    x: wgpu::Buffer,
    x0: wgpu::Buffer,
    /// The predicted noise of the last update (View::Eps).
    eps: wgpu::Buffer,
    /// Classifier-free guidance's weight (the guidance view).
    guidance: f32,
    noise: wgpu::Buffer,
    /// The first step whose update was NaN or Inf (u32::MAX: none), written by the step kernel.
    bad_step: wgpu::Buffer,
    /// The solver's history (`StepCoeffs`: h).
    h: wgpu::Buffer,
    /// c_in·x for samplers that scale the U-Net input (Euler, Heun), and the per-step bind
    /// groups of the `affine` kernel that writes it; empty when every c_in is 1.
    scaled: Option<(wgpu::Buffer, Vec<wgpu::Buffer>, Vec<wgpu::BindGroup>)>,
    step_params: Vec<wgpu::Buffer>,
    step_groups: Vec<wgpu::BindGroup>,
    /// The classifier's recorded forward and backward (classifier guidance): its `grad` holds
    /// the term the step subtracts; `unused` is bound in its place without.
    classifier: Option<Rc<RecordedGradient>>,
    unused: wgpu::Buffer,
}

impl GpuRun {
    /// Frees the run's own buffers (the recording's stay: the next run of this shape reuses them).
    fn release(self, gpu: &GpuDevice) {
        let (scaled, params) = match self.scaled {
            Some((b, params, _)) => (Some(b), params),
            None => (None, Vec::new()),
        };
        [self.x, self.x0, self.eps, self.noise, self.bad_step, self.h, self.unused]
            .into_iter()
            .chain(scaled)
            .chain(self.step_params)
            .chain(params)
            .for_each(|b| gpu.release(b));
    }
}

pub struct GpuEngine {
    pub unet: GpuUNet,
    run: Option<GpuRun>,
    classifier: Option<GpuClassifier>,
}

impl GpuEngine {
    pub fn new(gpu: GpuDevice, model: &Model) -> Result<Self> {
        Ok(GpuEngine { unet: GpuUNet::new(gpu, model)?, run: None, classifier: None })
    }

    /// Uploads the classifier of classifier guidance (replacing any earlier one).
    pub fn set_classifier(&mut self, classifier: &Classifier) -> Result<()> {
        self.classifier = Some(GpuClassifier::new(&self.unet.gpu, classifier)?);
        Ok(())
    }

    pub fn gpu(&self) -> &GpuDevice {
        &self.unet.gpu
    }

    /// The buffer holding x_t or x̂₀ of the run in progress (for drawing it without a readback).
    pub fn buffer(&self, view: View) -> Option<&wgpu::Buffer> {
        self.source(view).map(|(b, _)| b)
    }

    /// The buffer a view is drawn from and how (`SampleDrawer`): the guidance views read the
    /// U-Net's output buffer, both halves, in place.
    pub fn source(&self, view: View) -> Option<(&wgpu::Buffer, Look)> {
        let r = self.run.as_ref()?;
        let count: usize = r.shape.iter().product();
        let signed = view.signed();
        Some(match view {
            View::Xt => (&r.x, Look::default()),
            View::X0 => (&r.x0, Look::default()),
            View::Eps => (&r.eps, Look { signed, ..Look::default() }),
            View::EpsCond => (r.recording.out.buffer(), Look { signed, ..Look::default() }),
            View::EpsUncond => (r.recording.out.buffer(), Look { signed, offset: count, ..Look::default() }),
            View::Guidance => (r.recording.out.buffer(), Look { signed, minus: Some((count, r.guidance)), ..Look::default() }),
            View::Classifier => (r.classifier.as_ref().map_or(&r.unused, |c| c.grad.buffer()), Look { signed, ..Look::default() }),
        })
    }

    fn current(&self) -> Result<&GpuRun> {
        self.run.as_ref().ok_or_else(|| Error::Input("no run was started on this engine".into()))
    }

    /// Writes one of the run's sample-sized state buffers (x_t, x̂₀, the history), its length checked.
    fn write_state(&self, what: &str, buffer: impl Fn(&GpuRun) -> &wgpu::Buffer, values: &[f32]) -> Result<()> {
        let run = self.current()?;
        let count: usize = run.shape.iter().product();
        if values.len() != count {
            return Err(Error::Input(format!("{what}: {} values for a sample of {count}", values.len())));
        }
        self.unet.gpu.queue.write_buffer(buffer(run), 0, bytemuck::cast_slice(values));
        Ok(())
    }
}

impl Engine for GpuEngine {
    async fn start(&mut self, plan: &RunPlan) -> Result<()> {
        let [_, _, h, w] = plan.shape;
        // Nothing is made on a lost or destroyed device: its error is the answer.
        self.unet.gpu.check()?;
        if let Some(old) = self.run.take() {
            old.release(&self.unet.gpu);
        }
        let recording = self.unet.recording(plan.unet_batch(), h, w).await?;
        let gpu = &self.unet.gpu;
        let classifier = match &plan.guidance.classifier {
            Some(_) => Some(held(&mut self.classifier)?.recording(gpu, plan.shape[0], h, w).await?),
            None => None,
        };
        let unused = gpu.storage_buffer(16, "no classifier term")?;
        let term = classifier.as_ref().map_or(&unused, |c| c.grad.buffer());
        let count = plan.count();
        let x = gpu.upload(&plan.x_start, "x_t")?;
        let x0 = gpu.storage_buffer((count * 4) as u64, "predicted x0")?;
        let eps = gpu.storage_buffer((count * 4) as u64, "predicted noise")?;
        let noise = gpu.storage_buffer((count * 4) as u64, "step noise")?;
        let bad_step = gpu.upload(&[f32::from_bits(u32::MAX)], "first non-finite step")?;
        let h = gpu.storage_buffer((count * 4) as u64, "solver history")?;
        // Buffers are zeroed at creation (WebGPU guarantees it): h starts at 0.
        let step_params: Vec<wgpu::Buffer> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let c = s.coeffs;
                gpu.params(&SchedulerStepParams {
                    count: count as u32,
                    guiding: plan.guidance.doubles_batch() as u32,
                    guidance: plan.guidance.weight,
                    clip: c.clip,
                    x0_x: c.x0_x,
                    x0_m: c.x0_m,
                    eps_x: c.eps_x,
                    eps_m: c.eps_m,
                    c_x0: c.c_x0,
                    c_eps: c.c_eps,
                    c_x: c.c_x,
                    c_noise: c.c_noise,
                    step: index as u32,
                    c_h: c.c_h,
                    h_h: c.h_h,
                    h_x0: c.h_x0,
                    h_x: c.h_x,
                    classifier: classifier.is_some() as u32,
                    pad1: 0,
                    pad2: 0,
                })
            })
            .collect();
        let step_groups = gpu
            .validated("building the scheduler steps", || {
                Ok(step_params
                    .iter()
                    .map(|params| {
                        gpu.bind(
                            "scheduler_step.main",
                            &[
                                (0, recording.out.buffer()),
                                (1, &noise),
                                (2, &x),
                                (3, &x0),
                                (4, params),
                                (5, &bad_step),
                                (6, &h),
                                (7, &eps),
                                (8, term),
                            ],
                        )
                    })
                    .collect())
            })
            .await?;
        let scaled = if plan.steps.iter().all(|s| s.c_in == 1.0) {
            None
        } else {
            let buf = gpu.storage_buffer((count * 4) as u64, "c_in·x_t")?;
            let params: Vec<wgpu::Buffer> = plan
                .steps
                .iter()
                .map(|s| gpu.params(&super::ops::affine::AffineParams { count: count as u32, scale: s.c_in, shift: 0.0, _p: 0 }))
                .collect();
            let groups = gpu
                .validated("building the input scaling", || {
                    Ok(params.iter().map(|p| gpu.bind("affine.main", &[(0, &x), (1, &buf), (2, p)])).collect())
                })
                .await?;
            Some((buf, params, groups))
        };
        let guidance = plan.guidance.weight;
        self.run = Some(GpuRun {
            recording,
            shape: plan.shape,
            x,
            x0,
            eps,
            guidance,
            noise,
            bad_step,
            h,
            scaled,
            step_params,
            step_groups,
            classifier,
            unused,
        });
        Ok(())
    }

    fn step_at(&mut self, plan: &RunPlan, index: usize, t_model: f32, noise: Option<&[f32]>) -> Result<()> {
        let gpu = &self.unet.gpu;
        let run = self.current()?;
        if let Some(z) = noise {
            gpu.queue.write_buffer(&run.noise, 0, bytemuck::cast_slice(z));
        }
        let ub = plan.unet_batch();
        run.recording.write_conditioning(gpu, &vec![t_model; ub], plan.guidance.unet_labels.as_deref());
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let count = plan.count();
        let bytes = (count * 4) as u64;
        let src = match &run.scaled {
            Some((buf, _, groups)) => {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(gpu.pipeline("affine.main"));
                pass.set_bind_group(0, &groups[index], &[]);
                let g = grid(count.div_ceil(64) as u32);
                pass.dispatch_workgroups(g[0], g[1], g[2]);
                buf
            }
            None => &run.x,
        };
        enc.copy_buffer_to_buffer(src, 0, run.recording.sample.buffer(), 0, bytes);
        if ub != plan.shape[0] {
            enc.copy_buffer_to_buffer(src, 0, run.recording.sample.buffer(), bytes, bytes);
        }
        if let (Some(clf), Some(guide)) = (&run.classifier, &plan.guidance.classifier) {
            enc.copy_buffer_to_buffer(src, 0, clf.x.buffer(), 0, bytes);
            clf.write_inputs(gpu, &vec![t_model; plan.shape[0]], &guide.target(t_model));
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            run.recording.encode(&mut pass);
            if let Some(clf) = &run.classifier {
                clf.encode(&mut pass);
            }
            pass.set_pipeline(gpu.pipeline("scheduler_step.main"));
            pass.set_bind_group(0, &run.step_groups[index], &[]);
            let g = grid(count.div_ceil(64) as u32);
            pass.dispatch_workgroups(g[0], g[1], g[2]);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.check()
    }

    async fn sync(&mut self) -> Result<()> {
        self.unet.gpu.idle().await
    }

    async fn read(&mut self, view: View) -> Result<Tensor> {
        let run = self.current()?;
        let count: usize = run.shape.iter().product();
        let (buf, look) = self.source(view).expect("a run is current");
        let guiding = run.recording.out.len() >= 2 * count;
        if view == View::Classifier && run.classifier.is_none() {
            return Err(Error::Input("view \"classifier\": this run has no classifier guidance".into()));
        }
        if look.offset > 0 || look.minus.is_some() {
            if !guiding {
                return Err(Error::Input(format!("view {:?}: this run does not guide", view.as_str())));
            }
            let m = self.unet.gpu.read(buf, 2 * count).await?;
            let data = match look.minus {
                Some((second, w)) => m[..count].iter().zip(&m[second..second + count]).map(|(c, u)| w * (c - u)).collect(),
                None => m[look.offset..look.offset + count].to_vec(),
            };
            return Tensor::new(run.shape.to_vec(), data);
        }
        Tensor::new(run.shape.to_vec(), self.unet.gpu.read(buf, count).await?)
    }

    fn write_x(&mut self, x: &[f32]) -> Result<()> {
        self.write_state("write_x", |run| &run.x, x)
    }

    fn write_x0(&mut self, x0: &[f32]) -> Result<()> {
        self.write_state("write_x0", |run| &run.x0, x0)
    }

    async fn read_history(&mut self) -> Result<Vec<f32>> {
        let run = self.current()?;
        self.unet.gpu.read(&run.h, run.shape.iter().product()).await
    }

    fn write_history(&mut self, h: &[f32]) -> Result<()> {
        self.write_state("write_history", |run| &run.h, h)
    }

    async fn first_non_finite_step(&mut self) -> Result<Option<usize>> {
        let run = self.current()?;
        let bits = self.unet.gpu.read(&run.bad_step, 1).await?[0].to_bits();
        Ok((bits != u32::MAX).then_some(bits as usize))
    }
}
