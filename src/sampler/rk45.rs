//! The probability-flow ODE of a VP model solved by adaptive Runge–Kutta: Dormand–Prince 5(4)
//! with scipy's `solve_ivp(method="RK45")` step-size control, as Song et al.'s `ode_sampler` runs it
//! (from t = 1 down to ε, rtol/atol on the flattened sample). dx/dt = −½β(t)(x + s(x, t)), with the
//! model, score and β(t) of `sampler::sde`. The number of U-Net evaluations is what the tolerance
//! makes it (the paper's NFE); the solver asks for one evaluation at a time (`request`/`receive`).

use super::sde::VpSdeSampler;
use crate::error::{Error, Result};

/// Dormand–Prince: nodes, stage coefficients, 5th-order weights and the error weights (scipy's
/// `RK45.C`, `A`, `B`, `E`).
const C: [f64; 6] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0];
const A: [[f64; 5]; 6] = [
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0],
    [19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0, 0.0],
    [9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
];
const B: [f64; 6] = [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0];
const E: [f64; 7] = [-71.0 / 57600.0, 0.0, 71.0 / 16695.0, -71.0 / 1920.0, 17253.0 / 339200.0, -22.0 / 525.0, 1.0 / 40.0];
const SAFETY: f64 = 0.9;
const MIN_FACTOR: f64 = 0.2;
const MAX_FACTOR: f64 = 10.0;
/// −1/(error estimator order + 1).
const ERROR_EXPONENT: f64 = -1.0 / 5.0;

/// Where the solver is: the evaluation it waits for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// f(t0, y0).
    Start,
    /// scipy's `select_initial_step`: f(t0 + h0·dir, y0 + h0·dir·f0).
    Initial {
        h0: f64,
    },
    /// Stage s (1…5) of the step of size h.
    Stage {
        s: usize,
        h: f64,
    },
    /// f(t + h, y_new).
    Last {
        h: f64,
    },
    Done,
}

pub struct Rk45Ode {
    vp: VpSdeSampler,
    rtol: f64,
    atol: f64,
    t: f64,
    t_end: f64,
    y: Vec<f64>,
    f: Vec<f64>,
    k: Vec<Vec<f64>>,
    y_new: Vec<f64>,
    h_abs: f64,
    /// The end of the step being taken.
    t_new: f64,
    rejected: bool,
    phase: Phase,
    evaluations: usize,
    max_evaluations: usize,
}

