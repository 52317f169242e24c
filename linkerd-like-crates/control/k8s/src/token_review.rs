//! Service-account tokens checked by the API server, for the identity service.

use conduit_control_ca::{TokenError, TokenVerifier};
use conduit_identity::Workload;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use std::future::Future;
use std::pin::Pin;

/// The audience proxies' projected service-account tokens are minted for, so that a token
/// stolen from the identity service cannot be replayed against the API server, nor one
/// meant for anything else used here.
pub const AUDIENCE: &str = "identity.conduit.io";

/// Verifies tokens with a `TokenReview`: the API server says whether the token is valid, for
/// our audience, and which service account it belongs to.
#[derive(Clone)]
pub struct TokenReviews {
    client: kube::Client,
    audience: String,
}

impl std::fmt::Debug for TokenReviews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviews")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenReviews {
    /// Reviews through `client`, for [`AUDIENCE`].
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            audience: AUDIENCE.into(),
        }
    }

    async fn review(&self, token: &[u8]) -> Result<Workload, TokenError> {
        let token = std::str::from_utf8(token)
            .map_err(|_| TokenError::Invalid("the token is not text".into()))?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.trim().to_owned()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let reviewed = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| TokenError::Unavailable(format!("TokenReview failed: {e}")))?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status.error.unwrap_or_else(|| "not authenticated".into());
            return Err(TokenError::Invalid(format!("the token was refused: {why}")));
        }
        let audiences = status.audiences.unwrap_or_default();
        if !audiences.contains(&self.audience) {
            return Err(TokenError::Invalid(format!(
                "the token is not for audience {}",
                self.audience
            )));
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        service_account(&username)
            .ok_or_else(|| TokenError::Invalid(format!("{username:?} is not a service account")))
    }
}

/// `system:serviceaccount:<ns>:<sa>` as a workload.
fn service_account(username: &str) -> Option<Workload> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, sa) = rest.split_once(':')?;
    (!ns.is_empty() && !sa.is_empty()).then(|| Workload {
        service_account: sa.into(),
        namespace: ns.into(),
    })
}

impl TokenVerifier for TokenReviews {
    fn verify<'a>(
        &'a self,
        token: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Workload, TokenError>> + Send + 'a>> {
        Box::pin(self.review(token))
    }
}
