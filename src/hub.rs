//! Models from the Hugging Face Hub (native, feature `hub`): `hf:owner/name[@revision]` checked as
//! huggingface_hub checks repo ids, its files downloaded from `{endpoint}/{owner}/{name}/resolve/
//! {revision}/{path}` into huggingface_hub's cache layout, then loaded as a local folder
//! (`Model::load_dir`). A pipeline repo (`model_index.json`) gives its `unet/` and `scheduler/`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// What `hf:` sources are read from unless `$HF_ENDPOINT` says otherwise (as in huggingface_hub).
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The prefix that marks a model source as a Hub repo id.
pub const PREFIX: &str = "hf:";

/// A Hub model repo at a revision, parsed from `hf:owner/name[@revision]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    pub owner: String,
    pub name: String,
    /// A branch, tag or commit; `main` unless given.
    pub revision: String,
}

impl HubId {
    /// Parses `hf:owner/name[@revision]`. The repo id follows huggingface_hub's `validate_repo_id`
    /// (letters, digits, `-`, `_`, `.`; neither part starts or ends with `-` or `.`; no `--` or
    /// `..`; not ending in `.git`; the name at most 96 characters), with the owner required.
    pub fn parse(source: &str) -> Result<Self> {
        let bad =
            |why: &str| Error::Input(format!("`{source}`: not a Hub model id ({why}); expected hf:owner/name or hf:owner/name@revision"));
        let rest = source.strip_prefix(PREFIX).ok_or_else(|| bad("it does not start with hf:"))?;
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) => (repo, rev),
            None => (rest, "main"),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        let [owner, name] = parts[..] else {
            return Err(bad(if repo.is_empty() {
                "no repo id"
            } else if parts.len() == 1 {
                "no owner"
            } else {
                "more than one `/`"
            }));
        };
        check_part(owner, "owner").map_err(|why| bad(&why))?;
        check_part(name, "name").map_err(|why| bad(&why))?;
        if name.len() > 96 {
            return Err(bad("the name is longer than 96 characters"));
        }
        if repo.ends_with(".git") {
            return Err(bad("a repo id cannot end in .git"));
        }
        check_revision(revision).map_err(|why| bad(&why))?;
        Ok(HubId { owner: owner.into(), name: name.into(), revision: revision.into() })
    }

    /// `owner/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The resolve URL of `path` in this repo at its revision (the revision percent-encoded as
    /// huggingface_hub does, so `refs/pr/1` stays one path segment).
    pub fn url(&self, endpoint: &str, path: &str) -> String {
        let revision = self.revision.replace('%', "%25").replace('/', "%2F");
        format!("{}/{}/{}/resolve/{revision}/{path}", endpoint.trim_end_matches('/'), self.owner, self.name)
    }
}

/// One part of a repo id (owner or name), as huggingface_hub's REPO_ID_REGEX and its extra rules.
fn check_part(part: &str, what: &str) -> std::result::Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if part.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if let Some(c) = part.chars().find(|&c| !(word(c) || c == '-' || c == '.')) {
        return Err(format!("the {what} has the character {c:?}: only letters, digits, '-', '_' and '.' are allowed"));
    }
    if !part.starts_with(word) || !part.ends_with(word) {
        return Err(format!("the {what} starts or ends with '-' or '.'"));
    }
    if part.contains("--") || part.contains("..") {
        return Err(format!("the {what} contains '--' or '..'"));
    }
    Ok(())
}

/// A revision becomes a URL segment and a cache folder name: branch, tag and commit characters
/// only, and no empty or `..` segment (which could leave the cache folder).
fn check_revision(revision: &str) -> std::result::Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
    if let Some(c) = revision.chars().find(|&c| !ok(c)) {
        return Err(format!("the revision has the character {c:?}"));
    }
    if revision.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("the revision is empty or has an empty, `.` or `..` segment".into());
    }
    Ok(())
}

/// Download progress of one file, for a progress bar.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// The file's path in the repo.
    pub file: &'a str,
    pub loaded: u64,
    /// The Content-Length, when the server sends one.
    pub total: Option<u64>,
    /// The file was already in the cache (nothing downloaded).
    pub cached: bool,
}