impl Rk45Ode {
    /// From a scheduler config (betas, `sampling_eps`, `rtol` and `atol`, 1e-5 each as the
    /// paper's code) and x_T.
    pub fn new(config_json: &str, x_t: &[f32], max_evaluations: usize) -> Result<Self> {
        let cfg = super::diffusers::Cfg::parse(config_json)?;
        let (rtol, atol) = (cfg.f64("rtol", 1e-5)?, cfg.f64("atol", 1e-5)?);
        for (key, v) in [("rtol", rtol), ("atol", atol)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::Scheduler(format!("`{key}` = {v}: the ODE solver's tolerance must be positive")));
            }
        }
        let mut json: serde_json::Value = serde_json::from_str(config_json).map_err(|e| Error::Scheduler(e.to_string()))?;
        json["_class_name"] = "ProbabilityFlowOdeEuler".into(); // the same model, score and β(t)
        let vp = VpSdeSampler::from_config(&json.to_string())?;
        let t_end = cfg.f64("sampling_eps", 1e-3)?;
        let y: Vec<f64> = x_t.iter().map(|&v| v as f64).collect();
        let n = y.len();
        Ok(Rk45Ode {
            vp,
            rtol,
            atol,
            t: 1.0,
            t_end,
            f: vec![0.0; n],
            k: vec![vec![0.0; n]; 7],
            y_new: vec![0.0; n],
            y,
            h_abs: 0.0,
            t_new: 1.0,
            rejected: false,
            phase: Phase::Start,
            evaluations: 0,
            max_evaluations,
        })
    }

    /// U-Net evaluations so far (the NFE).
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    /// Continuous time of the accepted state.
    pub fn t(&self) -> f64 {
        self.t
    }

    /// The accepted state, as f32.
    pub fn sample(&self) -> Vec<f32> {
        self.y.iter().map(|&v| v as f32).collect()
    }

    pub fn set_batch_size(&mut self, batch: usize) -> Result<()> {
        super::diffusers::DiffusersScheduler::set_batch_size(&mut self.vp, batch)
    }

    /// The next evaluation: its model timestep t·(T − 1) and the sample to evaluate at, or None
    /// when the solve has reached ε.
    pub fn request(&self) -> Option<(f64, Vec<f32>)> {
        self.point().map(|(t, y)| (self.vp.model_timestep(t), y))
    }

    /// The continuous time and sample of the next evaluation.
    fn point(&self) -> Option<(f64, Vec<f32>)> {
        let dir = -1.0;
        let (t, y): (f64, Vec<f64>) = match self.phase {
            Phase::Done => return None,
            Phase::Start => (self.t, self.y.clone()),
            Phase::Initial { h0 } => (self.t + h0 * dir, self.y.iter().zip(&self.f).map(|(y, f)| y + h0 * dir * f).collect()),
            Phase::Stage { s, h } => {
                let y = (0..self.y.len()).map(|i| self.y[i] + h * (0..s).map(|j| A[s][j] * self.k[j][i]).sum::<f64>()).collect();
                (self.t + C[s] * h, y)
            }
            Phase::Last { h } => (self.t + h, self.y_new.clone()), // scipy evaluates at t + h
        };
        Some((t, y.iter().map(|&v| v as f32).collect()))
    }

    /// The model's ε̂ at the requested evaluation.
    pub fn receive(&mut self, eps: &[f32]) -> Result<()> {
        let (t, x) = self.point().ok_or_else(|| Error::Scheduler("RK45: the solve is done".into()))?;
        if eps.len() != x.len() {
            return Err(Error::Input(format!("RK45: model output of {} values for a sample of {}", eps.len(), x.len())));
        }
        self.evaluations += 1;
        if self.evaluations > self.max_evaluations {
            return Err(Error::Scheduler(format!(
                "RK45: more than {} U-Net evaluations before reaching t = {} (at t = {}): loosen rtol/atol",
                self.max_evaluations, self.t_end, self.t
            )));
        }
        let drift = self.vp.ode_drift(t, &x, eps);
        let dir = -1.0;
        match self.phase {
            Phase::Start => {
                self.f = drift;
                self.phase = Phase::Initial { h0: self.first_guess() };
            }
            Phase::Initial { h0 } => {
                self.h_abs = self.initial_step(h0, &drift);
                self.phase = self.begin_step();
            }
            Phase::Stage { s, h } => {
                self.k[s] = drift;
                self.phase = if s < 5 {
                    Phase::Stage { s: s + 1, h }
                } else {
                    self.y_new = (0..self.y.len()).map(|i| self.y[i] + h * (0..6).map(|j| B[j] * self.k[j][i]).sum::<f64>()).collect();
                    Phase::Last { h }
                };
            }
            Phase::Last { h } => {
                self.k[6] = drift;
                self.finish_step(h, dir);
            }
            Phase::Done => unreachable!("request() returned None"),
        }
        Ok(())
    }

    /// RMS norm, as scipy's `norm`.
    fn rms(v: impl Iterator<Item = f64>, n: usize) -> f64 {
        (v.map(|x| x * x).sum::<f64>() / n as f64).sqrt()
    }

    /// `select_initial_step`'s first guess h0 from y0 and f0.
    fn first_guess(&self) -> f64 {
        let n = self.y.len();
        let scale: Vec<f64> = self.y.iter().map(|y| self.atol + y.abs() * self.rtol).collect();
        let d0 = Self::rms(self.y.iter().zip(&scale).map(|(y, s)| y / s), n);
        let d1 = Self::rms(self.f.iter().zip(&scale).map(|(f, s)| f / s), n);
        let h0 = if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 };
        h0.min((self.t - self.t_end).abs())
    }

    /// `select_initial_step`'s result from f1 = f(t0 + h0·dir, y1).
    fn initial_step(&self, h0: f64, f1: &[f64]) -> f64 {
        let n = self.y.len();
        let scale: Vec<f64> = self.y.iter().map(|y| self.atol + y.abs() * self.rtol).collect();
        let d1 = Self::rms(self.f.iter().zip(&scale).map(|(f, s)| f / s), n);
        let d2 = Self::rms(f1.iter().zip(&self.f).zip(&scale).map(|((a, b), s)| (a - b) / s), n) / h0;
        let h1 = if d1 <= 1e-15 && d2 <= 1e-15 { (h0 * 1e-3).max(1e-6) } else { (0.01 / d1.max(d2)).powf(1.0 / 5.0) };
        (100.0 * h0).min(h1).min((self.t - self.t_end).abs())
    }

    /// A step of size h_abs (clipped to ε), its first stage being f at the accepted state.
    fn begin_step(&mut self) -> Phase {
        let dir = -1.0;
        let mut t_new = self.t + self.h_abs * dir;
        if dir * (t_new - self.t_end) > 0.0 {
            t_new = self.t_end;
        }
        let h = t_new - self.t;
        self.h_abs = h.abs();
        self.t_new = t_new;
        self.k[0] = self.f.clone();
        Phase::Stage { s: 1, h }
    }

    /// scipy's acceptance test and step-size update.
    fn finish_step(&mut self, h: f64, _dir: f64) {
        let n = self.y.len();
        let err = Self::rms(
            (0..n).map(|i| {
                let scale = self.atol + self.y[i].abs().max(self.y_new[i].abs()) * self.rtol;
                h * (0..7).map(|j| E[j] * self.k[j][i]).sum::<f64>() / scale
            }),
            n,
        );
        if err < 1.0 {
            let mut factor = if err == 0.0 { MAX_FACTOR } else { MAX_FACTOR.min(SAFETY * err.powf(ERROR_EXPONENT)) };
            if self.rejected {
                factor = factor.min(1.0);
            }
            self.h_abs *= factor;
            self.rejected = false;
            // t_new itself (as scipy keeps it), not t + h: the last step lands on ε exactly.
            self.t = self.t_new;
            self.y = std::mem::take(&mut self.y_new);
            self.y_new = vec![0.0; n];
            self.f = self.k[6].clone();
            self.phase = if self.t == self.t_end { Phase::Done } else { self.begin_step() };
        } else {
            self.h_abs *= MIN_FACTOR.max(SAFETY * err.powf(ERROR_EXPONENT));
            self.rejected = true;
            self.phase = self.begin_step();
        }
    }
}
