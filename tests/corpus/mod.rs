//! The bad-input corpus (`cases.json`): each case is a small, valid fixture model broken in one
//! way, with the words its error must contain. The same cases run through the native API
//! (`tests/bad_input.rs`), the `ddim` CLI (same file) and the wasm API in browsers (`tests/web.rs`).
//!
//! A case holds `model` (a fixture, default `no_mid_attn`), `weights` (edits of the safetensors
//! file, applied in order), `config` (fields to set, `null` removes one) or `config_raw` /
//! `config_append`, `scheduler` (the text of scheduler_config.json), `run` (sampling options),
//! `max_buffer_bytes` (caps the GPU's per-buffer limit, to test the limit checks on a small
//! model) and `expect` (substrings the error message must contain).
#![allow(dead_code)]

use serde::Deserialize;
use serde_json::Value;

const CASES: &str = include_str!("cases.json");

/// Cases found by the fuzzer (`tests/bad_input.rs`): same format as `cases.json`.
const FUZZ_FOUND: &str = include_str!("fuzz_found.json");

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default = "default_model")]
    pub model: String,
    #[serde(default)]
    pub weights: Vec<Value>,
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
    pub config_raw: Option<String>,
    pub config_append: Option<String>,
    pub scheduler: Option<String>,
    #[serde(default)]
    pub run: Run,
    pub max_buffer_bytes: Option<u64>,
    pub expect: Vec<String>,
}

fn default_model() -> String {
    "no_mid_attn".into()
}

/// Sampling options: numbers may be given as the strings "NaN", "Inf", "-Inf".
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub steps: Option<Value>,
    pub eta: Option<Value>,
    pub sampler: Option<String>,
    pub batch: Option<Value>,
    pub class: Option<Value>,
    pub guidance: Option<Value>,
    /// The adaptive ODE solver's rtol = atol.
    pub tolerance: Option<Value>,
    /// "gpu" or "cpu" (default).
    pub engine: Option<String>,
}

impl Run {
    pub fn gpu(&self) -> bool {
        self.engine.as_deref() == Some("gpu")
    }

    /// The numeric options as (name, value), with the corpus's small default of 2 steps.
    pub fn numbers(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![("steps", self.steps.as_ref().map_or(2.0, number))];
        for (k, v) in [
            ("eta", &self.eta),
            ("batch", &self.batch),
            ("class", &self.class),
            ("guidance", &self.guidance),
            ("tolerance", &self.tolerance),
        ] {
            if let Some(v) = v {
                out.push((k, number(v)));
            }
        }
        out
    }
}

pub fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => panic!("corpus: number {other:?}"),
        },
        other => other.as_f64().unwrap_or_else(|| panic!("corpus: number {other}")),
    }
}

/// What the case feeds to the engine.
pub struct Inputs {
    pub config: String,
    pub weights: Vec<u8>,
    pub scheduler: Option<String>,
}

pub fn cases() -> Vec<Case> {
    let mut all: Vec<Case> = serde_json::from_str(CASES).expect("tests/corpus/cases.json parses");
    all.extend(serde_json::from_str::<Vec<Case>>(FUZZ_FOUND).expect("tests/corpus/fuzz_found.json parses"));
    all
}

/// The fixture models the cases start from (compiled in, so the wasm tests have them too).
pub fn base(model: &str) -> (&'static str, &'static [u8]) {
    match model {
        "no_mid_attn" => (
            include_str!("../fixtures/models/no_mid_attn/config.json"),
            include_bytes!("../fixtures/models/no_mid_attn/diffusion_pytorch_model.safetensors"),
        ),
        "class_f16" => (
            include_str!("../fixtures/models/class_f16/config.json"),
            include_bytes!("../fixtures/models/class_f16/diffusion_pytorch_model.safetensors"),
        ),
        "tiny_attn" => (
            include_str!("../fixtures/models/tiny_attn/config.json"),
            include_bytes!("../fixtures/models/tiny_attn/diffusion_pytorch_model.safetensors"),
        ),
        "ncsnpp_like" => (
            include_str!("../fixtures/models/ncsnpp_like/config.json"),
            include_bytes!("../fixtures/models/ncsnpp_like/diffusion_pytorch_model.safetensors"),
        ),
        other => panic!("corpus: unknown model {other}"),
    }
}

pub fn inputs(case: &Case) -> Inputs {
    let (config, weights) = base(&case.model);
    let mut weights = weights.to_vec();
    for edit in &case.weights {
        weights = edit_weights(weights, edit);
    }
    let config = match &case.config_raw {
        Some(raw) => raw.clone(),
        None => {
            let mut v: Value = serde_json::from_str(config).unwrap();
            for (k, x) in &case.config {
                match x {
                    Value::Null => drop(v.as_object_mut().unwrap().remove(k)),
                    x => v[k] = x.clone(),
                }
            }
            v.to_string() + case.config_append.as_deref().unwrap_or("")
        }
    };
    Inputs { config, weights, scheduler: case.scheduler.clone() }
}

/// Why `message` is not the error the case expects (a word it lacks), if it is not.
pub fn mismatch(case: &Case, via: &str, message: &str) -> Option<String> {
    let missing = case.expect.iter().find(|w| !message.contains(w.as_str()))?;
    Some(format!("{via}: case {:?}: the error {message:?} does not contain {missing:?}", case.name))
}

