//! `sampler::diffusers` against diffusers' own scheduler tests: the full loops of
//! tests/schedulers/test_scheduler_<name>.py (their `dummy_sample_deter` and dummy model
//! `sample * t / (t + 1)`, ported here), checked three ways:
//! - against the result_sum / result_mean numbers written in those files, with their tolerances;
//! - against the same loops run in diffusers 0.42.1 (tests/fixtures/make_scheduler_expectations.py):
//!   Σ|x|, mean |x| and Σx² to 1e-5 relative (Σx to 1e-5 of Σ|x|), every element of the final
//!   sample to 1e-4 of its largest magnitude (`ELEMENT`; not for the "_y_" config combinations,
//!   whose samples the fixture leaves out), and the timesteps exactly (as f32; those of σ ramps
//!   and KDPM2 to 1e-6);
//! - the loops that draw `torch.manual_seed(0)` noise replay it through a port of torch's CPU randn
//!   (`torch_randn`), itself checked against torch's first draws.

mod diffusers_test_numbers;
mod torch_randn;

use std::collections::HashMap;

use ddim_webgpu::sampler::diffusers::{
    from_config, Cfg, Churn, CmStochasticIterativeScheduler, DdimScheduler, DiffusersScheduler, EdmEulerScheduler, EulerDiscreteScheduler,
    ScoreSdeVeScheduler,
};
use ddim_webgpu::Error;
use serde_json::Value;
use torch_randn::TorchGenerator;

const N: usize = 4 * 3 * 8 * 8;
/// Relative tolerance on sums and means against diffusers run here (diffusers' own tests allow
/// 1e-2 absolute on sums and 1e-3 on means).
const REL: f64 = 1e-5;
/// Elementwise tolerance, relative to the sample's largest magnitude. Not 1e-5: torch's sqrt (and
/// `** 0.5`) of a 0-dim f32 tensor is 1 ulp off the correctly rounded value in ~15% of cases (its
/// scalar path, not reproducible portably), and the PNDM loops with beta_start 0.01 amplify such
/// 1-ulp coefficient differences to ~5e-5.
const ELEMENT: f64 = 1e-4;
/// The loops that amplify those 1-ulp differences past `REL`, checked to this instead: UniPC in ε
/// mode at order 3 with v_prediction (4e-5), and DEIS at order 3 on Karras σs, whose log-ρ
/// Lagrange weights cancel between close σs (1e-5; numpy's f32 log is not correctly rounded).
const SENSITIVE: (&[&str], f64) = (&["unipc_x_eps_mode_order3", "deis_x_karras"], 1e-4);

fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expectations() -> (Value, HashMap<String, Vec<f32>>) {
    let json = std::fs::read_to_string(fixtures().join("scheduler_expectations.json")).expect("fixture json");
    let bytes = std::fs::read(fixtures().join("scheduler_expectations.safetensors")).expect("fixture tensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("fixture parses");
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()))
        .collect();
    // Python's json writes lambda_min_clipped = -inf as a bare -Infinity, which serde_json refuses;
    // the scheduler reads either spelling (`bare_infinity_in_a_config_parses`).
    let json = json.replace("-Infinity", "\"-Infinity\"");
    (serde_json::from_str(&json).expect("fixture json parses"), tensors)
}

/// SchedulerCommonTest.dummy_sample_deter (`flip`: dummy_noise_deter): arange(768) laid out as
/// (C, H, W, B), divided by 768, permuted to (B, C, H, W); flat in (B, C, H, W) order.
fn dummy_sample_deter(flip: bool) -> Vec<f32> {
    let mut out = vec![0.0f32; N];
    for b in 0..4 {
        for c in 0..3 {
            for h in 0..8 {
                for w in 0..8 {
                    let i = ((c * 8 + h) * 8 + w) * 4 + b;
                    let v = if flip { N - 1 - i } else { i };
                    out[((b * 3 + c) * 8 + h) * 8 + w] = v as f32 / N as f32;
                }
            }
        }
    }
    out
}

