//! Where the issuer comes from, reloaded when it changes.

use crate::Issuer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

/// Why the issuer files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read.
    #[error("could not read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The files were read but do not make an issuer.
    #[error("{files}: {error}")]
    Issuer {
        /// The files, for the message.
        files: String,
        /// Why.
        error: crate::IssuerError,
    },
}

impl IssuerFiles {
    async fn read(&self) -> Result<[String; 3], SourceError> {
        let mut out: [String; 3] = Default::default();
        for (i, path) in [&self.anchors, &self.cert, &self.key]
            .into_iter()
            .enumerate()
        {
            out[i] = tokio::fs::read_to_string(path)
                .await
                .map_err(|error| SourceError::Read {
                    path: path.clone(),
                    error,
                })?;
        }
        Ok(out)
    }

    fn load(&self, [anchors, cert, key]: &[String; 3]) -> Result<Issuer, SourceError> {
        Issuer::from_pem(anchors, cert, key).map_err(|error| SourceError::Issuer {
            files: format!(
                "{}, {}, {}",
                self.anchors.display(),
                self.cert.display(),
                self.key.display()
            ),
            error,
        })
    }

    /// Loads the issuer now (an error stops start-up), then re-reads the files every
    /// `interval` and swaps in a changed issuer once it loads. A broken change is logged and
    /// the last good issuer kept; an issuer that expires is withdrawn, so that the service
    /// says so rather than signing certificates no one will accept.
    pub async fn watch(
        self,
        interval: Duration,
    ) -> Result<watch::Receiver<Option<Arc<Issuer>>>, SourceError> {
        let mut contents = self.read().await?;
        let issuer = self.load(&contents)?;
        tracing::info!(issuer = %issuer.info().subject, "loaded the issuer");
        let (tx, rx) = watch::channel(Some(Arc::new(issuer)));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if tx.is_closed() {
                    return;
                }
                let now = match self.read().await {
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
                match self.load(&contents) {
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
}
