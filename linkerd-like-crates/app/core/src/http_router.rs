mod futures;

use self::futures::{Respond, RouteInfo, ToPicked};
use crate::authorize::Authz;
use crate::balancer::{Backend, Balancer, Choice, Discover};
use crate::resolve::Resolve;
use crate::Config;
use ::futures::future::Either;
use conduit_addr::Addr;
use conduit_balance::Picked;
use conduit_error::Error;
use conduit_http::client::{Client, Endpoint, NewClient, Slot};
use conduit_http::{errors, forward, ErrorStatus, Http, ProxyBody};
use conduit_stack::{NewCache, NewService};
use http::uri::Authority;
use http::{Method, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A request's future, boxed at the stack boundary between the server and the router.
type BoxResponse =
    Pin<Box<dyn Future<Output = Result<http::Response<ProxyBody>, Infallible>> + Send>>;

/// Where a connection's requests go.
#[derive(Clone, Debug)]
pub enum Route {
    /// Every request goes to one address.
    Fixed(SocketAddr),
    /// Each request goes to its own authority (explicit proxy mode), resolved by name.
    Authority(Arc<dyn Resolve>),
    /// Every request goes to the endpoints the controller gives for this address (a
    /// service's cluster IP, say), balanced; to the address itself if the controller does
    /// not know it.
    Discovered(SocketAddr, Discover),
    /// Explicit mode through the controller: each request's authority is balanced over the
    /// endpoints the controller gives, or resolved by name if the controller does not know it.
    DiscoveredAuthority(Discover, Arc<dyn Resolve>),
}

/// The HTTP service for one connection: routes each request to an endpoint and forwards it.
/// Failures become error responses, so this service never fails.
#[derive(Clone, Debug)]
pub struct HttpRouter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    target: Target,
    /// The address the connection arrived on; an explicit-mode request for it would loop.
    target_addr: SocketAddr,
    /// The upstream HTTP/1.1 connection this downstream connection is using.
    slot: Arc<Slot>,
    /// On a connection from another proxy: the HTTP/1 client to the same endpoint, for the
    /// HTTP/1 requests that proxy carried as HTTP/2.
    downgrade: Option<Client>,
    clients: NewCache<Endpoint, NewClient>,
    http: Http,
    fallback: Authority,
    response_timeout: Option<Duration>,
    connect_timeout: Duration,
    max_header_bytes: usize,
    /// Inbound: the connection's client, checked against its port's policy per request.
    authz: Option<Authz>,
}

#[derive(Debug)]
enum Target {
    Fixed(Client),
    Authority(Arc<dyn Resolve>),
    Balanced {
        balancer: Arc<Balancer>,
        fallback: Client,
    },
    DiscoveredAuthority(Discover, Arc<dyn Resolve>),
}