/// SchedulerCommonTest.dummy_model: `sample * t / (t + 1)`, t cast to f32.
fn model(sample: &[f32], t: f64) -> Vec<f32> {
    let t = t as f32;
    sample.iter().map(|x| x * t / (t + 1.0)).collect()
}

/// Whether diffusers' `step` draws noise from the generator at this call (it draws even where the
/// noise is then scaled by 0, as Euler ancestral's last step does).
fn draws(class: &str, algorithm: &str, t: f64, second_evaluation: bool) -> bool {
    match class {
        "EulerAncestralDiscreteScheduler" => true,
        "DDPMScheduler" => t > 0.0,
        "DPMSolverMultistepScheduler" | "DPMSolverSinglestepScheduler" | "EDMDPMSolverMultistepScheduler" => algorithm.starts_with("sde"),
        // Its second evaluation of each step (a fractional, interpolated timestep) adds noise.
        "KDPM2AncestralDiscreteScheduler" => second_evaluation,
        _ => false,
    }
}

/// One loop of the test files, as make_scheduler_expectations.py runs it.
fn run_loop(sched: &mut dyn DiffusersScheduler, exp: &Value) -> Vec<f32> {
    let (kind, seeded) = (exp["loop"].as_str().unwrap(), exp["seeded"].as_bool().unwrap());
    let algorithm = exp["config"]["algorithm_type"].as_str().unwrap_or("");
    sched.set_batch_size(exp["batch"].as_u64().unwrap() as usize).unwrap();
    let mut generator = seeded.then(|| TorchGenerator::manual_seed(0));
    // KDPM2 ancestral: even calls are first evaluations (every loop here starts a step).
    let mut evaluations = 0usize;
    let class = sched.class_name();
    let mut sample = dummy_sample_deter(false);
    let mut step = |sched: &mut dyn DiffusersScheduler, sample: &[f32], t: f64| {
        let second = evaluations % 2 == 1;
        evaluations += 1;
        let noise = generator.as_mut().filter(|_| draws(class, algorithm, t, second)).map(|g| g.randn(N));
        sched.step(&model(sample, t), t, sample, noise.as_deref()).expect("step").prev_sample
    };
    if kind == "sde_ve" {
        return sde_ve_loop(exp);
    }
    if kind.starts_with("cm") {
        return cm_loop(exp, kind);
    }
    if kind == "ddim_eta" {
        return ddim_eta_loop(exp);
    }
    if kind.ends_with("_churn") {
        return churn_loop(exp, kind);
    }
    if kind.starts_with("train") {
        // test_scheduler_ddpm.py: no set_timesteps, every train timestep.
        let mut timesteps: Vec<f64> = sched.timesteps().to_vec();
        if kind == "train_with_noise" {
            timesteps = timesteps[(timesteps.len() - 2) * sched.order()..].to_vec();
            sample = sched.add_noise(&sample, &dummy_sample_deter(true), timesteps[0]).expect("add_noise");
        }
        for t in timesteps {
            sample = step(sched, &sample, t);
        }
        return sample;
    }
    sched.set_timesteps(if kind == "plain_uneven" { 50 } else { 10 }).expect("set_timesteps");
    let mut timesteps = sched.timesteps().to_vec();
    if kind == "plain_uneven" {
        // test_full_uneven_loop: start at the 4th of 50 timesteps.
        timesteps = timesteps[3..].to_vec();
    }
    if kind.starts_with("scaled") || kind == "precond" {
        let s = sched.init_noise_sigma();
        sample.iter_mut().for_each(|x| *x *= s);
    }
    if kind.contains("with_noise") {
        // t_start: num_inference_steps − 2, or 5 in test_scheduler_dpm_multi.py.
        let t_start = if kind.ends_with("_5") { 5 } else { 8 };
        timesteps = timesteps[t_start * sched.order()..].to_vec();
        sample = sched.add_noise(&sample, &dummy_sample_deter(true), timesteps[0]).expect("add_noise");
    }
    for t in timesteps {
        if kind == "precond" {
            // EDM: the model sees the preconditioned sample, `step` the raw one.
            let scaled = sched.scale_model_input(&sample, t).expect("scale_model_input");
            let m = model(&scaled, t);
            let noise = None;
            sample = sched.step(&m, t, &sample, noise).expect("step").prev_sample;
            continue;
        }
        if kind.starts_with("scaled") {
            sample = sched.scale_model_input(&sample, t).expect("scale_model_input");
        }
        sample = step(sched, &sample, t);
    }
    sample
}

