//! Proofs of identity that come with a CSR.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use conduit_identity::Workload;
use ring::hmac;
use ring::rand::SecureRandom;
use std::future::Future;
use std::pin::Pin;

/// Why a token proves nothing.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is malformed, expired or forged.
    #[error("{0}")]
    Invalid(String),
    /// The token could not be checked now (the API server is down, say).
    #[error("the token could not be checked: {0}")]
    Unavailable(String),
}

/// Checks a token and says which workload it proves.
pub trait TokenVerifier: std::fmt::Debug + Send + Sync + 'static {
    /// The workload `token` proves.
    fn verify<'a>(
        &'a self,
        token: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Workload, TokenError>> + Send + 'a>>;
}

const PREFIX: &str = "conduit.v1.";

/// Tokens for running without Kubernetes: `conduit.v1.<ns/sa>.<HMAC-SHA256>`, both parts in
/// unpadded base64url, keyed by a secret only the controller (and whoever issues tokens, such
/// as `conduit demo`) holds. A token never expires: it stands for a service account, whose
/// tokens Kubernetes would rotate; rotate the key to revoke them all.
pub struct LocalTokens {
    key: hmac::Key,
}

impl std::fmt::Debug for LocalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTokens").finish_non_exhaustive()
    }
}

impl LocalTokens {
    /// A new random 256-bit key, as base64 text for a key file.
    pub fn generate_key() -> Result<String, TokenError> {
        let mut key = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| TokenError::Unavailable("no randomness for a key".into()))?;
        Ok(URL_SAFE_NO_PAD.encode(key))
    }

    /// Tokens keyed by `key`, the text of a key file (base64, surrounding space ignored).
    pub fn from_key(key: &str) -> Result<Self, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(key.trim())
            .map_err(|e| TokenError::Invalid(format!("the token key is not base64url: {e}")))?;
        if bytes.len() < 32 {
            return Err(TokenError::Invalid(format!(
                "the token key must be at least 32 bytes, not {}",
                bytes.len()
            )));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    /// The token for `workload`.
    pub fn issue(&self, workload: &Workload) -> String {
        let payload = format!("{}/{}", workload.namespace, workload.service_account);
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The workload `token` was issued for.
    pub fn check(&self, token: &[u8]) -> Result<Workload, TokenError> {
        let invalid = |why: &str| TokenError::Invalid(format!("invalid local token: {why}"));
        let token = std::str::from_utf8(token).map_err(|_| invalid("not text"))?;
        let rest = token
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| invalid("not a conduit.v1 token"))?;
        let (payload, tag) = rest
            .split_once('.')
            .ok_or_else(|| invalid("no signature"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| invalid("payload is not base64url"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| invalid("signature is not base64url"))?;
        hmac::verify(&self.key, &payload, &tag).map_err(|_| invalid("bad signature"))?;
        let payload = String::from_utf8(payload).map_err(|_| invalid("payload is not text"))?;
        let (ns, sa) = payload
            .split_once('/')
            .ok_or_else(|| invalid("payload is not ns/sa"))?;
        Ok(Workload {
            service_account: sa.into(),
            namespace: ns.into(),
        })
    }
}

impl TokenVerifier for LocalTokens {
    fn verify<'a>(
        &'a self,
        token: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Workload, TokenError>> + Send + 'a>> {
        Box::pin(std::future::ready(self.check(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_prove_their_workload_and_nothing_else() {
        let tokens = LocalTokens::from_key(&LocalTokens::generate_key().unwrap()).unwrap();
        let web = Workload {
            service_account: "web".into(),
            namespace: "demo".into(),
        };
        let token = tokens.issue(&web);
        assert_eq!(tokens.check(token.as_bytes()).unwrap(), web);

        let other = LocalTokens::from_key(&LocalTokens::generate_key().unwrap()).unwrap();
        let err = other.check(token.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("bad signature"), "{err}");

        // Changing the payload breaks the signature.
        let (_, tag) = token.rsplit_once('.').unwrap();
        let forged = format!("{PREFIX}{}.{tag}", URL_SAFE_NO_PAD.encode("demo/books"));
        assert!(tokens.check(forged.as_bytes()).is_err());
        for garbage in ["", "conduit.v1.", "conduit.v1.x.y", "eyJhbGciOi.x.y"] {
            assert!(tokens.check(garbage.as_bytes()).is_err(), "{garbage}");
        }
        assert!(LocalTokens::from_key("c2hvcnQ").is_err());
    }
}
