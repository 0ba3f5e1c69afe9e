#![cfg(not(target_arch = "wasm32"))]
//! A seeded mutation fuzzer of the model loader (safetensors + config.json + scheduler config) on
//! stable Rust: bit flips, byte overwrites, splices, removals and truncations of valid fixture
//! files (biased towards the safetensors header, where the structure is), and field edits of the
//! configs. Every input must give `Ok` or a typed error: no panic, no hang. A model that loads is
//! sampled for one step on the fast CPU engine (errors allowed, panics not).
//!
//! `cargo test --test fuzz` (part of `./build.sh test`) runs 5,000 cases; `FUZZ_SECONDS=600` runs for ten minutes
//! instead, `FUZZ_SEED` picks another sequence. A failure prints the case in the corpus format:
//! add it to `tests/corpus/fuzz_found.json`, where the corpus tests keep checking it.

mod corpus;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ddim_webgpu::run::{CpuEngine, RunOptions};
use ddim_webgpu::Model;
use serde_json::{json, Value};

/// xorshift64*: a fixed sequence per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const MODELS: [&str; 3] = ["no_mid_attn", "class_f16", "tiny_attn"];

/// Values that break configs in interesting ways.
fn odd_value(rng: &mut Rng) -> Value {
    rng.pick(&[
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(7),
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(1.5),
        json!(1e308),
        json!("x"),
        json!(""),
        json!(null),
        json!([]),
        json!([0]),
        json!([8, 8, 8]),
        json!({}),
        json!(true),
        json!(["DownBlock2D"]),
        json!(["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]),
    ])
    .clone()
}

/// One random case, in the corpus's format.
fn mutate(rng: &mut Rng) -> corpus::Case {
    let model = rng.pick(&MODELS).to_string();
    let (config, weights) = corpus::base(&model);
    let (header_len, _, _) = corpus::split(weights);
    let mut case: corpus::Case =
        serde_json::from_value(json!({"name": "fuzz", "model": model, "expect": []})).expect("a minimal case parses");
    let edits = 1 + rng.below(3);
    let mut len = weights.len();
    for _ in 0..edits {
        // Most edits land in the header (8 + header_len bytes), where the structure is.
        let region = if rng.below(4) == 0 { len } else { (8 + header_len).min(len) };
        let edit = match rng.below(9) {
            0 | 1 => json!({"flip": [rng.below(region), rng.below(8)]}),
            2 => {
                let at = rng.below(region);
                let n = (1 + rng.below(4)).min(len - at);
                let bytes: Vec<u8> = (0..n).map(|_| *rng.pick(b"0123456789[]{},:\"-e. \x00\xff")).collect();
                json!({"set_bytes": [at, bytes]})
            }
            3 => {
                let n = 1 + rng.below(64.min(len / 2));
                json!({"splice": [rng.below(len - n), n, rng.below(region.saturating_sub(n).max(1))]})
            }
            4 => {
                let at = rng.below(region);
                json!({"remove": [at, (1 + rng.below(16)).min(len - at)]})
            }
            5 => json!({"truncate": rng.below(len)}),
            6 => {
                let key = rng
                    .pick(&serde_json::from_str::<serde_json::Map<String, Value>>(config).unwrap().keys().cloned().collect::<Vec<_>>())
                    .clone();
                case.config.insert(key, odd_value(rng));
                continue;
            }
            7 => {
                let field = *rng.pick(&[
                    "num_train_timesteps",
                    "beta_start",
                    "beta_end",
                    "beta_schedule",
                    "prediction_type",
                    "steps_offset",
                    "timestep_spacing",
                    "clip_sample_range",
                    "trained_betas",
                ]);
                case.scheduler = Some(json!({ field: odd_value(rng) }).to_string());
                continue;
            }
            _ => {
                let name = *rng.pick(&["conv_in.weight", "conv_in.bias", "conv_out.bias", "time_embedding.linear_1.weight"]);
                json!({"poison": [name, 0, *rng.pick(&["NaN", "Inf", "-Inf"])]})
            }
        };
        if edit.get("poison").is_some() && !case.weights.is_empty() {
            continue; // a tensor edit needs a well-formed file
        }
        len = corpus::inputs(&corpus::Case { weights: [case.weights.clone(), vec![edit.clone()]].concat(), ..case.clone() }).weights.len();
        case.weights.push(edit);
        if len < 16 {
            break;
        }
    }
    case
}

/// Loads and (if it loads) samples one step: any `Result` is fine, a panic is not. Returns the
/// loader's error, if it refused the case.
fn exercise(case: &corpus::Case) -> Option<String> {
    let inputs = corpus::inputs(case);
    let model = match Model::from_bytes(&inputs.config, &inputs.weights, inputs.scheduler.as_deref()) {
        Ok(model) => model,
        Err(e) => return Some(e.to_string()),
    };
    if let Ok(plan) = RunOptions::new().steps(1).batch(1).plan(&model) {
        let _ = pollster::block_on(ddim_webgpu::run::run_to_end(&mut CpuEngine::new(&model), &plan));
    }
    None
}

/// The tensor a case poisons with NaN or ±Inf where that is its only edit (configs untouched, the
/// file otherwise well-formed): the loader must then refuse it naming the tensor.
fn only_poison(case: &corpus::Case) -> Option<String> {
    match &case.weights[..] {
        [edit] if case.config.is_empty() && case.scheduler.is_none() => Some(edit.get("poison")?[0].as_str()?.to_string()),
        _ => None,
    }
}

#[test]
fn fuzz_the_loader() {
    let seconds: Option<u64> = std::env::var("FUZZ_SECONDS").ok().map(|s| s.parse().expect("FUZZ_SECONDS is a number"));
    let seed: u64 = std::env::var("FUZZ_SEED").ok().map_or(0x5eed, |s| s.parse().expect("FUZZ_SEED is a number"));
    let mut rng = Rng(seed | 1);
    // A watchdog: a case that takes more than 30 s is a hang.
    let beat = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    {
        let beat = beat.clone();
        std::thread::spawn(move || loop {
            let before = beat.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(30));
            if beat.load(Ordering::SeqCst) == before {
                eprintln!("fuzz: case {before} hung for 30 s (seed {seed}); rerun with FUZZ_SEED={seed} to reproduce");
                std::process::abort();
            }
        });
    }
    let (mut cases, mut loaded, mut poisoned) = (0u64, 0u64, 0u64);
    let mut misnamed = Vec::new();
    loop {
        let done = match seconds {
            Some(s) => start.elapsed() >= Duration::from_secs(s),
            None => cases >= 5000,
        };
        if done {
            break;
        }
        let mut case = mutate(&mut rng);
        if let Ok(refused) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exercise(&case))) {
            loaded += refused.is_none() as u64;
            if let Some(tensor) = only_poison(&case) {
                poisoned += 1;
                let says = refused.as_deref().unwrap_or("nothing: it loaded");
                if !(says.contains("NaN or Inf") && says.contains(&format!("`{tensor}`"))) {
                    misnamed.push(format!("case {cases} (NaN/Inf in {tensor}): {says}"));
                }
            }
        } else {
            case.name = format!("fuzz: seed {seed} case {cases}");
            case.expect = vec!["(the message it should give)".into()];
            panic!(
                "fuzz case {cases} panicked; keep it in tests/corpus/fuzz_found.json:\n{}",
                serde_json::to_string(&json!({
                    "name": case.name, "model": case.model, "weights": case.weights, "config": case.config,
                    "scheduler": case.scheduler, "expect": case.expect
                }))
                .unwrap()
            );
        }
        cases += 1;
        beat.store(cases, Ordering::SeqCst);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz: {cases} cases in {secs:.1} s (seed {seed}): {loaded} loaded, {} refused with an error ({poisoned} poisoned with \
         NaN/Inf alone), 0 panics, 0 hangs",
        cases - loaded
    );
    // The count is what it says, and the mutator makes both kinds of case: one whose every case
    // failed the length check (or loaded) would test nothing.
    match seconds {
        None => assert_eq!(cases, 5000, "the default run is 5,000 cases"),
        Some(_) => assert!(cases > 0, "no case ran in FUZZ_SECONDS"),
    }
    assert!(0 < loaded && loaded < cases, "{loaded} of {cases} cases loaded: the mutator should make both kinds");
    assert!(poisoned > 0 || seconds.is_some_and(|s| s < 5), "no case was poisoned with NaN/Inf alone");
    assert!(misnamed.is_empty(), "poisoned weights not refused by name:\n{}", misnamed.join("\n"));
}
