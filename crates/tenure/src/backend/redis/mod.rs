//! The Redis backend (`redis://`, `rediss://`, `redlock://`). Not implemented yet.

use std::sync::Arc;
use std::time::Duration;

use super::Backend;
use crate::url::RedisNode;
use crate::{Error, Result};

/// Connects to one Redis server, or to independent masters for Redlock.
pub(crate) async fn connect(
    _nodes: &[RedisNode],
    _redlock: bool,
    _timeout: Duration,
) -> Result<Arc<dyn Backend>> {
    Err(Error::Unsupported {
        backend: "redis",
        what: "Redis",
        advice: "the Redis backend is not available in this version yet; use etcd://",
    })
}