/// (header length, header text, data) of a safetensors file.
pub fn split(bytes: &[u8]) -> (usize, String, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (n, String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(), &bytes[8 + n..])
}

pub fn join(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

fn edit_weights(bytes: Vec<u8>, edit: &Value) -> Vec<u8> {
    let (op, arg) = edit.as_object().and_then(|o| o.iter().next()).expect("corpus: a weights edit is {op: arg}");
    let s = |i: usize| arg[i].as_str().unwrap().to_string();
    match op.as_str() {
        "raw" => arg.as_str().unwrap().as_bytes().to_vec(),
        "truncate" => {
            let n = arg.as_i64().unwrap();
            let keep = if n < 0 { bytes.len() as i64 + n } else { n };
            bytes[..keep as usize].to_vec()
        }
        "keep_fraction" => bytes[..(bytes.len() as f64 * arg.as_f64().unwrap()) as usize].to_vec(),
        "header_len" => {
            let mut out = bytes;
            out[..8].copy_from_slice(&arg.as_u64().unwrap().to_le_bytes());
            out
        }
        "raw_header" => join(arg.as_str().unwrap().as_bytes(), split(&bytes).2),
        "raw_header_hex" => {
            let hex = arg.as_str().unwrap();
            let raw: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            join(&raw, split(&bytes).2)
        }
        "header_replace" => {
            let (_, header, data) = split(&bytes);
            let edited = header.replacen(&s(0), &s(1), 1);
            assert_ne!(edited, header, "corpus: {} is not in the header", s(0));
            join(edited.as_bytes(), data)
        }
        "append" => [bytes.as_slice(), arg.as_str().unwrap().as_bytes()].concat(),
        // The fuzzer's mutations (`tests/fuzz.rs`), so that what it finds can be kept as a case.
        "flip" => {
            let mut out = bytes;
            let (at, bit) = (arg[0].as_u64().unwrap() as usize, arg[1].as_u64().unwrap());
            out[at] ^= 1 << bit;
            out
        }
        "set_bytes" => {
            let mut out = bytes;
            let at = arg[0].as_u64().unwrap() as usize;
            for (i, b) in arg[1].as_array().unwrap().iter().enumerate() {
                out[at + i] = b.as_u64().unwrap() as u8;
            }
            out
        }
        "splice" => {
            // Copies `len` bytes from `from` over `to`.
            let (from, len, to) = (arg[0].as_u64().unwrap() as usize, arg[1].as_u64().unwrap() as usize, arg[2].as_u64().unwrap() as usize);
            let mut out = bytes.clone();
            out[to..to + len].copy_from_slice(&bytes[from..from + len]);
            out
        }
        "remove" => {
            let (at, len) = (arg[0].as_u64().unwrap() as usize, arg[1].as_u64().unwrap() as usize);
            [&bytes[..at], &bytes[at + len..]].concat()
        }
        _ => edit_tensors(&bytes, op, arg),
    }
}

/// Edits that re-serialise the tensors (safetensors' own writer: the file stays well-formed).
fn edit_tensors(bytes: &[u8], op: &str, arg: &Value) -> Vec<u8> {
    use safetensors::Dtype;
    let parsed = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
        parsed.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    let name = arg.get(0).and_then(Value::as_str).or(arg.as_str()).unwrap().to_string();
    let find = |owned: &mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>| {
        owned.iter().position(|t| t.0 == name).unwrap_or_else(|| panic!("corpus: no tensor {name}"))
    };
    let shape_arg = || arg[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect::<Vec<_>>();
    match op {
        "drop" => {
            let i = find(&mut owned);
            owned.remove(i);
        }
        "add" => {
            let shape = shape_arg();
            let n: usize = shape.iter().product();
            owned.push((name.clone(), Dtype::F32, shape, vec![0; n * 4]));
        }
        "reshape" => {
            let i = find(&mut owned);
            let shape = shape_arg();
            let size = owned[i].1.bitsize() / 8;
            owned[i].3 = vec![0; shape.iter().product::<usize>() * size];
            owned[i].2 = shape;
        }
        "retype" => {
            let i = find(&mut owned);
            let dtype: Dtype = serde_json::from_value(arg[1].clone()).unwrap();
            let size = (dtype.bitsize() / 8).max(1);
            let len = owned[i].3.len() / size * size;
            owned[i].3.truncate(len);
            owned[i].2 = vec![len / size];
            owned[i].1 = dtype;
        }
        "poison" => {
            let i = find(&mut owned);
            let at = arg[1].as_u64().unwrap() as usize;
            let v = number(&arg[2]);
            let t = &mut owned[i];
            match t.1 {
                Dtype::F32 => t.3[at * 4..at * 4 + 4].copy_from_slice(&(v as f32).to_le_bytes()),
                Dtype::F16 => t.3[at * 2..at * 2 + 2].copy_from_slice(&half::f16::from_f64(v).to_le_bytes()),
                other => panic!("corpus: poison {other:?}"),
            }
        }
        other => panic!("corpus: unknown weights edit {other}"),
    }
    let views: Vec<_> =
        owned.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, None).unwrap()
}
