//! Getting and renewing a proxy's certificate from the controller's Identity API.

use crate::{Credentials, CredentialsError};
use conduit_api::identity::identity_client::IdentityClient;
use conduit_api::identity::CertifyRequest;
use conduit_stack::Backoff;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tonic::transport::Channel;

/// A certificate is renewed when this share of its remaining lifetime has passed.
const RENEW_AT: f64 = 0.7;

/// How a proxy gets its certificates.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file holding the token that proves the identity. It is read again for each
    /// request, as Kubernetes rotates projected tokens in place.
    pub token_path: PathBuf,
    /// Waits between failed attempts.
    pub backoff: Backoff,
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// The token file could not be read.
    #[error("could not read the identity token {path}: {error}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The controller refused or could not be reached.
    #[error("the identity service answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The certificate sent back is not usable.
    #[error(transparent)]
    Certificate(#[from] CredentialsError),
}

/// Asks for a certificate once and installs it; returns its expiry.
pub async fn certify_once(
    credentials: &Credentials,
    client: &mut IdentityClient<Channel>,
    config: &Config,
) -> Result<SystemTime, CertifyError> {
    let token = tokio::fs::read(&config.token_path)
        .await
        .map_err(|error| CertifyError::Token {
            path: config.token_path.clone(),
            error,
        })?;
    let rsp = client
        .certify(CertifyRequest {
            identity: credentials.name().to_string(),
            token,
            certificate_signing_request: credentials.csr().to_vec(),
        })
        .await?
        .into_inner();
    Ok(credentials.set_certificate(rsp.leaf_certificate, rsp.intermediate_certificates)?)
}

/// Keeps `credentials` certified for as long as it runs: renews at about 70% of each
/// certificate's remaining lifetime and retries failures with backoff.
pub async fn run(
    credentials: Arc<Credentials>,
    mut client: IdentityClient<Channel>,
    config: Config,
) {
    let mut backoff = config.backoff.clone();
    loop {
        let wait = match certify_once(&credentials, &mut client, &config).await {
            Ok(expiry) => {
                backoff.reset();
                let wait = renew_in(expiry, SystemTime::now());
                tracing::info!(identity = %credentials.name(), valid_for = ?expiry.duration_since(SystemTime::now()).unwrap_or_default(), renew_in = ?wait, "certified");
                wait
            }
            Err(error) => {
                let wait = backoff.next_wait();
                tracing::warn!(identity = %credentials.name(), %error, retry_in = ?wait, "could not get a certificate");
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// When to renew a certificate that expires at `expiry`.
pub fn renew_in(expiry: SystemTime, now: SystemTime) -> Duration {
    expiry
        .duration_since(now)
        .unwrap_or_default()
        .mul_f64(RENEW_AT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_seventy_percent_and_at_once_when_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            renew_in(now + Duration::from_secs(100), now),
            Duration::from_secs(70)
        );
        assert_eq!(renew_in(now - Duration::from_secs(1), now), Duration::ZERO);
    }
}
