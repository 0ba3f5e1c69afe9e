//! `hf:owner/name[@revision]` model sources against a local server in the Hub's URL layout (no
//! internet): a plain repo and a pipeline repo holding the bundled model, weights answered with a
//! 302 to another port (as the Hub sends them to its CDN), a renamed repo's relative redirect, a
//! `.bin`-only repo, an HTML page for a config and a missing repo; through the library
//! (`hub::Hub`) and the CLI.
#![cfg(all(feature = "cli", not(target_arch = "wasm32")))]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ddim_webgpu::hub::{Hub, HubId};
use ddim_webgpu::Model;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/mnist-cond");

/// Repo files by "owner/name", then by path in the repo.
type Repos = HashMap<String, HashMap<String, Vec<u8>>>;

/// A Hub double on two ports: `hub` answers `/{owner}/{name}/resolve/{revision}/{path}` (revision
/// `main` only; `X-Repo-Commit` on every answer, as the Hub sends it) and sends `.safetensors`
/// and `.bin` files to `cdn`, which serves them; `old/plain` redirects relatively to `test/plain`.
/// Every request is logged as "METHOD PORT-NAME PATH".
struct FakeHub {
    endpoint: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeHub {
    fn start() -> Self {
        let repos = Arc::new(repos());
        let log = Arc::new(Mutex::new(Vec::new()));
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn_base = format!("http://{}", cdn.local_addr().unwrap());
        serve(cdn, "cdn", log.clone(), {
            let repos = repos.clone();
            move |method, path| cdn_answer(&repos, method, path)
        });
        let endpoint = format!("http://{}", hub.local_addr().unwrap());
        serve(hub, "hub", log.clone(), move |method, path| hub_answer(&repos, &cdn_base, method, path));
        FakeHub { endpoint, log }
    }

    fn requests(&self, on: &str) -> Vec<String> {
        self.log.lock().unwrap().iter().filter(|l| l.contains(on)).cloned().collect()
    }
}

/// The repos: the bundled model as a plain repo and as a pipeline, one with pickle weights only,
/// and one whose config.json is an HTML page (a login page, a proxy's error page).
fn repos() -> Repos {
    let file = |name: &str| std::fs::read(Path::new(BUNDLED).join(name)).unwrap();
    let (config, weights, scheduler) = (file("config.json"), file("diffusion_pytorch_model.safetensors"), file("scheduler_config.json"));
    let repo = |files: &[(&str, &[u8])]| files.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect::<HashMap<_, _>>();
    let index = br#"{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}"#;
    HashMap::from([
        (
            "test/plain".into(),
            repo(&[("config.json", &config), ("diffusion_pytorch_model.safetensors", &weights), ("scheduler_config.json", &scheduler)]),
        ),
        (
            "test/pipeline".into(),
            repo(&[
                ("model_index.json", index),
                ("unet/config.json", &config),
                ("unet/diffusion_pytorch_model.safetensors", &weights),
                ("scheduler/scheduler_config.json", &scheduler),
            ]),
        ),
        ("test/pickle".into(), repo(&[("config.json", &config), ("diffusion_pytorch_model.bin", b"\x80\x02pickle")])),
        ("test/html".into(), repo(&[("config.json", b"<!DOCTYPE html><html><body>Sign in</body></html>")])),
    ])
}

/// An answer: status, extra headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

fn hub_answer(repos: &Repos, cdn: &str, _method: &str, path: &str) -> Answer {
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let [owner, name, "resolve", revision, file] = parts[..] else { return (404, vec![], b"not found".to_vec()) };
    let commit = ("X-Repo-Commit".to_string(), COMMIT.to_string());
    if format!("{owner}/{name}") == "old/plain" {
        return (307, vec![("Location".into(), format!("/test/plain/resolve/{revision}/{file}"))], vec![]);
    }
    match repos.get(&format!("{owner}/{name}")).and_then(|r| r.get(file)) {
        Some(_) if revision != "main" => (404, vec![], b"Revision Not Found".to_vec()),
        Some(_) if file.ends_with(".safetensors") || file.ends_with(".bin") => {
            (302, vec![commit, ("Location".into(), format!("{cdn}/cdn/{owner}/{name}/{file}"))], vec![])
        }
        Some(body) => (200, vec![commit], body.clone()),
        None => (404, vec![], b"Entry not found".to_vec()),
    }
}

fn cdn_answer(repos: &Repos, _method: &str, path: &str) -> Answer {
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    let ["cdn", owner, name, file] = parts[..] else { return (404, vec![], vec![]) };
    match repos.get(&format!("{owner}/{name}")).and_then(|r| r.get(file)) {
        Some(body) => (200, vec![], body.clone()),
        None => (404, vec![], vec![]),
    }
}

/// Accepts connections on `listener` in a thread, one thread per connection, one request each.
fn serve(
    listener: TcpListener,
    who: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    answer: impl Fn(&str, &str) -> Answer + Send + Sync + 'static,
) {
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (log, answer) = (log.clone(), answer.clone());
            std::thread::spawn(move || respond(stream, who, &log, &*answer));
        }
    });
}

