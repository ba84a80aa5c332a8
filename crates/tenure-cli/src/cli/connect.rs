//! From `--url` to a connection, refusing what a subcommand cannot use.

use std::time::Duration;

use anyhow::Result;
use tenure::{Builder, Secret, Tenure};

use crate::cli::options::{GlobalOpts, SecurityOpts};
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
    let tenure = connect(global, url, global.ttl).await?;
    if tenure.backend() == "mem" {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "`tenure {command}` cannot use {}: the in-process store lives inside this one \
                 process, so it cannot coordinate separate processes; use a shared store such as \
                 etcd://HOST:PORT",
                tenure.url()
            ),
        )
        .into());
    }
    Ok(tenure)
}

/// The password's environment variable; read here, never a command-line flag.
pub const PASSWORD_ENV: &str = "TENURE_PASSWORD";

/// Connects to `url` with `ttl` (if given) and the global TLS and authentication options.
/// Only the library's redacted forms of the URL and options are ever logged or printed.
pub async fn connect(global: &GlobalOpts, url: &str, ttl: Option<Duration>) -> Result<Tenure> {
    let builder = builder(&global.security, url, ttl)?;
    tracing::info!(options = ?builder, "connecting");
    Ok(builder.connect().await?)
}

/// The library's builder for `url` with the security options mapped onto it.
fn builder(sec: &SecurityOpts, url: &str, ttl: Option<Duration>) -> Result<Builder> {
    let mut builder = Tenure::builder(url);
    if let Some(ttl) = ttl {
        builder = builder.ttl(ttl);
    }
    if let Some(ca) = &sec.ca_file {
        builder = builder.ca_file(ca);
    }
    // clap makes each of --client-cert and --client-key require the other.
    if let (Some(cert), Some(key)) = (&sec.client_cert, &sec.client_key) {
        builder = builder.client_cert(cert, key);
    }
    if let Some(name) = &sec.tls_server_name {
        builder = builder.tls_server_name(name);
    }
    if let Some(user) = &sec.user {
        builder = builder.user(user);
    }
    let from_env = std::env::var_os(PASSWORD_ENV).filter(|v| !v.is_empty());
    match (from_env, &sec.password_file) {
        (Some(_), Some(_)) => {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "both {PASSWORD_ENV} and --password-file give a password; unset one of them"
                ),
            )
            .into())
        }
        (Some(value), None) => {
            let Some(value) = value.to_str() else {
                return Err(Failure::new(
                    exit::USAGE,
                    format!("{PASSWORD_ENV} is not valid UTF-8"),
                )
                .into());
            };
            builder = builder.password(Secret::new(value));
        }
        (None, Some(path)) => builder = builder.password_file(path),
        (None, None) => {}
    }
    Ok(builder)
}
