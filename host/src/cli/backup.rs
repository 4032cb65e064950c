//! `counterpoint backup DEST` and `counterpoint restore SRC`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use counterpoint::backup::{BackupReport, Source};
use counterpoint::readmodels::EmbeddedState;
use counterpoint::store::{EmbeddedStore, StoreError};

/// Backs up the data directory into `dest`: through the running server at `server` (the data
/// directory is its), or, with no server, from the data directory itself.
pub async fn backup(data_dir: &Path, dest: &Path, server: Option<&str>, token: Option<&str>) -> anyhow::Result<()> {
    let dest = std::path::absolute(dest).with_context(|| format!("{} as an absolute path", dest.display()))?;
    let report: serde_json::Value = match server {
        Some(server) => {
            let token = token.context("a backup through the server needs the admin token: --token or COUNTERPOINT_ADMIN_TOKEN")?;
            through_server(server, token, &dest).await?
        }
        None => {
            let store = EmbeddedStore::open(data_dir.join("events")).map_err(|err| match err {
                StoreError::Locked { pid, .. } => anyhow::anyhow!(
                    "{} is in use by process {pid} (a running server): back up through it with --server http://HOST:PORT and the admin token",
                    data_dir.display()
                ),
                err => err.into(),
            })?;
            let state = Arc::new(EmbeddedState::open(data_dir.join("readmodels.redb"))?);
            let source = Source::new(store, state, data_dir);
            let report: BackupReport = tokio::task::spawn_blocking(move || source.backup(&dest)).await??;
            serde_json::to_value(report)?
        }
    };
    out!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn through_server(server: &str, token: &str, dest: &Path) -> anyhow::Result<serde_json::Value> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = serde_json::json!({ "dest": dest }).to_string();
    let request = axum::http::Request::post(format!("{}/v1/admin/backup", server.trim_end_matches('/')))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = client.request(request).await.with_context(|| format!("asking {server} for a backup"))?;
    let status = response.status();
    let body = response.into_body().collect().await.context("reading the server's answer")?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let message = json["error"]["message"].as_str().map_or_else(|| String::from_utf8_lossy(&body).into_owned(), str::to_string);
        bail!("the server refused the backup ({status}): {message}");
    }
    Ok(json)
}

/// Restores the backup in `src` into the (new or empty) data directory `data_dir`.
pub fn restore(src: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let restored = counterpoint::backup::restore(src, data_dir).with_context(|| format!("restoring {}", src.display()))?;
    for (tenant, head) in &restored.heads {
        out!("tenant {tenant}: positions 1 to {head}");
    }
    out!("restored {} files ({} bytes) into {}; read models catch up from their checkpoints when the server starts", restored.files, restored.bytes, restored.dir.display());
    Ok(())
}