fn respond(mut stream: TcpStream, who: &str, log: &Mutex<Vec<String>>, answer: &dyn Fn(&str, &str) -> Answer) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // The headers (nothing in them matters here) up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    log.lock().unwrap().push(format!("{method} {who} {path}"));
    let (status, headers, body) = answer(method, path);
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    let _ = stream.write_all(format!("{head}\r\n").as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(&body);
    }
}

/// A fresh cache folder under the system's temp folder.
fn cache_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddim-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Downloads `source` into `cache` from `hub` and loads it.
fn load(hub: &FakeHub, cache: &Path, source: &str) -> ddim_webgpu::Result<Model> {
    let snapshot = Hub::new(&hub.endpoint, cache.to_path_buf()).download(&HubId::parse(source)?, &mut |_| {})?;
    Model::load_dir(&snapshot.dir)
}

/// The model loaded is the bundled one: its config, its weights and its scheduler.
fn assert_bundled(model: &Model) {
    let local = Model::load_dir(Path::new(BUNDLED)).unwrap();
    assert_eq!(model.weights.parameter_count(), local.weights.parameter_count());
    let name = "conv_in.weight";
    assert_eq!(model.weights.get(name).unwrap().data, local.weights.get(name).unwrap().data);
    assert_eq!(model.config.num_class_embeds, local.config.num_class_embeds);
    assert!(model.scheduler_source.ends_with("scheduler_config.json"), "scheduler from {}", model.scheduler_source);
}