/// test_scheduler_score_sde_ve.py's loop: set_sigmas(3) then set_timesteps(3); per timestep
/// `correct_steps` Langevin corrections, then the predictor, the model fed σ(t); noise drawn by
/// each call.
fn sde_ve_loop(exp: &Value) -> Vec<f32> {
    let mut s = ScoreSdeVeScheduler::new(&Cfg::parse(&exp["config"].to_string()).unwrap()).unwrap();
    s.set_batch_size(exp["batch"].as_u64().unwrap() as usize).unwrap();
    s.set_sigmas(3).unwrap();
    s.set_timesteps(3).unwrap();
    let mut g = TorchGenerator::manual_seed(0);
    let mut sample = dummy_sample_deter(false);
    for (i, t) in s.timesteps().to_vec().into_iter().enumerate() {
        let sigma_t = s.sigmas[i] as f64;
        for _ in 0..s.correct_steps {
            sample = s.step_correct(&model(&sample, sigma_t), &sample, &g.randn(N)).unwrap();
        }
        sample = s.step_pred(&model(&sample, sigma_t), t, &sample, &g.randn(N)).unwrap().prev_sample;
    }
    sample
}

/// Euler and EDM Euler with churn: noise is drawn by the steps whose σ lies in [s_tmin, s_tmax].
fn churn_loop(exp: &Value, kind: &str) -> Vec<f32> {
    let cfg = Cfg::parse(&exp["config"].to_string()).unwrap();
    let churn = Churn { s_churn: 0.8, s_tmin: 0.5, s_tmax: 60.0, s_noise: 1.003 };
    let (mut sched, sigmas): (Box<dyn DiffusersScheduler>, Vec<f32>) = if kind == "scaled_churn" {
        let mut s = EulerDiscreteScheduler::new(&cfg).unwrap();
        s.churn = churn;
        s.set_timesteps(10).unwrap();
        let sigmas = s.core.sigmas.clone();
        (Box::new(s), sigmas)
    } else {
        let mut s = EdmEulerScheduler::new(&cfg).unwrap();
        s.churn = churn;
        s.set_timesteps(10).unwrap();
        let sigmas = s.sigmas.clone();
        (Box::new(s), sigmas)
    };
    let mut g = TorchGenerator::manual_seed(0);
    let init = sched.init_noise_sigma();
    let mut sample: Vec<f32> = dummy_sample_deter(false).iter().map(|x| x * init).collect();
    for (i, t) in sched.timesteps().to_vec().into_iter().enumerate() {
        let scaled = sched.scale_model_input(&sample, t).unwrap();
        let m = model(&scaled, t);
        // "scaled" loops step the scaled sample, "precond" ones the raw sample.
        if kind == "scaled_churn" {
            sample = scaled;
        }
        let noise = (churn.s_tmin <= sigmas[i] && sigmas[i] <= churn.s_tmax).then(|| g.randn(N));
        sample = sched.step(&m, t, &sample, noise.as_deref()).unwrap().prev_sample;
    }
    sample
}

/// DDIM with η = 0.5 and use_clipped_model_output: every step draws noise.
fn ddim_eta_loop(exp: &Value) -> Vec<f32> {
    let mut s = DdimScheduler::new(&Cfg::parse(&exp["config"].to_string()).unwrap()).unwrap();
    s.eta = 0.5;
    s.use_clipped_model_output = true;
    s.set_timesteps(10).unwrap();
    let mut g = TorchGenerator::manual_seed(0);
    let mut sample = dummy_sample_deter(false);
    for t in s.timesteps().to_vec() {
        sample = s.step(&model(&sample, t), t, &sample, Some(&g.randn(N))).unwrap().prev_sample;
    }
    sample
}

