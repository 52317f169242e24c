use crate::{Issuer, TokenError, TokenVerifier};
use conduit_api::identity::identity_server::{Identity, IdentityServer};
use conduit_api::identity::{CertifyRequest, CertifyResponse};
use conduit_identity::{Domain, Name};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// The Identity gRPC service: checks the identity, the token and the CSR, then signs.
#[derive(Clone, Debug)]
pub struct IdentityService {
    issuer: watch::Receiver<Option<Arc<Issuer>>>,
    domain: Domain,
    tokens: Arc<dyn TokenVerifier>,
    lifetime: Duration,
}

impl IdentityService {
    /// Signs with whatever issuer `issuer` holds at the time of each request, for identities
    /// of `domain` proved by `tokens`, for `lifetime`.
    pub fn new(
        issuer: watch::Receiver<Option<Arc<Issuer>>>,
        domain: Domain,
        tokens: Arc<dyn TokenVerifier>,
        lifetime: Duration,
    ) -> Self {
        Self {
            issuer,
            domain,
            tokens,
            lifetime,
        }
    }

    /// As a tonic service.
    pub fn into_server(self) -> IdentityServer<Self> {
        IdentityServer::new(self)
    }

    async fn certify(&self, req: CertifyRequest) -> Result<CertifyResponse, Status> {
        let name = Name::parse(&req.identity).map_err(|e| {
            Status::invalid_argument(format!("{:?} is not an identity: {e}", req.identity))
        })?;
        let workload = self.domain.workload(&name).ok_or_else(|| {
            Status::invalid_argument(format!(
                "{name} is not a workload identity (<sa>.<ns>{})",
                self.domain.suffix()
            ))
        })?;
        if req.token.is_empty() {
            return Err(Status::unauthenticated("no token"));
        }
        let proved = self.tokens.verify(&req.token).await.map_err(|e| match e {
            TokenError::Invalid(why) => Status::unauthenticated(why),
            TokenError::Unavailable(why) => Status::unavailable(why),
        })?;
        if proved != workload {
            return Err(Status::permission_denied(format!(
                "the token proves service account {}/{}, not {}/{}",
                proved.namespace,
                proved.service_account,
                workload.namespace,
                workload.service_account
            )));
        }
        let issuer = self
            .issuer
            .borrow()
            .clone()
            .ok_or_else(|| Status::unavailable("no valid issuer certificate is loaded"))?;
        let certified = issuer
            .certify(
                &name,
                &self.domain.spiffe_id(&workload),
                &req.certificate_signing_request,
                self.lifetime,
                SystemTime::now(),
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(identity = %name, valid_until = ?certified.valid_until, "certified");
        Ok(CertifyResponse {
            leaf_certificate: certified.leaf,
            intermediate_certificates: certified.intermediates,
            valid_until: Some(certified.valid_until.into()),
        })
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        req: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let rsp = IdentityService::certify(self, req.into_inner()).await;
        if let Err(status) = &rsp {
            tracing::info!(code = ?status.code(), reason = status.message(), "refused a CSR");
        }
        rsp.map(Response::new)
    }
}