#[test]
fn a_plain_repo_downloads_through_the_redirect_and_is_cached() {
    let hub = FakeHub::start();
    let cache = cache_dir("plain");
    assert_bundled(&load(&hub, &cache, "hf:test/plain").unwrap());
    assert_eq!(hub.requests("GET cdn").len(), 1, "the weights come from the CDN port: {:?}", hub.requests(""));
    let repo = cache.join("models--test--plain");
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    assert!(repo.join("snapshots").join(COMMIT).join("diffusion_pytorch_model.safetensors").is_file());
    // Loaded again: the configs are asked for (the commit may have moved), the weights are not.
    let mut cached = false;
    let snapshot =
        Hub::new(&hub.endpoint, cache.clone()).download(&HubId::parse("hf:test/plain").unwrap(), &mut |p| cached |= p.cached).unwrap();
    assert!(cached && snapshot.note.is_none());
    assert_eq!(hub.requests("GET cdn").len(), 1, "the weights were downloaded again");
    // Without the network the cached snapshot serves, and says so.
    let offline = Hub::new("http://127.0.0.1:9", cache.clone()).download(&HubId::parse("hf:test/plain").unwrap(), &mut |_| {});
    assert!(offline.unwrap().note.unwrap().contains("cached copy"));
    let offline = Hub::new(&hub.endpoint, cache.clone()).offline(true);
    assert!(offline.download(&HubId::parse("hf:test/pipeline").unwrap(), &mut |_| {}).unwrap_err().to_string().contains("HF_HUB_OFFLINE"));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_pipeline_repo_loads_its_unet_and_scheduler() {
    let hub = FakeHub::start();
    let cache = cache_dir("pipeline");
    let model = load(&hub, &cache, "hf:test/pipeline").unwrap();
    assert_bundled(&model);
    assert!(model.scheduler_source.contains("scheduler/scheduler_config.json"), "{}", model.scheduler_source);
    assert!(hub.requests("GET hub").iter().any(|r| r.ends_with("/test/pipeline/resolve/main/unet/config.json")));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_renamed_repo_follows_its_relative_redirect() {
    let hub = FakeHub::start();
    let cache = cache_dir("renamed");
    assert_bundled(&load(&hub, &cache, "hf:old/plain").unwrap());
    assert!(hub.requests("GET hub /test/plain/resolve/main/config.json").len() == 1, "{:?}", hub.requests(""));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn bad_sources_are_errors_naming_the_file_and_the_cause() {
    let hub = FakeHub::start();
    let cache = cache_dir("bad");
    let err = |source: &str| load(&hub, &cache, source).map(|_| ()).unwrap_err().to_string();
    let missing = err("hf:test/missing");
    assert!(missing.contains(&format!("{}/test/missing/resolve/main/config.json", hub.endpoint)), "{missing}");
    assert!(missing.contains("404") && missing.contains("may not exist"), "{missing}");
    let revision = err("hf:test/plain@nope");
    assert!(revision.contains("/test/plain/resolve/nope/config.json") && revision.contains("revision may not exist"), "{revision}");
    let html = err("hf:test/html");
    assert!(html.contains("/test/html/resolve/main/config.json") && html.contains("HTML"), "{html}");
    let pickle = err("hf:test/pickle");
    assert!(pickle.contains("diffusion_pytorch_model.bin") && pickle.contains("convert them to safetensors"), "{pickle}");
    for (id, why) in [("hf:", "no repo id"), ("hf:owner", "no owner"), ("hf:a/b/c", "more than one"), ("hf:a/b!", "'!'")] {
        let e = err(id);
        assert!(e.contains(&format!("`{id}`")) && e.contains(why), "{id}: {e}");
    }
    assert!(hub.requests("cdn").iter().all(|r| r.contains("pickle")), "only the pickle was asked of the CDN: {:?}", hub.requests("cdn"));
    let _ = std::fs::remove_dir_all(&cache);
}

/// `ddim sample --model hf:…` with HF_ENDPOINT and HF_HOME set, as a user would run it: (success, stderr).
fn ddim_sample(hub: &FakeHub, home: &Path, model: &str) -> (bool, String) {
    let out_png = home.join("out.png");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddim"))
        .args(["sample", "--model", model, "--steps", "2", "--num", "1", "--cpu", "--out"])
        .arg(&out_png)
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HOME", home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    (out.status.success() && out_png.is_file(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_cli_samples_a_hub_model_and_names_bad_ones() {
    let hub = FakeHub::start();
    let home = cache_dir("cli");
    std::fs::create_dir_all(&home).unwrap();
    let (ok, stderr) = ddim_sample(&hub, &home, "hf:test/pipeline@main");
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&hub.endpoint) && stderr.contains("unet/diffusion_pytorch_model.safetensors"), "{stderr}");
    assert!(home.join("hub/models--test--pipeline/snapshots").join(COMMIT).join("unet/config.json").is_file());
    let (ok, stderr) = ddim_sample(&hub, &home, "hf:test/missing");
    assert!(!ok && stderr.contains("/test/missing/resolve/main/config.json") && stderr.contains("may not exist"), "{stderr}");
    let (ok, stderr) = ddim_sample(&hub, &home, "hf:owner");
    assert!(!ok && stderr.contains("`hf:owner`: not a Hub model id (no owner)"), "{stderr}");
    std::fs::remove_dir_all(&home).unwrap();
}