/// test_scheduler_consistency_model.py's loops: the model sees the scaled sample, `step` the
/// unscaled one; noise is drawn by every step of a run of more than one timestep.
fn cm_loop(exp: &Value, kind: &str) -> Vec<f32> {
    let mut s = CmStochasticIterativeScheduler::new(&Cfg::parse(&exp["config"].to_string()).unwrap()).unwrap();
    match kind {
        "cm_custom" => s.set_custom_timesteps(&[106, 0]).unwrap(),
        "cm_1" => s.set_timesteps(1).unwrap(),
        _ => s.set_timesteps(10).unwrap(),
    }
    let mut g = TorchGenerator::manual_seed(0);
    let init = s.init_noise_sigma();
    let mut sample: Vec<f32> = dummy_sample_deter(false).iter().map(|x| x * init).collect();
    let mut timesteps = s.timesteps().to_vec();
    if kind == "cm_with_noise" {
        timesteps = timesteps[8..].to_vec();
        sample = s.add_noise(&sample, &dummy_sample_deter(true), timesteps[0]).unwrap();
    }
    let draws = s.timesteps().len() > 1;
    for t in timesteps {
        let residual = model(&s.scale_model_input(&sample, t).unwrap(), t);
        let noise = draws.then(|| g.randn(N));
        sample = s.step(&residual, t, &sample, noise.as_deref()).unwrap().prev_sample;
    }
    sample
}

/// (sum, mean) of |x| as torch reports them (f32 values, accumulated wide).
fn sum_mean(x: &[f32]) -> (f64, f64) {
    let sum: f64 = x.iter().map(|v| v.abs() as f64).sum();
    (sum, sum / x.len() as f64)
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-30)
}