/// The files of a repo in its two layouts: a UNet2DModel repo, or a pipeline's `unet/` + `scheduler/`.
struct Layout {
    /// The file fetched first: its commit header names the snapshot.
    first: &'static str,
    config: &'static str,
    weights: &'static str,
    pickle: &'static str,
    scheduler: &'static str,
}

const PLAIN: Layout = Layout {
    first: "config.json",
    config: "config.json",
    weights: "diffusion_pytorch_model.safetensors",
    pickle: "diffusion_pytorch_model.bin",
    scheduler: "scheduler_config.json",
};
const PIPELINE_INDEX: &str = "model_index.json";
const PIPELINE: Layout = Layout {
    first: PIPELINE_INDEX,
    config: "unet/config.json",
    weights: "unet/diffusion_pytorch_model.safetensors",
    pickle: "unet/diffusion_pytorch_model.bin",
    scheduler: "scheduler/scheduler_config.json",
};

/// A downloaded (or cached) repo: the folder to load, and a note where the cache served without
/// asking the Hub (offline).
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub note: Option<String>,
}

/// The Hub client: an endpoint, a cache folder and an HTTP agent.
pub struct Hub {
    endpoint: String,
    cache: PathBuf,
    offline: bool,
    agent: ureq::Agent,
}

/// One GET's answer: the status, the body (for 200) and the commit the Hub resolved the revision to.
struct Fetched {
    status: u16,
    body: Vec<u8>,
    commit: Option<String>,
}

