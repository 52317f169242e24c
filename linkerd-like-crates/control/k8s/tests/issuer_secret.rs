//! The issuer read from a Secret through the API, proven at the kube client's HTTP boundary:
//! a tower_test service stands in for the API server and answers each GET with real API
//! JSON, the Secret changing between reads as a rotation would change it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use bytes::Bytes;
use conduit_control_ca::generate::{self, CertKey};
use conduit_control_ca::watch_issuer;
use conduit_control_k8s::IssuerSecret;
use conduit_identity::Domain;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

type Body = BoxBody<Bytes, std::io::Error>;
const PATH: &str = "/api/v1/namespaces/conduit/secrets/conduit-identity-issuer";

fn respond(status: u16, value: serde_json::Value) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(value.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

fn not_found() -> http::Response<Body> {
    respond(
        404,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "secrets \"conduit-identity-issuer\" not found", "reason": "NotFound",
            "details": {"name": "conduit-identity-issuer", "kind": "secrets"}, "code": 404
        }),
    )
}

/// The Secret as the API server returns it: `kubernetes.io/tls`, its data base64.
fn secret(pairs: &[(&str, &str)]) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(b64.encode(v))))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "conduit-identity-issuer", "namespace": "conduit", "resourceVersion": "7"},
        "data": data
    })
}

fn issuer_secret(anchor: &CertKey, issuer: &CertKey) -> serde_json::Value {
    secret(&[
        ("ca.crt", &anchor.cert_pem),
        ("tls.crt", &issuer.cert_pem),
        ("tls.key", &issuer.key_pem),
    ])
}

/// An API server whose Secret is whatever `current` holds (`None`: not found); counts GETs.
fn api_server(current: Arc<Mutex<Option<serde_json::Value>>>) -> (kube::Client, Arc<Mutex<usize>>) {
    let (svc, mut api) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<Body>>();
    let gets = Arc::new(Mutex::new(0));
    let counted = gets.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = api.next_request().await {
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(req.uri().path(), PATH, "only the one Secret is read");
            *counted.lock().unwrap() += 1;
            let value = current.lock().unwrap().clone();
            send.send_response(match value {
                Some(v) => respond(200, v),
                None => not_found(),
            });
        }
    });
    (kube::Client::new(svc, "default"), gets)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

async fn until_gets(gets: &Mutex<usize>, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while *gets.lock().unwrap() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the Secret is read again");
}

#[tokio::test]
async fn the_issuer_follows_its_secret_and_keeps_the_last_good_one() {
    let domain = Domain::default();
    let anchor = generate::trust_anchor(&domain, days(365)).unwrap();
    let first = generate::issuer(&anchor, &domain, days(30)).unwrap();
    let second = generate::issuer(&anchor, &domain, days(60)).unwrap();
    let current = Arc::new(Mutex::new(Some(issuer_secret(&anchor, &first))));
    let (client, gets) = api_server(current.clone());
    let source = IssuerSecret::new(client, "conduit", "conduit-identity-issuer");
    let mut rx = watch_issuer(source, Duration::from_millis(50))
        .await
        .unwrap();
    let expiry = |rx: &tokio::sync::watch::Receiver<_>| -> SystemTime {
        let issuer: &Option<Arc<conduit_control_ca::Issuer>> = &rx.borrow();
        issuer.as_ref().unwrap().info().not_after
    };
    let first_expiry = expiry(&rx);
    let in_days = |t: SystemTime| t.duration_since(SystemTime::now()).unwrap().as_secs() / 86_400;
    assert_eq!(in_days(first_expiry), 29);

    // A broken update (a key that is not a key), then the Secret gone: both leave the
    // last good issuer in place.
    *current.lock().unwrap() = Some(secret(&[
        ("ca.crt", &anchor.cert_pem),
        ("tls.crt", &second.cert_pem),
        ("tls.key", "not a key"),
    ]));
    let seen = *gets.lock().unwrap();
    until_gets(&gets, seen + 2).await;
    *current.lock().unwrap() = None;
    let seen = *gets.lock().unwrap();
    until_gets(&gets, seen + 2).await;
    assert!(!rx.has_changed().unwrap());
    assert_eq!(expiry(&rx), first_expiry);

    // The rotation: a new issuer in the same Secret is swapped in with no restart.
    *current.lock().unwrap() = Some(issuer_secret(&anchor, &second));
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_days(expiry(&rx)), 59);
}

#[tokio::test]
async fn a_missing_or_incomplete_secret_stops_start_up_with_its_reason() {
    let domain = Domain::default();
    let anchor = generate::trust_anchor(&domain, days(365)).unwrap();
    let issuer = generate::issuer(&anchor, &domain, days(30)).unwrap();
    let cases = [
        (None, "does not exist"),
        (
            Some(secret(&[
                ("ca.crt", &anchor.cert_pem),
                ("tls.crt", &issuer.cert_pem),
            ])),
            "has no \"tls.key\"",
        ),
        (
            Some(secret(&[
                ("ca.crt", &issuer.cert_pem),
                ("tls.crt", &issuer.cert_pem),
                ("tls.key", &issuer.key_pem),
            ])),
            "not signed by any trust anchor",
        ),
    ];
    for (value, want) in cases {
        let (client, _) = api_server(Arc::new(Mutex::new(value)));
        let source = IssuerSecret::new(client, "conduit", "conduit-identity-issuer");
        let err = watch_issuer(source, Duration::from_secs(60))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Secret conduit/conduit-identity-issuer"),
            "{err}"
        );
        assert!(err.contains(want), "{want:?} in {err}");
    }
}
