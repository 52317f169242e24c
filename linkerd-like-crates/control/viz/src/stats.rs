//! The controller's `Stats` gRPC service.

use crate::collector::{Collector, MAX_WINDOW};
use crate::query::{self, StatQuery};
use crate::resource::{Kind, Resource};
use conduit_api::stats as api;
use conduit_api::tap::Resource as ApiResource;
use conduit_control_destination::model::ServiceKey;
use conduit_control_destination::Index;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The window a query without one gets.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Serves `Stats` from a [`Collector`].
#[derive(Clone, Debug)]
pub struct StatsService {
    index: Arc<Index>,
    collector: Arc<Collector>,
}

impl StatsService {
    /// Answers from `collector`'s windows and `index`'s services.
    pub fn new(index: Arc<Index>, collector: Arc<Collector>) -> Self {
        Self { index, collector }
    }

    /// As a tonic service.
    pub fn into_server(self) -> api::stats_server::StatsServer<Self> {
        api::stats_server::StatsServer::new(self)
    }

    /// The window asked for, checked.
    fn window(&self, asked: Option<&prost_types::Duration>) -> Result<Duration, Status> {
        Ok(match asked {
            None => DEFAULT_WINDOW,
            Some(d) => match Duration::try_from(*d) {
                Ok(d) if d.is_zero() => DEFAULT_WINDOW,
                Ok(d) if d <= MAX_WINDOW => d,
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "window: between 0 and {}s",
                        MAX_WINDOW.as_secs()
                    )))
                }
            },
        })
    }
}

/// The window the figures really cover: the longest of the proxies' (shorter than asked
/// while the controller is young; zero before any proxy has answered twice).
fn covered(deltas: &[(crate::Proxy, crate::window::Delta)]) -> Option<prost_types::Duration> {
    let longest = deltas
        .iter()
        .map(|(_, d)| d.elapsed)
        .max()
        .unwrap_or_default();
    prost_types::Duration::try_from(longest).ok()
}

fn resource(r: Option<&ApiResource>, what: &str) -> Result<Option<Resource>, Status> {
    r.map(|r| Resource::from_api(r, what))
        .transpose()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl api::stats_server::Stats for StatsService {
    async fn stat(
        &self,
        req: Request<api::StatRequest>,
    ) -> Result<Response<api::StatResponse>, Status> {
        let req = req.into_inner();
        let window = self.window(req.window.as_ref())?;
        let query = StatQuery {
            resource: resource(req.resource.as_ref(), "resource")?
                .ok_or_else(|| Status::invalid_argument("resource: a kind is needed"))?,
            from: resource(req.from.as_ref(), "from")?,
            to: resource(req.to.as_ref(), "to")?,
        };
        let deltas = self.collector.deltas(window);
        let rows = query::stat(&self.index, &deltas, &query).map_err(Status::invalid_argument)?;
        Ok(Response::new(api::StatResponse {
            rows,
            window: covered(&deltas),
        }))
    }

    async fn routes(
        &self,
        req: Request<api::RoutesRequest>,
    ) -> Result<Response<api::RoutesResponse>, Status> {
        let req = req.into_inner();
        let window = self.window(req.window.as_ref())?;
        let service = resource(req.service.as_ref(), "service")?;
        let key = match service {
            Some(Resource {
                kind: Kind::Service,
                namespace: Some(ns),
                name: Some(name),
            }) => ServiceKey::new(ns, name),
            _ => {
                return Err(Status::invalid_argument(
                    "service: routes are per service: give its namespace and name",
                ))
            }
        };
        if !self.index.services().contains(&key) {
            return Err(Status::not_found(format!(
                "no service {} in namespace {}",
                key.name, key.namespace
            )));
        }
        let from = resource(req.from.as_ref(), "from")?;
        let deltas = self.collector.deltas(window);
        Ok(Response::new(api::RoutesResponse {
            rows: query::routes(&self.index, &deltas, &key, from.as_ref()),
            window: covered(&deltas),
        }))
    }

    async fn edges(
        &self,
        req: Request<api::EdgesRequest>,
    ) -> Result<Response<api::EdgesResponse>, Status> {
        let req = req.into_inner();
        let window = self.window(req.window.as_ref())?;
        let kind = Kind::parse(&req.kind)
            .ok_or_else(|| Status::invalid_argument(format!("kind: unknown {:?}", req.kind)))?;
        let namespace = (!req.namespace.is_empty()).then_some(req.namespace.as_str());
        let deltas = self.collector.deltas(window);
        let rows = query::edges(&deltas, kind, namespace).map_err(Status::invalid_argument)?;
        Ok(Response::new(api::EdgesResponse {
            rows,
            window: covered(&deltas),
        }))
    }
}
