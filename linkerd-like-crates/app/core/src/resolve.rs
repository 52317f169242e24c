//! Name resolution for explicit-mode requests, behind a trait so the controller's discovery
//! can replace DNS without touching the proxy's stacks.

use conduit_addr::NameAddr;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed resolution in progress.
pub type Resolution = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>>;

/// Resolves a name to the addresses that serve it.
pub trait Resolve: fmt::Debug + Send + Sync + 'static {
    /// The addresses of `name`, in preference order.
    fn resolve(&self, name: &NameAddr) -> Resolution;
}

/// Resolves through the system resolver.
#[derive(Clone, Debug, Default)]
pub struct Dns;

impl Resolve for Dns {
    fn resolve(&self, name: &NameAddr) -> Resolution {
        let target = (name.name().as_str().to_string(), name.port());
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

/// Resolves from a fixed table, then asks a fallback (if any) for other names.
#[derive(Clone, Debug)]
pub struct Static {
    table: Arc<HashMap<NameAddr, Vec<SocketAddr>>>,
    fallback: Option<Arc<dyn Resolve>>,
}

impl Static {
    /// A table of names.
    pub fn new(
        table: HashMap<NameAddr, Vec<SocketAddr>>,
        fallback: Option<Arc<dyn Resolve>>,
    ) -> Self {
        Self {
            table: Arc::new(table),
            fallback,
        }
    }
}

impl Resolve for Static {
    fn resolve(&self, name: &NameAddr) -> Resolution {
        if let Some(addrs) = self.table.get(name) {
            let addrs = addrs.clone();
            return Box::pin(async move { Ok(addrs) });
        }
        match &self.fallback {
            Some(fallback) => fallback.resolve(name),
            None => {
                let name = name.to_string();
                Box::pin(async move {
                    Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{name} is not known"),
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NameAddr {
        match s.parse::<conduit_addr::Addr>().unwrap() {
            conduit_addr::Addr::Name(n) => n,
            other => panic!("{other} is not a name"),
        }
    }

    #[tokio::test]
    async fn static_table_then_error() {
        let addr: SocketAddr = "127.0.1.2:4143".parse().unwrap();
        let table = HashMap::from([(name("books.demo:7001"), vec![addr])]);
        let r = Static::new(table, None);
        assert_eq!(
            r.resolve(&name("books.demo:7001")).await.unwrap(),
            vec![addr]
        );
        let err = r.resolve(&name("authors.demo:7002")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn dns_resolves_localhost() {
        let addrs = Dns.resolve(&name("localhost:80")).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert!(!addrs.is_empty());
    }
}
