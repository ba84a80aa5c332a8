//! From `--url` to a connection, refusing what a subcommand cannot use.

use std::time::Duration;

use anyhow::Result;
use tenure::Tenure;

use crate::cli::options::GlobalOpts;
use crate::exit::{self, Failure};

/// Connects for commands that coordinate separate processes: a URL is required (no silent
/// default) and the in-process `mem://` store is refused, since it cannot coordinate anything.
pub async fn coordinating(global: &GlobalOpts, command: &str) -> Result<Tenure> {
    let Some(url) = global.url.as_deref() else {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "`tenure {command}` needs a store: pass --url URL or set TENURE_URL; \
                 URL forms: {}",
                tenure::url::VALID_FORMS
            ),
        )
        .into());
    };
    let tenure = connect(url, global.ttl).await?;
    if tenure.backend() == "mem" {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "`tenure {command}` cannot use {url}: the in-process store lives inside this one \
                 process, so it cannot coordinate separate processes; use a shared store such as \
                 etcd://HOST:PORT"
            ),
        )
        .into());
    }
    Ok(tenure)
}

/// Connects to `url` with the global TTL, if one was given.
pub async fn connect(url: &str, ttl: Option<Duration>) -> Result<Tenure> {
    let mut builder = Tenure::builder(url);
    if let Some(ttl) = ttl {
        builder = builder.ttl(ttl);
    }
    tracing::info!(url, "connecting");
    Ok(builder.connect().await?)
}
