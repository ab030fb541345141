//! `--model_id`: finds a HuggingFace model in the local HuggingFace cache
//! (the layout `huggingface_hub` writes: `models--ORG--NAME/snapshots/REV`).
//! Nothing is downloaded.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The cache's `hub` folder: `$HF_HUB_CACHE`, `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn hub_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(Path::new(&p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/huggingface/hub"))
}

/// The snapshot folder of `model_id` (`org/name`, optionally `@revision`):
/// the revision named, else the one `refs/main` points to, else the only snapshot.
pub fn resolve(model_id: &str) -> anyhow::Result<PathBuf> {
    let (id, revision) = match model_id.split_once('@') {
        Some((i, r)) => (i, Some(r)),
        None => (model_id, None),
    };
    if id.split('/').count() != 2 || id.contains("..") {
        bail!("--model_id '{model_id}' is not of the form ORG/NAME");
    }
    let hub = hub_dir().context("cannot find the HuggingFace cache (set HF_HOME)")?;
    let repo = hub.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if !snapshots.is_dir() {
        bail!(
            "model '{id}' is not in the local HuggingFace cache ({}); ferroserve does not download models: fetch it with `huggingface-cli download {id}` or pass --model_dir",
            hub.display()
        );
    }
    let rev = match revision {
        Some(r) => std::fs::read_to_string(repo.join("refs").join(r))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| r.to_string()),
        None => match std::fs::read_to_string(repo.join("refs/main")) {
            Ok(s) => s.trim().to_string(),
            Err(_) => {
                let mut revs: Vec<String> = std::fs::read_dir(&snapshots)?
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect();
                if revs.len() != 1 {
                    bail!(
                        "model '{id}' has {} snapshots and no refs/main; name one with --model_id {id}@REVISION",
                        revs.len()
                    );
                }
                revs.remove(0)
            }
        },
    };
    let dir = snapshots.join(&rev);
    if !dir.is_dir() {
        bail!("revision '{rev}' of model '{id}' is not in the local HuggingFace cache");
    }
    Ok(dir)
}