impl Hub {
    /// The endpoint and cache as huggingface_hub reads them: `$HF_ENDPOINT` (else
    /// https://huggingface.co); `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; `$HF_HUB_OFFLINE=1`
    /// uses only what is cached.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let endpoint = var("HF_ENDPOINT").map(|v| v.to_string_lossy().into_owned()).unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = var("XDG_CACHE_HOME").map(PathBuf::from);
            cache.unwrap_or_else(|| var("HOME").map(PathBuf::from).unwrap_or_default().join(".cache")).join("huggingface")
        });
        let cache = var("HF_HUB_CACHE").map(PathBuf::from).unwrap_or_else(|| home.join("hub"));
        let offline =
            var("HF_HUB_OFFLINE").is_some_and(|v| matches!(v.to_str(), Some("1" | "true" | "TRUE" | "True" | "yes" | "ON" | "on")));
        Self::new(&endpoint, cache).offline(offline)
    }

    /// A client of `endpoint` (e.g. https://huggingface.co or a mirror) caching under `cache`.
    pub fn new(endpoint: &str, cache: PathBuf) -> Self {
        // Statuses are answered here (404 means something), redirects followed (the Hub sends
        // weights to a CDN host, and renamed repos to their new path), no global timeout (weights
        // can be large) but one per read, so a stalled connection ends.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(10)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("ddim-webgpu/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Hub { endpoint: endpoint.trim_end_matches('/').into(), cache, offline: false, agent }
    }

    /// Only what is cached is used (no request is made).
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The repo's folder in the cache: `models--owner--name`, as huggingface_hub names it.
    pub fn repo_dir(&self, id: &HubId) -> PathBuf {
        self.cache.join(format!("models--{}--{}", id.owner, id.name))
    }

    /// Downloads what `Model::load_dir` needs of `id` (files already in the cache for the same
    /// commit are not downloaded again) and returns the local folder to load.
    pub fn download(&self, id: &HubId, progress: &mut dyn FnMut(&Progress)) -> Result<Snapshot> {
        let name = format!("hf:{}@{}", id.repo(), id.revision);
        if self.offline {
            let dir = self
                .cached_snapshot(id)
                .ok_or_else(|| Error::Input(format!("{name}: not in the cache {} and HF_HUB_OFFLINE is set", self.cache.display())))?;
            return Ok(Snapshot { dir, note: Some(format!("{name}: HF_HUB_OFFLINE is set: the cached copy is used")) });
        }
        let index_url = id.url(&self.endpoint, PIPELINE_INDEX);
        let index = match self.get(&index_url) {
            Ok(f) => f,
            // No answer at all (offline, DNS): a snapshot cached before still serves.
            Err(e) => {
                let dir = self.cached_snapshot(id).ok_or(e)?;
                return Ok(Snapshot { dir, note: Some(format!("{name}: {} did not answer: the cached copy is used", self.endpoint)) });
            }
        };
        let (layout, first) = match index.status {
            200 => (&PIPELINE, index),
            404 => (&PLAIN, self.get(&id.url(&self.endpoint, PLAIN.config))?),
            status => return Err(status_error(&index_url, status)),
        };
        let first_url = id.url(&self.endpoint, layout.first);
        if first.status != 200 {
            return Err(status_error(&first_url, first.status));
        }
        let json = parse_json_file(&first_url, &first.body)?;
        let dir = self.repo_dir(id).join("snapshots").join(first.commit.as_deref().unwrap_or(&id.revision));
        write_file(&dir.join(layout.first), &first.body)?;
        if layout.first == PIPELINE_INDEX {
            if json.get("unet").is_none() {
                let msg = "a pipeline without a `unet` entry: this engine runs a pipeline's UNet2DModel".into();
                return Err(Error::Io { path: first_url, msg });
            }
            self.fetch_json(id, &dir, layout.config, true)?;
        }
        self.fetch_json(id, &dir, layout.scheduler, false)?;
        self.fetch_weights(id, &dir, layout, progress)?;
        // Named only once complete, so an interrupted download is never the offline fallback.
        if let Some(commit) = &first.commit {
            write_file(&self.repo_dir(id).join("refs").join(&id.revision), commit.as_bytes())?;
        }
        Ok(Snapshot { dir, note: None })
    }

    /// The complete snapshot `refs/<revision>` names (or the revision's own folder, where a
    /// mirror sent no commit), for use without the network.
    fn cached_snapshot(&self, id: &HubId) -> Option<PathBuf> {
        let repo = self.repo_dir(id);
        let commit = std::fs::read_to_string(repo.join("refs").join(&id.revision)).ok();
        let dir = repo.join("snapshots").join(commit.as_deref().map(str::trim).unwrap_or(&id.revision));
        let layout = if dir.join(PIPELINE_INDEX).is_file() { &PIPELINE } else { &PLAIN };
        (dir.join(layout.config).is_file() && dir.join(layout.weights).is_file()).then_some(dir)
    }

    /// Downloads a JSON file into `dir`, checked to be JSON; a 404 is an error if `required`, else
    /// the file is left out (the loader then uses diffusers' scheduler defaults).
    fn fetch_json(&self, id: &HubId, dir: &Path, file: &str, required: bool) -> Result<()> {
        let url = id.url(&self.endpoint, file);
        let fetched = self.get(&url)?;
        match fetched.status {
            200 => {
                parse_json_file(&url, &fetched.body)?;
                write_file(&dir.join(file), &fetched.body)
            }
            404 if !required => Ok(()),
            status => Err(status_error(&url, status)),
        }
    }

    /// The safetensors weights into `dir` (kept when already there: the folder is one commit's),
    /// streamed to a `.part` file that is renamed once complete. A repo with only pickle weights
    /// is an error that says to convert them.
    fn fetch_weights(&self, id: &HubId, dir: &Path, layout: &Layout, progress: &mut dyn FnMut(&Progress)) -> Result<()> {
        let path = dir.join(layout.weights);
        if path.is_file() {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            progress(&Progress { file: layout.weights, loaded: size, total: Some(size), cached: true });
            return Ok(());
        }
        let url = id.url(&self.endpoint, layout.weights);
        let resp = self.agent.get(&url).call().map_err(|e| transport_error(&url, e))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(self.missing_weights(id, layout)),
            status => return Err(status_error(&url, status)),
        }
        let total = resp.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
        let part = path.with_extension("safetensors.part");
        let result = stream_to_file(resp.into_body().into_reader(), &part, |loaded| {
            progress(&Progress { file: layout.weights, loaded, total, cached: false });
        });
        let loaded = result.map_err(|e| {
            let _ = std::fs::remove_file(&part);
            Error::Io { path: url.clone(), msg: format!("download failed: {e}") }
        })?;
        if total.is_some_and(|t| t != loaded) {
            let _ = std::fs::remove_file(&part);
            return Err(Error::Io { path: url, msg: format!("the download ended after {loaded} of {} bytes", total.unwrap_or(0)) });
        }
        std::fs::rename(&part, &path).map_err(|e| io_error(&path, e))
    }

    /// The error for a 404 on the safetensors weights: the pickle message where the repo has
    /// `diffusion_pytorch_model.bin` (one HEAD request), else the URL that was not found.
    fn missing_weights(&self, id: &HubId, layout: &Layout) -> Error {
        let url = id.url(&self.endpoint, layout.weights);
        let pickle_url = id.url(&self.endpoint, layout.pickle);
        let has_pickle = self.agent.head(&pickle_url).call().is_ok_and(|r| r.status().is_success());
        if has_pickle {
            return Error::Io { path: pickle_url, msg: crate::model::PICKLE_ONLY.into() };
        }
        Error::Io { path: url, msg: "HTTP 404: the repo has no diffusion_pytorch_model.safetensors there".into() }
    }

    /// One GET, its body read whole (the JSON files: a few KB; capped at 10 MB by ureq).
    fn get(&self, url: &str) -> Result<Fetched> {
        let mut resp = self.agent.get(url).call().map_err(|e| transport_error(url, e))?;
        let status = resp.status().as_u16();
        let commit = resp.headers().get("x-repo-commit").and_then(|v| v.to_str().ok()).filter(|c| is_commit(c)).map(String::from);
        let body = if status == 200 { resp.body_mut().read_to_vec().map_err(|e| transport_error(url, e))? } else { Vec::new() };
        Ok(Fetched { status, body, commit })
    }
}

