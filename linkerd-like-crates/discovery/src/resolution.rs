use conduit_api::destination as api;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the controller says about an authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// No answer yet (the controller has not answered, or cannot be reached yet).
    Pending,
    /// The controller does not know the name: resolve it some other way.
    Unknown,
    /// The endpoints now; empty when the service exists but has none.
    Known(Arc<BTreeMap<SocketAddr, EndpointMeta>>),
}

/// What is known of one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointMeta {
    /// Relative weight, at least 1.
    pub weight: u32,
    /// The identity its proxy presents, if meshed.
    pub identity: Option<String>,
    /// Metric labels.
    pub labels: BTreeMap<String, String>,
    /// How to talk to it.
    pub protocol: ProtocolHint,
}

/// How to talk to an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtocolHint {
    /// Detect.
    #[default]
    Unknown,
    /// HTTP/2 to its proxy.
    H2,
    /// Opaque TCP.
    Opaque,
}

impl EndpointMeta {
    pub(crate) fn from_api(
        addr: &api::WeightedAddr,
        shared: &std::collections::HashMap<String, String>,
    ) -> Self {
        use api::protocol_hint::Protocol;
        let mut labels: BTreeMap<String, String> =
            shared.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.extend(
            addr.metric_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        Self {
            weight: addr.weight.max(1),
            identity: addr
                .tls_identity
                .as_ref()
                .map(|t| t.dns_like_identity.clone())
                .filter(|id| !id.is_empty()),
            labels,
            protocol: match addr
                .protocol_hint
                .as_ref()
                .and_then(|h| h.protocol.as_ref())
            {
                Some(Protocol::H2(_)) => ProtocolHint::H2,
                Some(Protocol::Opaque(_)) => ProtocolHint::Opaque,
                None => ProtocolHint::Unknown,
            },
        }
    }
}