/// A loop's scheduler config: its class's base config (the test file's get_scheduler_config)
/// updated with the loop's overrides.
fn config_of(meta: &Value, exp: &Value) -> Value {
    let mut config = meta["bases"][exp["class"].as_str().unwrap()].clone();
    for (k, v) in exp["overrides"].as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

/// Runs every fixture loop whose name starts with `prefix`; returns how many ran.
fn check_loops(prefix: &str) -> usize {
    let (meta, tensors) = expectations();
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, exp) in meta["loops"].as_object().expect("loops").iter().filter(|(n, _)| n.starts_with(prefix)) {
        count += 1;
        let mut exp = exp.clone();
        exp["config"] = config_of(&meta, &exp);
        let exp = &exp;
        let mut sched = from_config(&exp["config"].to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(ts) = exp["timesteps"].as_array() {
            // As f32: serde_json's float parsing is not always correctly rounded in the last f64 bit.
            let want: Vec<f32> = ts.iter().map(|v| v.as_f64().unwrap() as f32).collect();
            sched.set_timesteps(if exp["loop"] == "sde_ve" { 3 } else { 10 }).unwrap();
            let got: Vec<f32> = sched.timesteps().iter().map(|&v| v as f32).collect();
            // Exact, but where timesteps come from `_sigma_to_t` of σs off the train grid (σ
            // ramps, KDPM2's interpolated σs): it interpolates f32 log σs, numpy's SIMD f32 log is
            // not correctly rounded (157 of the 1100 train σs here), and a 1-ulp log moves t by up
            // to ~1e-6 relative across the small log-σ gaps.
            let o = &exp["overrides"];
            let ramp = ["use_karras_sigmas", "use_exponential_sigmas", "use_lu_lambdas"].iter().any(|k| o[*k] == true);
            let tol = if ramp || exp["class"].as_str().unwrap().starts_with("KDPM2") { 1e-6 } else { 0.0 };
            let off = |a: f32, b: f32| (a as f64 - b as f64).abs() > tol * (b as f64).abs().max(1.0);
            if got.len() != want.len() || got.iter().zip(&want).any(|(&a, &b)| off(a, b)) {
                failures.push(format!("{name}: timesteps {:?}, diffusers {want:?}", sched.timesteps()));
            }
        }
        let sample = run_loop(sched.as_mut(), exp);
        if exp["nan"].as_bool().unwrap() {
            // diffusers' result is NaN (its own test of these configs is skipped): so must ours be.
            if !sample.iter().any(|v| v.is_nan()) {
                failures.push(format!("{name}: diffusers ends in NaN, this did not"));
            }
            continue;
        }
        let (sum, mean) = sum_mean(&sample);
        let (want_sum, want_mean) = (exp["sum"].as_f64().unwrap(), exp["mean"].as_f64().unwrap());
        let rel = if SENSITIVE.0.contains(&name.as_str()) { SENSITIVE.1 } else { REL };
        if !close(sum, want_sum, rel) || !close(mean, want_mean, rel) {
            failures.push(format!("{name}: sum {sum} mean {mean}, diffusers {want_sum} {want_mean} (rel {rel})"));
        }
        // Σx and Σx² too: sums of |x| alone would miss a sign error.
        let signed: f64 = sample.iter().map(|&v| v as f64).sum();
        let squares: f64 = sample.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let (want_signed, want_squares) = (exp["signed_sum"].as_f64().unwrap(), exp["sum_sq"].as_f64().unwrap());
        // Σx may cancel to near 0: relative to Σ|x|.
        if (signed - want_signed).abs() > rel * want_sum || !close(squares, want_squares, 2.0 * rel) {
            failures.push(format!("{name}: Σx {signed} Σx² {squares}, diffusers {want_signed} {want_squares}"));
        }
        // The final samples (all loops but the "_y_" combinations).
        if let Some(want) = tensors.get(name.as_str()) {
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            let worst = sample.iter().zip(want).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
            if worst > ELEMENT * scale.max(1e-30) {
                failures.push(format!("{name}: an element is {worst} off (max |x| {scale})"));
            }
        }
        if name.ends_with("skip_prk") || name.contains("_x_") || name.contains("_y_") {
            continue; // loops of ours: diffusers' test files have no numbers for them
        }
        let (s, s_tol, m, m_tol) = diffusers_test_numbers::of(name);
        if (sum - s).abs() >= s_tol || (mean - m).abs() >= m_tol {
            failures.push(format!("{name}: sum {sum} mean {mean}, diffusers' test file says {s} ± {s_tol}, {m} ± {m_tol}"));
        }
    }
    assert!(count > 0, "no fixture loop named {prefix}*");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    count
}

#[test]
fn torch_randn_port_matches_torch() {
    let (_, tensors) = expectations();
    let want = &tensors["randn_seed0"];
    let mut g = TorchGenerator::manual_seed(0);
    let got: Vec<f32> = (0..2).flat_map(|_| g.randn(N)).collect();
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "torch randn port is {worst} off");
}

#[test]
fn pndm() {
    assert_eq!(check_loops("pndm"), 7);
}

