//! What every kind of grant (mutex guard, leadership) has in common: a token, a key, the lost
//! signal, guarded writes, and release — explicit, or in the background on drop.

use std::sync::Arc;

use crate::backend::{Grant, SessionBackend};
use crate::{Error, FencingToken, LostReason, Result, Write};

/// A grant together with the session that holds it.
#[derive(Debug)]
pub(crate) struct Held {
    session: Arc<dyn SessionBackend>,
    grant: Option<Grant>,
}

impl std::fmt::Debug for dyn SessionBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({:x})", self.id())
    }
}

impl Held {
    pub(crate) fn new(session: Arc<dyn SessionBackend>, grant: Grant) -> Self {
        Held {
            session,
            grant: Some(grant),
        }
    }

    fn grant(&self) -> &Grant {
        // Only `release` takes the grant, and it consumes `self`.
        self.grant.as_ref().expect("grant present until released")
    }

    pub(crate) fn token(&self) -> FencingToken {
        FencingToken(self.grant().token)
    }

    pub(crate) fn key(&self) -> &str {
        &self.grant().key
    }

    pub(crate) fn lost_reason(&self) -> Option<LostReason> {
        self.grant().liveness.reason()
    }

    pub(crate) async fn lost(&self) -> LostReason {
        self.grant().liveness.lost().await
    }

    pub(crate) async fn write(&self, ops: &[Write]) -> Result<()> {
        let grant = self.grant();
        if self.session.guarded_write(grant, ops).await? {
            Ok(())
        } else {
            Err(Error::NotHeld {
                key: grant.key.clone(),
            })
        }
    }

    pub(crate) async fn release(mut self) -> Result<()> {
        match self.grant.take() {
            Some(grant) => self.session.release(&grant).await,
            None => Ok(()),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(grant) = self.grant.take() else {
            return;
        };
        let session = self.session.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = session.release(&grant).await {
                        tracing::debug!(key = %grant.key, error = %e, "background release");
                    }
                });
            }
            Err(_) => tracing::warn!(
                key = %grant.key,
                "guard dropped outside a tokio runtime; the lease will release it"
            ),
        }
    }
}
