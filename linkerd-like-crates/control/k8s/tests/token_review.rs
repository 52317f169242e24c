//! TokenReview at the kube client's HTTP boundary, with the API server's real JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use conduit_control_ca::{TokenError, TokenVerifier};
use conduit_control_k8s::TokenReviews;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::json;

type Body = BoxBody<Bytes, std::io::Error>;

/// Sends one token for review; the API server answers `status`. Returns what the verifier
/// concluded and the request body the API server saw.
async fn review(
    token: &str,
    status: serde_json::Value,
) -> (Result<String, TokenError>, serde_json::Value) {
    let (svc, mut api) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<Body>>();
    let verifier = TokenReviews::new(kube::Client::new(svc, "default"));
    let server = tokio::spawn(async move {
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(
            req.uri().path(),
            "/apis/authentication.k8s.io/v1/tokenreviews"
        );
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut answer = sent.clone();
        answer["status"] = status;
        let rsp = Full::new(Bytes::from(answer.to_string()))
            .map_err(|never| match never {})
            .boxed();
        send.send_response(
            http::Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .body(rsp)
                .unwrap(),
        );
        sent
    });
    let result = verifier
        .verify(token.as_bytes())
        .await
        .map(|w| format!("{}/{}", w.namespace, w.service_account));
    (result, server.await.unwrap())
}

#[tokio::test]
async fn a_valid_token_proves_its_service_account() {
    let (result, sent) = review(
        "eyJhbGciOiJSUzI1NiJ9.e30.sig\n",
        json!({
            "authenticated": true,
            "audiences": ["identity.conduit.io"],
            "user": {
                "username": "system:serviceaccount:demo:web",
                "uid": "6f8a1b2c-1111-2222-3333-444455556666",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:demo", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["web-5d4f7c9b8-abcde"]}
            }
        }),
    )
    .await;
    assert_eq!(result.unwrap(), "demo/web");
    assert_eq!(sent["kind"], "TokenReview");
    assert_eq!(sent["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(sent["spec"]["token"], "eyJhbGciOiJSUzI1NiJ9.e30.sig");
    assert_eq!(sent["spec"]["audiences"], json!(["identity.conduit.io"]));
}

#[tokio::test]
async fn refused_tokens_say_why() {
    let (result, _) = review(
        "expired",
        json!({"authenticated": false, "error": "[invalid bearer token, service account token has expired]", "user": {}}),
    )
    .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("has expired"), "{err}");

    let (result, _) = review(
        "other-audience",
        json!({"authenticated": true, "audiences": ["https://kubernetes.default.svc"],
               "user": {"username": "system:serviceaccount:demo:web"}}),
    )
    .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("not for audience identity.conduit.io"),
        "{err}"
    );

    let (result, _) = review(
        "a-user",
        json!({"authenticated": true, "audiences": ["identity.conduit.io"],
               "user": {"username": "alice@example.com"}}),
    )
    .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("not a service account"), "{err}");
}
