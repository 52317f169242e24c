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
    /// Its proxy's inbound port, where it takes opaque TCP from other proxies over mTLS
    /// with a transport header; `None` when discovery did not say.
    pub opaque_transport: Option<u16>,
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
        let hint = addr.protocol_hint.as_ref();
        Self {
            weight: addr.weight.max(1),
            identity: addr
                .tls_identity
                .as_ref()
                .map(|t| t.dns_like_identity.clone())
                .filter(|id| !id.is_empty()),
            labels,
            protocol: match hint.and_then(|h| h.protocol.as_ref()) {
                Some(Protocol::H2(_)) => ProtocolHint::H2,
                Some(Protocol::Opaque(_)) => ProtocolHint::Opaque,
                None => ProtocolHint::Unknown,
            },
            // A port is 16 bits: anything else (or 0) is no usable answer.
            opaque_transport: hint
                .and_then(|h| h.opaque_transport.as_ref())
                .and_then(|t| u16::try_from(t.inbound_port).ok())
                .filter(|port| *port != 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_transport(inbound_port: u32) -> api::WeightedAddr {
        api::WeightedAddr {
            protocol_hint: Some(api::ProtocolHint {
                protocol: Some(api::protocol_hint::Protocol::H2(api::protocol_hint::H2 {})),
                opaque_transport: Some(api::protocol_hint::OpaqueTransport { inbound_port }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_opaque_transport_port_is_read_when_it_is_a_port() {
        let shared = std::collections::HashMap::new();
        let meta = EndpointMeta::from_api(&with_transport(4143), &shared);
        assert_eq!(meta.opaque_transport, Some(4143));
        assert_eq!(meta.protocol, ProtocolHint::H2);
        for bad in [0, 65_536, u32::MAX] {
            let meta = EndpointMeta::from_api(&with_transport(bad), &shared);
            assert_eq!(meta.opaque_transport, None, "{bad}");
        }
        let none = EndpointMeta::from_api(&api::WeightedAddr::default(), &shared);
        assert_eq!(none.opaque_transport, None);
    }
}
