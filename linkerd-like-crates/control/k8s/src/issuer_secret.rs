//! The identity issuer read from a Kubernetes Secret through the API.
//!
//! The Secret is the one `conduit install` writes (type `kubernetes.io/tls`, with `ca.crt`
//! beside `tls.crt` and `tls.key`, as cert-manager writes them too), so rotating the issuer
//! is a Secret update, picked up with no restart and no volume mount. It is read with a GET
//! each reload interval: one small request, and the same reload rules as mounted files.

use conduit_control_ca::{IssuerPem, IssuerSource, SourceError};
use k8s_openapi::api::core::v1::Secret;

/// The keys of the Secret's data.
pub const ANCHORS_KEY: &str = "ca.crt";
/// The issuer certificate (then any intermediates).
pub const CERT_KEY: &str = "tls.crt";
/// The issuer's PKCS#8 key.
pub const KEY_KEY: &str = "tls.key";

/// A Secret holding the issuer.
#[derive(Clone)]
pub struct IssuerSecret {
    api: kube::Api<Secret>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for IssuerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl IssuerSecret {
    /// The Secret `name` in `namespace`, read through `client`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: kube::Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl IssuerSource for IssuerSecret {
    fn describe(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.name)
    }

    async fn read(&self) -> Result<IssuerPem, SourceError> {
        let failed = |error: String| SourceError::Read {
            from: self.describe(),
            error,
        };
        let secret = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("it does not exist".into()))?;
        let data = secret.data.unwrap_or_default();
        let field = |key: &str| -> Result<String, SourceError> {
            let bytes = data
                .get(key)
                .ok_or_else(|| failed(format!("it has no {key:?}")))?;
            String::from_utf8(bytes.0.clone())
                .map_err(|_| failed(format!("{key:?} is not PEM text")))
        };
        Ok(IssuerPem {
            anchors: field(ANCHORS_KEY)?,
            cert: field(CERT_KEY)?,
            key: field(KEY_KEY)?,
        })
    }
}