impl HttpRouter {
    /// A router for a connection speaking `http`, whose original destination is `target_addr`;
    /// `meshed` when the connection is mTLS from another proxy.
    pub fn new(
        route: Route,
        clients: NewCache<Endpoint, NewClient>,
        http: Http,
        target_addr: SocketAddr,
        meshed: bool,
        config: &Config,
    ) -> Self {
        let fallback = Authority::try_from(target_addr.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("localhost"));
        let route_addr = match &route {
            Route::Fixed(addr) => Some(*addr),
            _ => None,
        };
        let target = match route {
            // Looked up once per connection rather than per request.
            Route::Fixed(addr) => Target::Fixed(clients.new_service(Endpoint::plain(addr, http))),
            Route::Authority(resolve) => Target::Authority(resolve),
            Route::Discovered(addr, discover) => Target::Balanced {
                balancer: discover.balancer(Addr::Socket(addr), http),
                fallback: clients.new_service(Endpoint::plain(addr, http)),
            },
            Route::DiscoveredAuthority(discover, resolve) => {
                Target::DiscoveredAuthority(discover, resolve)
            }
        };
        let downgrade = match (&route_addr, meshed, http) {
            (Some(addr), true, Http::H2) => {
                Some(clients.new_service(Endpoint::plain(*addr, Http::Http1)))
            }
            _ => None,
        };
        let shared = Shared {
            target,
            target_addr,
            slot: Arc::new(match http {
                Http::H2 => Slot::multiplexed(),
                Http::Http1 => Slot::new(),
            }),
            downgrade,
            clients,
            http,
            fallback,
            response_timeout: config.response_timeout,
            connect_timeout: config.client.connect_timeout,
            max_header_bytes: config.server.max_header_bytes,
            authz: None,
        };
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl HttpRouter {
    /// Checks every request against `authz` first: a refused one gets 403.
    pub fn with_authz(mut self, authz: Option<Authz>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.authz = authz;
        }
        self
    }
}

impl tower_service::Service<http::Request<ProxyBody>> for HttpRouter {
    type Response = http::Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<ProxyBody>) -> Self::Future {
        let grpc = errors::is_grpc(&req);
        let shared = &self.shared;
        if let Err(e) = conduit_http::server::check_head(&req, shared.max_header_bytes) {
            return refuse(e.into(), grpc);
        }
        if let Some(Err(denied)) = shared.authz.as_ref().map(Authz::check_request) {
            let refused = ErrorStatus::new(StatusCode::FORBIDDEN, denied.to_string());
            return refuse(refused.into(), grpc);
        }
        // The one allocation per request, at the stack boundary between hyper and the
        // router. The fixed-target future is boxed as `forward` returns it, with no `async`
        // layer around it: each would copy the request and the state again.
        match &shared.target {
            Target::Fixed(client) => {
                let client = match &shared.downgrade {
                    Some(h1) if forward::is_orig_proto(&req) => h1,
                    _ => client,
                };
                respond(
                    forward::forward(
                        client.clone(),
                        shared.slot.clone(),
                        req,
                        &shared.fallback,
                        shared.response_timeout,
                    ),
                    grpc,
                )
            }
            Target::Authority(resolve) => shared.explicit_boxed(resolve, req, grpc),
            Target::Balanced { balancer, fallback } => {
                let route = RouteInfo::of(balancer, &req);
                // Most requests are decided now, and their future holds no balancer wait.
                if let Some(choice) = balancer.choose_now() {
                    let send = shared.send(choice, fallback.clone(), req);
                    return respond(route.apply(grpc, send), grpc);
                }
                let (shared, balancer) = (shared.clone(), balancer.clone());
                let fallback = fallback.clone();
                respond(
                    route.apply(grpc, async move {
                        let choice = balancer.choose().await?;
                        shared.send(choice, fallback, req).await
                    }),
                    grpc,
                )
            }
            Target::DiscoveredAuthority(discover, resolve) => {
                shared.discovered(discover, resolve, req, grpc)
            }
        }
    }
}

