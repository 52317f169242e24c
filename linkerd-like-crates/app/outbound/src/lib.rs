//! The outbound side: the application's own connections.
//!
//! A connection redirected by iptables goes to its original destination (`SO_ORIGINAL_DST`):
//! HTTP requests to that address through a pooled client, anything else byte for byte. A
//! connection made straight to the outbound listener is *explicit mode*: the proxy acts as an
//! HTTP proxy, and each request goes to the authority it names (absolute-form URI, `CONNECT`
//! target, or `Host` header), resolved through a [`Resolve`]r. Opaque TCP has nowhere to go
//! in explicit mode and is refused.
//!
//! With the controller (a [`Discovery`]), HTTP requests are balanced over the endpoints the
//! controller gives for the original destination (or, in explicit mode, for the request's
//! authority); names the controller does not know go where they would without it. Opaque TCP
//! to a service it knows is balanced per connection over its endpoints, and reaches meshed
//! ones over mTLS behind a transport header.

#![forbid(unsafe_code)]

use conduit_app_core::balancer::Discover;
use conduit_app_core::resolve::Resolve;
use conduit_app_core::{Config, Connection, Destination, Direction, ProxyMetrics, Route, Tls};
pub use conduit_discovery::Discovery;
use conduit_stack::drain;
use conduit_transport::{Accepted, Listener};
use std::sync::Arc;

/// The outbound proxy.
#[derive(Clone, Debug)]
pub struct Outbound {
    conn: Connection,
    resolve: Arc<dyn Resolve>,
    discover: Option<Discover>,
}

impl Outbound {
    /// An outbound side recording into `metrics`, resolving names with `resolve`, and
    /// balancing over the controller's endpoints when `discovery` is given; with `tls`,
    /// endpoints whose proxies have an identity are reached over mTLS.
    pub fn new(
        config: Config,
        metrics: ProxyMetrics,
        resolve: Arc<dyn Resolve>,
        discovery: Option<Discovery>,
        tls: Option<Tls>,
    ) -> Self {
        let conn = Connection::new(Direction::Outbound, config.clone(), metrics, tls);
        let discover = discovery.map(|d| {
            Discover::new(
                Arc::new(d),
                conn.clients().clone(),
                config.queue,
                config.cache_idle,
                conn.has_identity(),
            )
        });
        Self {
            conn,
            resolve,
            discover,
        }
    }

    /// Where an accepted connection goes.
    pub fn destination(&self, accepted: &Accepted) -> Destination {
        match accepted.orig_dst {
            Some(dst) => Destination {
                target_addr: dst,
                tcp: Some(dst),
                route: match &self.discover {
                    Some(d) => Route::Discovered(dst, d.clone()),
                    None => Route::Fixed(dst),
                },
            },
            None => Destination {
                target_addr: accepted.local,
                tcp: None,
                route: match &self.discover {
                    Some(d) => Route::DiscoveredAuthority(d.clone(), self.resolve.clone()),
                    None => Route::Authority(self.resolve.clone()),
                },
            },
        }
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

    /// Serves `listener` until `drain` is signaled.
    pub async fn serve(self, listener: Listener, drain: drain::Watch) {
        let max = self.conn.config().max_connections;
        // Shared, not cloned, per connection: a clone would copy the whole configuration
        // into every connection's task.
        let this = Arc::new(self);
        conduit_app_core::serve(listener, max, drain, move |accepted, drain| {
            let this = this.clone();
            async move {
                let dst = this.destination(&accepted);
                this.conn.serve(accepted, Some(dst), None, drain).await
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_app_core::resolve::Dns;

    async fn accepted(orig_dst: Option<std::net::SocketAddr>) -> Accepted {
        conduit_transport::accepted_for_test(orig_dst)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn redirected_connections_follow_their_original_destination() {
        let out = Outbound::new(
            Config::default(),
            ProxyMetrics::default(),
            Arc::new(Dns),
            None,
            None,
        );
        let dst = "10.1.1.1:8080".parse().unwrap();
        let d = out.destination(&accepted(Some(dst)).await);
        assert_eq!(d.target_addr, dst);
        assert_eq!(d.tcp, Some(dst));
        assert!(matches!(d.route, Route::Fixed(a) if a == dst));
    }

    #[tokio::test]
    async fn direct_connections_are_explicit_mode() {
        let out = Outbound::new(
            Config::default(),
            ProxyMetrics::default(),
            Arc::new(Dns),
            None,
            None,
        );
        let a = accepted(None).await;
        let d = out.destination(&a);
        assert_eq!(d.target_addr, a.local);
        assert_eq!(d.tcp, None);
        assert!(matches!(d.route, Route::Authority(_)));
    }
}