/// A commit id as the Hub sends it (hex), the only thing used as a cache folder name from a header.
fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A JSON file's bytes parsed, or an error naming its URL (an HTML page named as such).
fn parse_json_file(url: &str, bytes: &[u8]) -> Result<serde_json::Value> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::Io { path: url.into(), msg: "not UTF-8 text, so not a JSON file".into() })?;
    crate::json::parse_json(text).map_err(|msg| Error::Io { path: url.into(), msg: format!("expected JSON: {msg}") })
}

/// An unexpected HTTP status, with what it usually means on the Hub.
fn status_error(url: &str, status: u16) -> Error {
    let why = match status {
        404 => "the repo or the revision may not exist, or the repo has no such file",
        401 | 403 => "the repo may not exist, or it is private or gated (no token is sent)",
        _ => "the server refused the request",
    };
    Error::Io { path: url.into(), msg: format!("HTTP {status}: {why}") }
}

fn transport_error(url: &str, e: ureq::Error) -> Error {
    Error::Io { path: url.into(), msg: format!("request failed: {e}") }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), msg: e.to_string() }
}

/// Writes `bytes` to `path`, making its folder.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io_error(path, e))
}

/// Copies `reader` into a new file at `path`, calling `on_bytes` with the running total.
fn stream_to_file(mut reader: impl Read, path: &Path, mut on_bytes: impl FnMut(u64)) -> std::io::Result<u64> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 16];
    let mut loaded = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
        loaded += n as u64;
        on_bytes(loaded);
    }
    file.flush()?;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_as_huggingface_hub_does() {
        let id = HubId::parse("hf:google/ddpm-cifar10-32").unwrap();
        assert_eq!((id.owner.as_str(), id.name.as_str(), id.revision.as_str()), ("google", "ddpm-cifar10-32", "main"));
        assert_eq!(HubId::parse("hf:a_b/c.d@v1.0").unwrap().revision, "v1.0");
        let pr = HubId::parse("hf:o/n@refs/pr/1").unwrap();
        assert_eq!(pr.url("https://h.example/", "config.json"), "https://h.example/o/n/resolve/refs%2Fpr%2F1/config.json");
        for (bad, why) in [
            ("hf:", "no repo id"),
            ("hf:owner", "no owner"),
            ("hf:a/b/c", "more than one `/`"),
            ("hf:a b/c", "character ' '"),
            ("hf:-a/b", "starts or ends"),
            ("hf:a/b.", "starts or ends"),
            ("hf:a--x/b", "'--' or '..'"),
            ("hf:a/b..c", "'--' or '..'"),
            ("hf:a/b.git", ".git"),
            ("hf:a/b@", "revision is empty"),
            ("hf:a/b@../x", "`..` segment"),
            ("hf:a/b@x y", "revision has the character"),
            ("owner/name", "does not start with hf:"),
        ] {
            let e = HubId::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(why), "{bad}: {e}");
        }
        assert!(HubId::parse(&format!("hf:o/{}", "n".repeat(97))).unwrap_err().to_string().contains("96"));
    }
}
