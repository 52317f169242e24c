//! gRPC through the real proxy with a real tonic client and server: messages, statuses and
//! trailers arrive intact, and a gRPC error is classified as a failure in the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_app_integration::*;
use http::uri::PathAndQuery;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

/// `demo.Greeter/SayHello`: greets anyone but "mallory", who is refused.
#[derive(Clone)]
struct SayHello;

impl tonic::server::UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<HelloReply>, tonic::Status>> + Send>>;

    fn call(&mut self, req: tonic::Request<HelloRequest>) -> Self::Future {
        let name = req.into_inner().name;
        Box::pin(async move {
            if name == "mallory" {
                return Err(tonic::Status::permission_denied(
                    "mallory may not be greeted",
                ));
            }
            Ok(tonic::Response::new(HelloReply {
                message: format!("hello, {name}"),
            }))
        })
    }
}

/// The gRPC server: routes by path as generated code would.
#[derive(Clone)]
struct Greeter;

impl tower::Service<http::Request<hyper::body::Incoming>> for Greeter {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() == "/demo.Greeter/SayHello" {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
                Ok(grpc.unary(SayHello, req).await)
            } else {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            }
        })
    }
}

async fn grpc_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper_util::service::TowerToHyperService::new(Greeter);
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn grpc_client(addr: std::net::SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn say_hello(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    name: &str,
) -> Result<String, tonic::Status> {
    client.ready().await.unwrap();
    let req = tonic::Request::new(HelloRequest { name: name.into() });
    let path = PathAndQuery::from_static("/demo.Greeter/SayHello");
    let rsp = client
        .unary(req, path, ProstCodec::<HelloRequest, HelloReply>::default())
        .await?;
    Ok(rsp.into_inner().message)
}

#[tokio::test]
async fn tonic_calls_and_statuses_pass_through_the_proxy() {
    let server = grpc_server().await;
    let fwd = server.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let mut client = grpc_client(proxy.inbound).await;

    for name in ["alice", "bob"] {
        let reply = bounded(say_hello(&mut client, name)).await.unwrap();
        assert_eq!(reply, format!("hello, {name}"));
    }
    let status = bounded(say_hello(&mut client, "mallory"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(status.message(), "mallory may not be greeted");

    let m = proxy.metrics().await;
    let ok = metric_value(
        &m,
        "response_total",
        &["direction=\"inbound\"", "classification=\"success\""],
    );
    let failed = metric_value(
        &m,
        "response_total",
        &["direction=\"inbound\"", "classification=\"failure\""],
    );
    assert_eq!(ok, Some(2.0), "{m}");
    assert_eq!(
        failed,
        Some(1.0),
        "a gRPC error status is a failure even with HTTP 200:\n{m}"
    );
}

#[tokio::test]
async fn unreachable_grpc_backends_get_unavailable() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let fwd = dead.to_string();
    let proxy = TestProxy::spawn(config(&[("CONDUIT_PROXY_INBOUND_FORWARD_ADDR", &fwd)])).await;
    let mut client = grpc_client(proxy.inbound).await;
    let status = bounded(say_hello(&mut client, "alice")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("refused"), "{}", status.message());
}
