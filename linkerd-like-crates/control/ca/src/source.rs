//! Where the issuer comes from, reloaded when it changes.
//!
//! [`watch_issuer`] reads an [`IssuerSource`] again and again and swaps in a changed issuer
//! once it loads; the files of a mounted Secret ([`IssuerFiles`]) and a Secret read through
//! the Kubernetes API (in `conduit-control-k8s`) are two sources of the same loop.

use crate::Issuer;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// An issuer's PEM texts, as a source holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerPem {
    /// The trust anchors.
    pub anchors: String,
    /// The issuer certificate, optionally followed by intermediates.
    pub cert: String,
    /// The issuer's PKCS#8 key.
    pub key: String,
}

/// Somewhere the issuer is read from.
pub trait IssuerSource: Send + Sync + 'static {
    /// Names the source in messages: where an operator would look.
    fn describe(&self) -> String;

    /// Reads the source's contents now.
    fn read(&self) -> impl Future<Output = Result<IssuerPem, SourceError>> + Send;
}

/// The three PEM files of an issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerFiles {
    /// The trust anchors.
    pub anchors: PathBuf,
    /// The issuer certificate, optionally followed by intermediates.
    pub cert: PathBuf,
    /// The issuer's PKCS#8 key.
    pub key: PathBuf,
}

/// Why the issuer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be read.
    #[error("could not read {from}: {error}")]
    Read {
        /// What was read.
        from: String,
        /// Why it failed.
        error: String,
    },
    /// The source was read but does not make an issuer.
    #[error("{from}: {error}")]
    Issuer {
        /// What was read.
        from: String,
        /// Why.
        error: crate::IssuerError,
    },
}

impl IssuerSource for IssuerFiles {
    fn describe(&self) -> String {
        format!(
            "{}, {}, {}",
            self.anchors.display(),
            self.cert.display(),
            self.key.display()
        )
    }

    async fn read(&self) -> Result<IssuerPem, SourceError> {
        let read = |path: PathBuf| async move {
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|error| SourceError::Read {
                    from: path.display().to_string(),
                    error: error.to_string(),
                })
        };
        Ok(IssuerPem {
            anchors: read(self.anchors.clone()).await?,
            cert: read(self.cert.clone()).await?,
            key: read(self.key.clone()).await?,
        })
    }
}

impl IssuerFiles {
    /// [`watch_issuer`] on these files.
    pub async fn watch(
        self,
        interval: Duration,
    ) -> Result<watch::Receiver<Option<Arc<Issuer>>>, SourceError> {
        watch_issuer(self, interval).await
    }
}

fn load<S: IssuerSource>(source: &S, pem: &IssuerPem) -> Result<Issuer, SourceError> {
    Issuer::from_pem(&pem.anchors, &pem.cert, &pem.key).map_err(|error| SourceError::Issuer {
        from: source.describe(),
        error,
    })
}

/// Loads the issuer from `source` now (an error stops start-up), then reads it again every
/// `interval` and swaps in a changed issuer once it loads. A broken change, or a source that
/// cannot be read, is logged and the last good issuer kept; an issuer that expires is
/// withdrawn, so that the service says so rather than signing certificates no one will
/// accept.
pub async fn watch_issuer<S: IssuerSource>(
    source: S,
    interval: Duration,
) -> Result<watch::Receiver<Option<Arc<Issuer>>>, SourceError> {
    let mut contents = source.read().await?;
    let issuer = load(&source, &contents)?;
    tracing::info!(issuer = %issuer.info().subject, from = %source.describe(), "loaded the issuer");
    let (tx, rx) = watch::channel(Some(Arc::new(issuer)));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if tx.is_closed() {
                return;
            }
            let now = match source.read().await {
                Ok(now) => now,
                Err(error) => {
                    tracing::warn!(%error, "keeping the last issuer");
                    continue;
                }
            };
            let changed = now != contents;
            let expired = tx
                .borrow()
                .as_ref()
                .is_some_and(|i| i.info().not_after <= std::time::SystemTime::now());
            if !changed && !expired {
                continue;
            }
            contents = now;
            match load(&source, &contents) {
                Ok(issuer) => {
                    tracing::info!(issuer = %issuer.info().subject, "reloaded the issuer");
                    tx.send_replace(Some(Arc::new(issuer)));
                }
                Err(error) if expired => {
                    tracing::error!(%error, "the issuer has expired and no valid one replaces it");
                    tx.send_replace(None);
                }
                Err(error) => tracing::warn!(%error, "keeping the last issuer"),
            }
        }
    });
    Ok(rx)
}
