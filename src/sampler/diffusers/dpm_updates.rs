//! The update formulas of `DPMSolverMultistepScheduler` (Lu et al. 2022, "DPM-Solver" and
//! "DPM-Solver++"; the SDE variants of Lu et al. 2022b / Gonzalez et al. 2023), orders 1–3,
//! written as x_prev = c_x·x + Σ c_i·D_i + c_z·noise with the scalar coefficients computed in f32
//! exactly as diffusers' torch expressions (signs folded into the coefficients: a − b·c and
//! a + (−b)·c round identically), then applied elementwise left to right.

/// `algorithm_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    DpmSolver,
    DpmSolverPlusPlus,
    SdeDpmSolver,
    SdeDpmSolverPlusPlus,
}

impl Algorithm {
    /// Whether the model output is converted to x0 (the "++" data-prediction solvers).
    pub fn predicts_x0(self) -> bool {
        matches!(self, Algorithm::DpmSolverPlusPlus | Algorithm::SdeDpmSolverPlusPlus)
    }

    pub fn is_sde(self) -> bool {
        matches!(self, Algorithm::SdeDpmSolver | Algorithm::SdeDpmSolverPlusPlus)
    }
}

/// (α_t, σ_t) of a VE σ: α = 1/√(σ² + 1), σ_t = σ·α (`_sigma_to_alpha_sigma_t`), and λ = ln α − ln σ.
pub fn alpha_sigma_lambda(sigma: f32) -> (f32, f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

/// The EDM parametrization (`EDMDPMSolverMultistepScheduler`): α = 1, σ_t = σ, λ = −ln σ.
pub fn edm_alpha_sigma_lambda(sigma: f32) -> (f32, f32, f32) {
    (1.0, sigma, 0.0 - sigma.ln())
}

/// How a σ maps to (α_t, σ_t, λ_t).
pub type Parametrization = fn(f32) -> (f32, f32, f32);

/// One update: c_x·x, then each (c_i, D_i) added in order, then c_z·noise.
pub struct Update {
    pub c_x: f32,
    pub terms: Vec<f32>,
    pub c_z: f32,
}

impl Update {
    pub fn apply(&self, x: &[f32], d: &[Vec<f32>], noise: Option<&[f32]>) -> Vec<f32> {
        (0..x.len())
            .map(|k| {
                let mut acc = self.c_x * x[k];
                for (c, dk) in self.terms.iter().zip(d) {
                    acc += c * dk[k];
                }
                match noise {
                    Some(z) => acc + self.c_z * z[k],
                    None => acc,
                }
            })
            .collect()
    }
}

/// The order-`order` update from σ_s0 to σ_t (its D_i from `differences`); `midpoint` selects
/// solver_type midpoint (else heun). The noise term is for the SDE algorithms only.
pub fn update(algorithm: Algorithm, midpoint: bool, order: usize, sigma_t: f32, sigma_s0: f32) -> Update {
    update_in(alpha_sigma_lambda, algorithm, midpoint, order, sigma_t, sigma_s0)
}

/// `update` in the parametrization `p`.
pub fn update_in(p: Parametrization, algorithm: Algorithm, midpoint: bool, order: usize, sigma_t: f32, sigma_s0: f32) -> Update {
    let (alpha_t, sigma_t, lambda_t) = p(sigma_t);
    let (alpha_s0, sigma_s0, lambda_s0) = p(sigma_s0);
    let h = lambda_t - lambda_s0;
    let (em, ep) = ((-h).exp(), h.exp());
    let (em2, ep2) = ((-2.0 * h).exp(), (2.0 * h).exp());
    let noise_pp = sigma_t * (1.0 - em2).sqrt();
    let noise_eps = sigma_t * (ep2 - 1.0).sqrt();
    use Algorithm::*;
    let c_x = match algorithm {
        DpmSolverPlusPlus => sigma_t / sigma_s0,
        DpmSolver | SdeDpmSolver => alpha_t / alpha_s0,
        SdeDpmSolverPlusPlus => sigma_t / sigma_s0 * em,
    };
    let c_z = match algorithm {
        SdeDpmSolverPlusPlus => noise_pp,
        SdeDpmSolver => noise_eps,
        _ => 0.0,
    };
    // D0's coefficient.
    let c0 = match algorithm {
        DpmSolverPlusPlus => -(alpha_t * (em - 1.0)),
        DpmSolver => -(sigma_t * (ep - 1.0)),
        SdeDpmSolverPlusPlus => alpha_t * (1.0 - em2),
        SdeDpmSolver => -(2.0 * (sigma_t * (ep - 1.0))),
    };
    if order == 1 {
        return Update { c_x, terms: vec![c0], c_z };
    }
    let c1 = match (algorithm, midpoint || order == 3) {
        (DpmSolverPlusPlus, true) if order == 2 => -(0.5 * (alpha_t * (em - 1.0))),
        (DpmSolverPlusPlus, _) => alpha_t * ((em - 1.0) / h + 1.0),
        (DpmSolver, true) if order == 2 => -(0.5 * (sigma_t * (ep - 1.0))),
        (DpmSolver, _) => -(sigma_t * ((ep - 1.0) / h - 1.0)),
        (SdeDpmSolverPlusPlus, true) if order == 2 => 0.5 * (alpha_t * (1.0 - em2)),
        (SdeDpmSolverPlusPlus, _) => alpha_t * ((1.0 - em2) / (-2.0 * h) + 1.0),
        (SdeDpmSolver, true) => -(sigma_t * (ep - 1.0)),
        (SdeDpmSolver, false) => -(2.0 * (sigma_t * ((ep - 1.0) / h - 1.0))),
    };
    if order == 2 {
        return Update { c_x, terms: vec![c0, c1], c_z };
    }
    let c2 = match algorithm {
        DpmSolverPlusPlus => -(alpha_t * ((em - 1.0 + h) / (h * h) - 0.5)),
        DpmSolver => -(sigma_t * ((ep - 1.0 - h) / (h * h) - 0.5)),
        // (2h)² as torch's pow(·, 2): one multiplication.
        _ => alpha_t * ((1.0 - em2 - 2.0 * h) / ((2.0 * h) * (2.0 * h)) - 0.5),
    };
    Update { c_x, terms: vec![c0, c1, c2], c_z }
}

/// [D0] (order 1), [D0, D1 = (m0 − m1)/r0] (order 2) or [D0, D1, D2] of the third-order update,
/// from the converted model outputs `m` and their σs (`sigmas`), newest first, and σ_t.
pub fn differences(order: usize, m: &[&[f32]], sigma_t: f32, sigmas: &[f32]) -> Vec<Vec<f32>> {
    differences_in(alpha_sigma_lambda, order, m, sigma_t, sigmas)
}

/// `differences` in the parametrization `p`.
pub fn differences_in(p: Parametrization, order: usize, m: &[&[f32]], sigma_t: f32, sigmas: &[f32]) -> Vec<Vec<f32>> {
    let lambda = |s: f32| p(s).2;
    let (lambda_t, lambda_s0) = (lambda(sigma_t), lambda(sigmas[0]));
    let h = lambda_t - lambda_s0;
    let mut out = vec![m[0].to_vec()];
    if order == 1 {
        return out;
    }
    let lambda_s1 = lambda(sigmas[1]);
    let r0 = (lambda_s0 - lambda_s1) / h;
    let inv_r0 = 1.0 / r0;
    let d1_0: Vec<f32> = m[0].iter().zip(m[1]).map(|(a, b)| inv_r0 * (a - b)).collect();
    if order == 2 {
        out.push(d1_0);
        return out;
    }
    let lambda_s2 = lambda(sigmas[2]);
    let r1 = (lambda_s1 - lambda_s2) / h;
    let inv_r1 = 1.0 / r1;
    let d1_1: Vec<f32> = m[1].iter().zip(m[2]).map(|(a, b)| inv_r1 * (a - b)).collect();
    let (w1, w2) = (r0 / (r0 + r1), 1.0 / (r0 + r1));
    out.push(d1_0.iter().zip(&d1_1).map(|(a, b)| a + w1 * (a - b)).collect());
    out.push(d1_0.iter().zip(&d1_1).map(|(a, b)| w2 * (a - b)).collect());
    out
}