#[test]
fn pndm_steps_offset_timesteps() {
    // test_scheduler_pndm.py test_steps_offset.
    let mut s = from_config(r#"{"_class_name": "PNDMScheduler", "steps_offset": 1}"#).unwrap();
    s.set_timesteps(10).unwrap();
    let want = [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1];
    assert_eq!(s.timesteps(), want.map(|v| v as f64).as_slice());
    // PRK needs four timesteps to warm up on.
    let err = s.set_timesteps(3).unwrap_err().to_string();
    assert!(err.contains("num_inference_steps") && err.contains(">= 4"), "{err}");
}

#[test]
fn lms() {
    assert_eq!(check_loops("lms"), 6);
}

#[test]
fn euler_ancestral() {
    assert_eq!(check_loops("euler_ancestral"), 4);
}

#[test]
fn euler() {
    // "euler_" also matches the ancestral loops: 9 Euler + 4 ancestral.
    assert_eq!(check_loops("euler_"), 13);
}

#[test]
fn heun() {
    assert_eq!(check_loops("heun"), 5);
}

#[test]
fn ddim() {
    assert_eq!(check_loops("ddim"), 8);
}

#[test]
fn ddpm() {
    assert_eq!(check_loops("ddpm"), 6);
}

#[test]
fn dpm_solver_multistep() {
    // 6 loops of the test file, 9 more config keys, 40 algorithm × solver_type × order × prediction.
    assert_eq!(check_loops("dpm_multi"), 55);
}

fn config_error(json: &str) -> String {
    match from_config(json) {
        Ok(s) => panic!("{json} built a {}", s.class_name()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unipc_multistep() {
    // 5 loops of the test file, 8 more config keys, 12 solver_type × order × prediction.
    assert_eq!(check_loops("unipc"), 25);
}

#[test]
fn deis_multistep() {
    // 3 loops of the test file, 4 more configs, 6 order × prediction.
    assert_eq!(check_loops("deis"), 13);
}

#[test]
fn dpm_solver_singlestep() {
    // 6 loops of the test file, 4 more configs, 32 algorithm × solver_type × order × prediction.
    assert_eq!(check_loops("dpm_single"), 42);
}

#[test]
fn kdpm2() {
    // 3 loops of each test file, 2 more configs each.
    assert_eq!(check_loops("kdpm2"), 10);
}

#[test]
fn score_sde_ve() {
    assert_eq!(check_loops("sde_ve"), 2);
}

#[test]
fn consistency_model() {
    assert_eq!(check_loops("cm_"), 4);
}

#[test]
fn edm() {
    // EDM Euler: 1 loop of the test file, 3 more configs; EDM DPM-Solver: 4 loops, 1 more config,
    // 20 algorithm × solver_type × order × prediction.
    assert_eq!(check_loops("edm_"), 29);
}

#[test]
fn unknown_class_is_an_error_naming_it() {
    let err = from_config(r#"{"_class_name": "FancyScheduler"}"#).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("FancyScheduler"), "{err}");
    // A diffusers class not implemented here is named as such.
    let err = config_error(r#"{"_class_name": "LCMScheduler"}"#);
    assert!(err.contains("LCMScheduler") && err.contains("not implemented here"), "{err}");
    assert!(config_error(r#"{"num_train_timesteps": 1000}"#).contains("_class_name"));
}

#[test]
fn unknown_key_values_are_errors_naming_the_key() {
    for (class, key, value) in [
        ("PNDMScheduler", "beta_schedule", r#""cosine""#),
        ("PNDMScheduler", "prediction_type", r#""sample""#),
        ("LMSDiscreteScheduler", "timestep_spacing", r#""middle""#),
        ("EulerDiscreteScheduler", "final_sigmas_type", r#""one""#),
        ("EulerDiscreteScheduler", "use_beta_sigmas", "true"),
        ("EulerDiscreteScheduler", "interpolation_type", r#""log_linear""#),
        ("HeunDiscreteScheduler", "clip_sample", r#""yes""#),
        ("DDIMScheduler", "num_train_timesteps", "-5"),
        ("DDPMScheduler", "variance_type", r#""huge""#),
        ("DDPMScheduler", "trained_betas", "[0.1, 0.2]"),
        ("DPMSolverMultistepScheduler", "algorithm_type", r#""dpm3""#),
        ("DPMSolverMultistepScheduler", "solver_order", "4"),
        ("DPMSolverMultistepScheduler", "final_sigmas_type", r#""zero""#), // with the default dpmsolver++: fine; see below
        ("UniPCMultistepScheduler", "solver_type", r#""bh3""#),
        ("UniPCMultistepScheduler", "disable_corrector", r#""all""#),
        ("DEISMultistepScheduler", "solver_order", "4"),
        ("DPMSolverSinglestepScheduler", "lambda_min_clipped", r#""low""#),
        ("KDPM2DiscreteScheduler", "prediction_type", r#""sample""#),
        ("KDPM2AncestralDiscreteScheduler", "use_beta_sigmas", "true"),
        ("ScoreSdeVeScheduler", "snr", r#""high""#),
        ("CMStochasticIterativeScheduler", "clip_denoised", r#""no""#),
        ("EDMEulerScheduler", "sigma_schedule", r#""linear""#),
        ("EDMDPMSolverMultistepScheduler", "algorithm_type", r#""dpmsolver""#),
    ] {
        if key == "final_sigmas_type" {
            // Refused only for the ε-space algorithms, as diffusers does.
            let err = config_error(r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}"#);
            assert!(err.contains("final_sigmas_type"), "{err}");
            continue;
        }
        let err = config_error(&format!(r#"{{"_class_name": "{class}", "{key}": {value}}}"#));
        assert!(err.contains(key), "{class} {key} = {value}: {err}");
    }
    // Keys a class does not read are ignored, as diffusers does.
    from_config(r#"{"_class_name": "PNDMScheduler", "solver_order": 7, "use_karras_sigmas": "whatever"}"#).unwrap();
}

#[test]
fn bare_infinity_in_a_config_parses() {
    let mut s = from_config(r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity}"#).unwrap();
    s.set_timesteps(10).unwrap();
    let err = config_error(r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": "low"}"#);
    assert!(err.contains("lambda_min_clipped"), "{err}");
}

#[test]
fn missing_or_short_noise_is_an_error() {
    let mut s = from_config(r#"{"_class_name": "EulerAncestralDiscreteScheduler"}"#).unwrap();
    s.set_timesteps(10).unwrap();
    let t = s.timesteps()[0];
    let x = vec![0.5f32; 16];
    let err = s.step(&x, t, &x, None).unwrap_err().to_string();
    assert!(err.contains("noise"), "{err}");
    let err = s.step(&x, t, &x, Some(&[0.0; 15])).unwrap_err().to_string();
    assert!(err.contains("noise has 15 values"), "{err}");
    let mut d = from_config(r#"{"_class_name": "DDPMScheduler"}"#).unwrap();
    d.set_timesteps(10).unwrap();
    let t = d.timesteps()[0];
    assert!(d.step(&x, t, &x, None).unwrap_err().to_string().contains("noise"));
    // The other stochastic steps, each at a call that adds noise.
    for (class, extra) in [
        ("DPMSolverMultistepScheduler", r#", "algorithm_type": "sde-dpmsolver++""#),
        ("DPMSolverSinglestepScheduler", r#", "algorithm_type": "sde-dpmsolver++""#),
        ("EDMDPMSolverMultistepScheduler", r#", "algorithm_type": "sde-dpmsolver++""#),
        ("CMStochasticIterativeScheduler", ""),
        ("ScoreSdeVeScheduler", ""),
    ] {
        let mut s = from_config(&format!(r#"{{"_class_name": "{class}"{extra}}}"#)).unwrap();
        s.set_timesteps(10).unwrap();
        let t = s.timesteps()[0];
        let err = s.step(&x, t, &x, None).unwrap_err().to_string();
        assert!(err.contains("noise"), "{class}: {err}");
    }
    // KDPM2 ancestral: its first evaluation adds none, its second does.
    let mut k = from_config(r#"{"_class_name": "KDPM2AncestralDiscreteScheduler"}"#).unwrap();
    k.set_timesteps(10).unwrap();
    let ts = k.timesteps().to_vec();
    k.step(&x, ts[0], &x, None).unwrap();
    assert!(k.step(&x, ts[1], &x, None).unwrap_err().to_string().contains("noise"));
    // Deterministic steps need none.
    let mut e = from_config(r#"{"_class_name": "EulerDiscreteScheduler"}"#).unwrap();
    e.set_timesteps(10).unwrap();
    let t = e.timesteps()[0];
    e.step(&x, t, &x, None).unwrap();
}