impl Shared {
    /// Sends a request where the balancer chose, or to `fallback`.
    fn send(
        &self,
        choice: Choice,
        fallback: Client,
        req: http::Request<ProxyBody>,
    ) -> impl Future<Output = Result<http::Response<ProxyBody>, Error>> + Send + 'static {
        match choice {
            Choice::Endpoint(picked) => Either::Left(self.to_picked(picked, req, &self.fallback)),
            Choice::Fallback => Either::Right(forward::forward(
                fallback,
                self.slot.clone(),
                req,
                &self.fallback,
                self.response_timeout,
            )),
        }
    }

    /// Sends a request to the endpoint the balancer picked, and reports its latency back.
    fn to_picked(
        &self,
        picked: Picked<SocketAddr, Backend>,
        req: http::Request<ProxyBody>,
        authority: &Authority,
    ) -> ToPicked<impl Future<Output = Result<http::Response<ProxyBody>, Error>> + Send + 'static>
    {
        let Backend { client, labels, .. } = picked.endpoint().clone();
        let server_id = client.endpoint().tls.clone();
        let endpoint = client.endpoint().addr;
        let forward = forward::forward(
            client,
            self.slot.clone(),
            req,
            authority,
            self.response_timeout,
        );
        ToPicked::new(forward, picked, labels, server_id, endpoint)
    }

    /// An explicit-mode request through the controller. Decided here when it can be: a
    /// meshed client's every request takes this path, and a future that held the balancer
    /// wait and the name resolution beside the forward would be copied whole on each one.
    fn discovered(
        self: &Arc<Self>,
        discover: &Discover,
        resolve: &Arc<dyn Resolve>,
        req: http::Request<ProxyBody>,
        grpc: bool,
    ) -> BoxResponse {
        // CONNECT opens a tunnel to exactly what it names.
        if req.method() == Method::CONNECT {
            return self.explicit_boxed(resolve, req, grpc);
        }
        let (authority, balancer) = match self.discovered_balancer(discover, &req) {
            Ok(found) => found,
            Err(e) => return refuse(e.into(), grpc),
        };
        let route = RouteInfo::of(&balancer, &req);
        if let Some(Choice::Endpoint(picked)) = balancer.choose_now() {
            let send = self.to_picked(picked, req, &authority);
            return respond(route.apply(grpc, send), grpc);
        }
        let (shared, resolve) = (self.clone(), resolve.clone());
        respond(
            route.apply(grpc, async move {
                match balancer.choose().await? {
                    Choice::Endpoint(picked) => shared.to_picked(picked, req, &authority).await,
                    Choice::Fallback => shared.explicit(&*resolve, req).await,
                }
            }),
            grpc,
        )
    }

    /// The balancer for the authority an explicit-mode request names.
    fn discovered_balancer<B>(
        &self,
        discover: &Discover,
        req: &http::Request<B>,
    ) -> Result<(Authority, Arc<Balancer>), ErrorStatus> {
        let authority = forward::request_authority(req).ok_or_else(no_authority)?;
        let addr = Addr::from_http_authority(&authority, Some(80)).map_err(invalid_authority)?;
        let balancer = discover.balancer(addr, self.http);
        Ok((authority, balancer))
    }

    /// [`Shared::explicit`] as a router's future.
    fn explicit_boxed(
        self: &Arc<Self>,
        resolve: &Arc<dyn Resolve>,
        req: http::Request<ProxyBody>,
        grpc: bool,
    ) -> BoxResponse {
        let (shared, resolve) = (self.clone(), resolve.clone());
        respond(async move { shared.explicit(&*resolve, req).await }, grpc)
    }

    /// An explicit-mode request: it goes to the authority it names.
    async fn explicit(
        &self,
        resolve: &dyn Resolve,
        mut req: http::Request<ProxyBody>,
    ) -> Result<http::Response<ProxyBody>, Error> {
        let authority = forward::request_authority(&req).ok_or_else(no_authority)?;
        let addr = Addr::from_http_authority(&authority, Some(80)).map_err(invalid_authority)?;
        let endpoint = match addr {
            Addr::Socket(sa) => sa,
            Addr::Name(name) => {
                let addrs = resolve.resolve(&name).await.map_err(|e| {
                    ErrorStatus::new(
                        StatusCode::BAD_GATEWAY,
                        format!("failed to resolve {name}: {e}"),
                    )
                })?;
                *addrs.first().ok_or_else(|| {
                    ErrorStatus::new(StatusCode::BAD_GATEWAY, format!("{name} has no addresses"))
                })?
            }
        };

        if endpoint == self.target_addr {
            return Err(ErrorStatus::new(
                StatusCode::LOOP_DETECTED,
                format!("{authority} is this proxy: the request would loop"),
            )
            .into());
        }

        if req.method() == Method::CONNECT {
            let upstream = conduit_transport::connect(endpoint, self.connect_timeout).await?;
            return Ok(forward::tunnel(&mut req, upstream));
        }
        let client = self
            .clients
            .new_service(Endpoint::plain(endpoint, self.http));
        forward::forward(
            client,
            self.slot.clone(),
            req,
            &authority,
            self.response_timeout,
        )
        .await
    }
}

/// Boxes a request's future, whose failure becomes an error response.
fn respond<F>(handle: F, grpc: bool) -> BoxResponse
where
    F: Future<Output = Result<http::Response<ProxyBody>, Error>> + Send + 'static,
{
    Box::pin(Respond { handle, grpc })
}

/// Answers a request the router refuses before sending it anywhere.
fn refuse(error: Error, grpc: bool) -> BoxResponse {
    Box::pin(std::future::ready(Ok(errors::response(&error, grpc))))
}

fn no_authority() -> ErrorStatus {
    ErrorStatus::new(
        StatusCode::BAD_REQUEST,
        "request names no authority (no valid Host header)",
    )
}

fn invalid_authority(e: impl std::fmt::Display) -> ErrorStatus {
    ErrorStatus::new(StatusCode::BAD_REQUEST, format!("invalid authority: {e}"))
}
