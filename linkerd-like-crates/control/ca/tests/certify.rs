//! The Identity API over real gRPC: what it signs and what it refuses, and why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_api::identity::identity_client::IdentityClient;
use conduit_api::identity::CertifyRequest;
use conduit_control_ca::generate::{self, CertKey};
use conduit_control_ca::{IdentityService, Issuer, IssuerFiles, LocalTokens};
use conduit_identity::certify::{self, certify_once};
use conduit_identity::{Credentials, Domain, Name, TrustAnchors, Workload};
use conduit_stack::Backoff;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::Code;

const DAY: Duration = Duration::from_secs(86_400);

struct Ca {
    anchor: CertKey,
    issuer: watch::Sender<Option<Arc<Issuer>>>,
    tokens: Arc<LocalTokens>,
    client: IdentityClient<Channel>,
}

fn workload(sa: &str) -> Workload {
    Workload {
        service_account: sa.into(),
        namespace: "demo".into(),
    }
}

fn name(sa: &str) -> Name {
    Domain::default().name(&workload(sa)).unwrap()
}

async fn start(lifetime: Duration) -> Ca {
    let domain = Domain::default();
    let anchor = generate::trust_anchor(&domain, DAY * 365).unwrap();
    let issuer = generate::issuer(&anchor, &domain, DAY * 30).unwrap();
    let issuer = Issuer::from_pem(&anchor.cert_pem, &issuer.cert_pem, &issuer.key_pem).unwrap();
    let (tx, rx) = watch::channel(Some(Arc::new(issuer)));
    let tokens = Arc::new(LocalTokens::from_key(&LocalTokens::generate_key().unwrap()).unwrap());
    let svc = IdentityService::new(rx, domain, tokens.clone(), lifetime);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    Ca {
        anchor,
        issuer: tx,
        tokens,
        client: IdentityClient::new(channel),
    }
}

fn csr_for(sans: &[&str]) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

async fn ask(ca: &Ca, identity: &str, token: &str, csr: Vec<u8>) -> Result<(), tonic::Status> {
    ca.client
        .clone()
        .certify(CertifyRequest {
            identity: identity.into(),
            token: token.as_bytes().to_vec(),
            certificate_signing_request: csr,
        })
        .await
        .map(drop)
}

fn token_file(token: &str) -> tempfile_path::TempPath {
    tempfile_path::write(token)
}

/// A file in the temp dir, removed on drop.
mod tempfile_path {
    use std::path::PathBuf;
    pub struct TempPath(pub PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    pub fn write(contents: &str) -> TempPath {
        let path = std::env::temp_dir().join(format!(
            "conduit-ca-test-{}-{}",
            std::process::id(),
            fastrand_name()
        ));
        std::fs::write(&path, contents).unwrap();
        TempPath(path)
    }
    fn fastrand_name() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}

#[tokio::test]
async fn a_proxy_gets_a_certificate_for_its_identity_and_nothing_else() {
    let ca = start(Duration::from_secs(3600)).await;
    let anchors = TrustAnchors::from_pem(&ca.anchor.cert_pem).unwrap();
    let creds = Credentials::generate(name("web"), anchors).unwrap();
    let token = token_file(&ca.tokens.issue(&workload("web")));
    let config = certify::Config {
        token_path: token.0.clone(),
        backoff: Backoff::default(),
    };
    let expiry = certify_once(&creds, &mut ca.client.clone(), &config)
        .await
        .unwrap();
    let left = expiry.duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
        "{left:?}"
    );

