//! The inbound side: connections to the workload.
//!
//! A connection redirected by iptables is handed to the application on
//! `127.0.0.1:<original port>` (`[::1]` for IPv6), so the application only ever needs to
//! listen on loopback. A connection made straight to the inbound listener goes to the
//! configured forward address, or is refused when there is none.
//!
//! Other proxies send opaque TCP over mTLS with a transport header naming the target port
//! (see `conduit-transport-header`), straight to the inbound listener: it goes to that port
//! on loopback, or to the forward address when one is set. This is how opaque ports, which
//! are never detected, are still mTLS between meshed workloads.

#![forbid(unsafe_code)]

use conduit_app_core::authorize::PortPolicies;
use conduit_app_core::{
    loopback_for, Config, Connection, Destination, Direction, ProxyMetrics, Route, Tls,
    TransportTarget,
};
use conduit_stack::drain;
use conduit_transport::{Accepted, Listener};
use std::net::SocketAddr;
use std::sync::Arc;

/// The inbound proxy.
#[derive(Clone, Debug)]
pub struct Inbound {
    conn: Connection,
    forward: Option<SocketAddr>,
    /// The proxy's own ports, which a transport header may not name.
    proxy_ports: Arc<[u16]>,
    /// Where opaque TCP with a transport header goes, once serving (with an identity).
    transport: Option<TransportTarget>,
}

impl Inbound {
    /// An inbound side recording into `metrics`; direct connections go to `forward`. With
    /// `tls`, mTLS for this proxy's identity is terminated and the client's identity known;
    /// with `policies`, every connection and request is authorized by its port's policy.
    pub fn new(
        config: Config,
        metrics: ProxyMetrics,
        forward: Option<SocketAddr>,
        tls: Option<Tls>,
        policies: Option<PortPolicies>,
    ) -> Self {
        let mut conn = Connection::new(Direction::Inbound, config, metrics, tls);
        if let Some(policies) = policies {
            conn = conn.with_policies(policies);
        }
        Self {
            conn,
            forward,
            proxy_ports: Arc::from([]),
            transport: None,
        }
    }

    /// Refuses transport headers that name `ports` (the proxy's own listeners: reached from
    /// loopback, the admin server would take `/shutdown` from any meshed peer).
    pub fn with_proxy_ports(mut self, ports: &[u16]) -> Self {
        self.proxy_ports = Arc::from(ports);
        self
    }

    /// Lets `taps` see every HTTP request; `labels` are this workload's.
    pub fn with_taps(
        mut self,
        taps: conduit_tap::Taps,
        labels: Option<std::sync::Arc<conduit_tap::Labels>>,
    ) -> Self {
        self.conn = self.conn.with_taps(taps, labels);
        self
    }

    /// Where an accepted connection goes, if anywhere.
    pub fn destination(&self, accepted: &Accepted) -> Option<Destination> {
        let (target_addr, local) = match accepted.orig_dst {
            Some(dst) => (dst, SocketAddr::new(loopback_for(dst.ip()), dst.port())),
            None => {
                let fwd = self.forward?;
                (fwd, fwd)
            }
        };
        Some(Destination {
            target_addr,
            tcp: Some(local),
            route: Route::Fixed(local),
        })
    }

    /// Where opaque TCP with a transport header goes.
    pub fn transport_target(&self) -> TransportTarget {
        match self.forward {
            Some(addr) => TransportTarget::Fixed(addr),
            None => TransportTarget::Loopback {
                proxy_ports: self.proxy_ports.clone(),
            },
        }
    }

    /// Serves `listener` until `drain` is signaled.
    pub async fn serve(self, listener: Listener, drain: drain::Watch) {
        let max = self.conn.config().max_connections;
        let mut this = self;
        this.transport = this.conn.has_identity().then(|| this.transport_target());
        // Shared, not cloned, per connection: a clone would copy the whole configuration
        // into every connection's task.
        let this = Arc::new(this);
        conduit_app_core::serve(listener, max, drain, move |accepted, drain| {
            let this = this.clone();
            async move {
                let dst = this.destination(&accepted);
                let transport = this.transport.as_ref();
                if dst.is_none() && transport.is_none() {
                    tracing::info!(
                        client = %accepted.client,
                        "refusing inbound connection: not redirected and no forward address is set"
                    );
                    return;
                }
                this.conn.serve(accepted, dst, transport, drain).await
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accepted(orig_dst: Option<SocketAddr>) -> Accepted {
        conduit_transport::accepted_for_test(orig_dst)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn redirected_connections_go_to_the_local_port() {
        let inbound = Inbound::new(Config::default(), ProxyMetrics::default(), None, None, None);
        let d = inbound
            .destination(&accepted(Some("10.1.1.1:8080".parse().unwrap())).await)
            .unwrap();
        assert_eq!(d.target_addr, "10.1.1.1:8080".parse().unwrap());
        assert_eq!(d.tcp, Some("127.0.0.1:8080".parse().unwrap()));
        let d6 = inbound
            .destination(&accepted(Some("[fd00::1]:9090".parse().unwrap())).await)
            .unwrap();
        assert_eq!(d6.tcp, Some("[::1]:9090".parse().unwrap()));
    }

    #[tokio::test]
    async fn direct_connections_need_a_forward_address() {
        let none = Inbound::new(Config::default(), ProxyMetrics::default(), None, None, None);
        assert!(none.destination(&accepted(None).await).is_none());
        let fwd = "127.0.0.1:7000".parse().unwrap();
        let some = Inbound::new(
            Config::default(),
            ProxyMetrics::default(),
            Some(fwd),
            None,
            None,
        );
        let d = some.destination(&accepted(None).await).unwrap();
        assert_eq!(d.tcp, Some(fwd));
    }
}
