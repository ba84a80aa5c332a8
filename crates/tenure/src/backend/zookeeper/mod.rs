//! The ZooKeeper backend (`zk://`), Curator-compatible. Not implemented yet.

use std::sync::Arc;
use std::time::Duration;

use super::Backend;
use crate::{Error, Result};

/// Connects to a ZooKeeper ensemble.
pub(crate) async fn connect(
    _hosts: &[String],
    _chroot: Option<&str>,
    _timeout: Duration,
) -> Result<Arc<dyn Backend>> {
    Err(Error::Unsupported {
        backend: "zk",
        what: "ZooKeeper",
        advice: "the ZooKeeper backend is not available in this version yet; use etcd://",
    })
}
