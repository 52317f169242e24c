use crate::PolicyIndex;
use conduit_api::policy as api;
use conduit_api::policy::inbound_policies_server::{InboundPolicies, InboundPoliciesServer};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// The Policy gRPC service.
#[derive(Clone, Debug)]
pub struct PolicyService {
    index: Arc<PolicyIndex>,
}

impl PolicyService {
    /// Serves `index`.
    pub fn new(index: Arc<PolicyIndex>) -> Self {
        Self { index }
    }

    /// As a tonic service.
    pub fn into_server(self) -> InboundPoliciesServer<Self> {
        InboundPoliciesServer::new(self)
    }
}

type PolicyStream = Pin<Box<dyn Stream<Item = Result<api::InboundServer, Status>> + Send>>;

#[tonic::async_trait]
impl InboundPolicies for PolicyService {
    type WatchPortStream = PolicyStream;

    async fn watch_port(
        &self,
        req: Request<api::PortRequest>,
    ) -> Result<Response<PolicyStream>, Status> {
        let req = req.into_inner();
        let port = u16::try_from(req.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Status::invalid_argument(format!("port {} is not a port", req.port)))?;
        if req.namespace.is_empty() || req.pod.is_empty() {
            return Err(Status::invalid_argument("namespace and pod are required"));
        }
        let rx = self.index.watch(&req.namespace, &req.pod, port);
        // The latest policy first, then each change; a slow reader skips to the newest.
        let stream = tokio_stream::wrappers::WatchStream::new(rx).map(|p| Ok((*p).clone()));
        Ok(Response::new(Box::pin(stream)))
    }
}