    // The leaf names the identity both ways, and its chain goes through the issuer.
    let current = creds.current().expect("a certificate");
    assert_eq!(current.cert.len(), 2, "leaf and issuer");
    let (_, leaf) = x509_parser::parse_x509_certificate(&current.cert[0]).unwrap();
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    let sans: Vec<String> = sans
        .value
        .general_names
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(
        sans,
        [
            "DNSName(web.demo.serviceaccount.identity.conduit.cluster.local)",
            "URI(spiffe://cluster.local/ns/demo/sa/web)"
        ]
    );
    assert!(!leaf.is_ca());
    assert_eq!(*creds.expiry().borrow(), Some(expiry));
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_right_code_and_a_reason() {
    let ca = start(DAY).await;
    let web = name("web");
    let token = ca.tokens.issue(&workload("web"));
    let ok = ask(&ca, web.as_str(), &token, csr_for(&[web.as_str()])).await;
    assert!(ok.is_ok(), "{ok:?}");

    let cases: Vec<(&str, Result<(), tonic::Status>, Code, &str)> = vec![
        (
            "wrong SAN",
            ask(
                &ca,
                web.as_str(),
                &token,
                csr_for(&[name("books").as_str()]),
            )
            .await,
            Code::InvalidArgument,
            "exactly one SAN",
        ),
        (
            "extra SAN",
            ask(
                &ca,
                web.as_str(),
                &token,
                csr_for(&[web.as_str(), "evil.example.com"]),
            )
            .await,
            Code::InvalidArgument,
            "exactly one SAN",
        ),
        (
            "no SAN",
            ask(&ca, web.as_str(), &token, csr_for(&[])).await,
            Code::InvalidArgument,
            "exactly one SAN",
        ),
        (
            "garbage CSR",
            ask(
                &ca,
                web.as_str(),
                &token,
                b"-----BEGIN CERTIFICATE REQUEST-----\nnope".to_vec(),
            )
            .await,
            Code::InvalidArgument,
            "not a valid PKCS#10",
        ),
        (
            "token for another account",
            ask(
                &ca,
                web.as_str(),
                &ca.tokens.issue(&workload("books")),
                csr_for(&[web.as_str()]),
            )
            .await,
            Code::PermissionDenied,
            "proves service account demo/books",
        ),
        (
            "forged token",
            ask(
                &ca,
                web.as_str(),
                "conduit.v1.ZGVtby93ZWI.AAAA",
                csr_for(&[web.as_str()]),
            )
            .await,
            Code::Unauthenticated,
            "bad signature",
        ),
        (
            "no token",
            ask(&ca, web.as_str(), "", csr_for(&[web.as_str()])).await,
            Code::Unauthenticated,
            "no token",
        ),
        (
            "identity of another mesh",
            ask(
                &ca,
                "web.demo.serviceaccount.identity.linkerd.cluster.local",
                &token,
                csr_for(&[web.as_str()]),
            )
            .await,
            Code::InvalidArgument,
            "not a workload identity",
        ),
        (
            "not a name",
            ask(&ca, "Web!", &token, csr_for(&[web.as_str()])).await,
            Code::InvalidArgument,
            "is not an identity",
        ),
    ];
    for (case, result, code, reason) in cases {
        let status = result.expect_err(case);
        assert_eq!(status.code(), code, "{case}: {status:?}");
        assert!(status.message().contains(reason), "{case}: {status:?}");
    }

    // Without an issuer, the service says so.
    ca.issuer.send_replace(None);
    let status = ask(&ca, web.as_str(), &token, csr_for(&[web.as_str()]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[test]
fn issuers_that_do_not_chain_or_match_are_refused_at_load() {
    let domain = Domain::default();
    let anchor = generate::trust_anchor(&domain, DAY).unwrap();
    let other = generate::trust_anchor(&domain, DAY).unwrap();
    let issuer = generate::issuer(&anchor, &domain, DAY).unwrap();
    let stranger = generate::issuer(&other, &domain, DAY).unwrap();

    assert!(Issuer::from_pem(&anchor.cert_pem, &issuer.cert_pem, &issuer.key_pem).is_ok());
    let err = |a: &str, c: &str, k: &str| Issuer::from_pem(a, c, k).unwrap_err().to_string();
    assert!(err(&other.cert_pem, &issuer.cert_pem, &issuer.key_pem)
        .contains("not signed by any trust anchor"));
    assert!(err(&anchor.cert_pem, &issuer.cert_pem, &stranger.key_pem).contains("does not match"));
    assert!(err(&anchor.cert_pem, "junk", &issuer.key_pem).contains("not valid PEM"));
    assert!(err(&anchor.cert_pem, &issuer.cert_pem, "junk").contains("PKCS#8"));
    // A leaf is not a CA.
    let leaf = rcgen::generate_simple_self_signed(vec!["x.example".into()]).unwrap();
    assert!(err(
        &leaf.cert.pem(),
        &leaf.cert.pem(),
        &leaf.signing_key.serialize_pem()
    )
    .contains("not a CA"));
}

#[tokio::test]
async fn the_issuer_is_reloaded_from_its_files_and_a_broken_change_keeps_the_last() {
    let domain = Domain::default();
    let anchor = generate::trust_anchor(&domain, DAY).unwrap();
    let first = generate::issuer(&anchor, &domain, DAY).unwrap();
    let anchors = tempfile_path::write(&anchor.cert_pem);
    let cert = tempfile_path::write(&first.cert_pem);
    let key = tempfile_path::write(&first.key_pem);
    let files = IssuerFiles {
        anchors: anchors.0.clone(),
        cert: cert.0.clone(),
        key: key.0.clone(),
    };
    let mut rx = files.watch(Duration::from_millis(20)).await.unwrap();
    let first_subject_key = |rx: &watch::Receiver<Option<Arc<Issuer>>>| {
        rx.borrow().as_ref().map(|i| i.info().not_after)
    };
    let before = first_subject_key(&rx);

    // A rotation: a new issuer from the same anchor, key first then certificate, as a
    // mounted Secret changes. The half-written state is refused and the old issuer kept.
    let second = generate::issuer(&anchor, &domain, DAY * 2).unwrap();
    std::fs::write(&key.0, &second.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        first_subject_key(&rx),
        before,
        "mismatched pair is not used"
    );
    std::fs::write(&cert.0, &second.cert_pem).unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    let after = first_subject_key(&rx);
    assert!(after > before, "{after:?} > {before:?}");
}
