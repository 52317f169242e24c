//! Mutual TLS over real sockets between a client and a server built from credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conduit_control_ca::generate::{self, CertKey};
use conduit_control_ca::Issuer;
use conduit_identity::{Credentials, Domain, Name, TrustAnchors, Workload};
use conduit_tls::{client_hello, peer_identity, ClientHello, ClientTls, ServerTls};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DAY: Duration = Duration::from_secs(86_400);

struct Mesh {
    anchor: CertKey,
    issuer: Issuer,
    anchors: TrustAnchors,
}

fn mesh() -> Mesh {
    let domain = Domain::default();
    let anchor = generate::trust_anchor(&domain, DAY).unwrap();
    let issuer = generate::issuer(&anchor, &domain, DAY).unwrap();
    Mesh {
        anchors: TrustAnchors::from_pem(&anchor.cert_pem).unwrap(),
        issuer: Issuer::from_pem(&anchor.cert_pem, &issuer.cert_pem, &issuer.key_pem).unwrap(),
        anchor,
    }
}

fn name(sa: &str) -> Name {
    Domain::default()
        .name(&Workload {
            service_account: sa.into(),
            namespace: "demo".into(),
        })
        .unwrap()
}

impl Mesh {
    fn credentials(&self, sa: &str) -> Arc<Credentials> {
        let creds = Credentials::generate(name(sa), self.anchors.clone()).unwrap();
        let c = self
            .issuer
            .certify(
                creds.name(),
                "spiffe://x/y",
                creds.csr(),
                DAY,
                SystemTime::now(),
            )
            .unwrap();
        creds.set_certificate(c.leaf, c.intermediates).unwrap();
        Arc::new(creds)
    }
}

/// Serves one TLS connection: reports the client's identity and ALPN, then echoes a line.
async fn serve_once(
    server: ServerTls,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<(Option<Name>, Option<Vec<u8>>)>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = server.accept(tcp).await?;
        let (_, conn) = tls.get_ref();
        let peer = peer_identity(conn);
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await?;
        Ok((peer, alpn))
    });
    (addr, task)
}

#[tokio::test]
async fn proxies_authenticate_each_other_and_learn_the_peers_identity() {
    let mesh = mesh();
    let web = mesh.credentials("web");
    let books = mesh.credentials("books");
    let (addr, server) = serve_once(ServerTls::new(books.clone()).unwrap()).await;

    let client = ClientTls::new(web).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = client.connect(&name("books"), true, tcp).await.unwrap();
    tls.write_all(b"hello").await.unwrap();
    let mut echoed = Vec::new();
    tls.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"hello");
    assert_eq!(
        peer_identity(tls.get_ref().1).as_ref(),
        Some(&name("books")),
        "the client knows the server"
    );

    let (peer, alpn) = server.await.unwrap().unwrap();
    assert_eq!(peer, Some(name("web")), "the server knows the client");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn opaque_tcp_agrees_on_the_transport_alpn() {
    let mesh = mesh();
    let (addr, server) = serve_once(ServerTls::new(mesh.credentials("books")).unwrap()).await;
    let client = ClientTls::new(mesh.credentials("web")).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = client.connect_transport(&name("books"), tcp).await.unwrap();
    tls.write_all(b"bytes").await.unwrap();
    let mut echoed = Vec::new();
    tls.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"bytes");
    let (peer, alpn) = server.await.unwrap().unwrap();
    assert_eq!(peer, Some(name("web")));
    assert_eq!(alpn.as_deref(), Some(conduit_tls::ALPN_TRANSPORT));
}

#[tokio::test]
async fn a_server_with_the_wrong_identity_is_refused() {
    let mesh = mesh();
    let (addr, server) = serve_once(ServerTls::new(mesh.credentials("authors")).unwrap()).await;
    let client = ClientTls::new(mesh.credentials("web")).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = client.connect(&name("books"), true, tcp).await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn a_server_from_another_mesh_is_refused() {
    let ours = mesh();
    let theirs = mesh();
    let (addr, _server) = serve_once(ServerTls::new(theirs.credentials("books")).unwrap()).await;
    let client = ClientTls::new(ours.credentials("web")).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = client.connect(&name("books"), true, tcp).await.unwrap_err();
    // Both meshes name their anchors alike, so the chain is found and its signature fails.
    let err = err.to_string();
    assert!(
        err.contains("BadSignature") || err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused() {
    let mesh = mesh();
    // A server that kept its certificate past expiry: signed two hours ago for one hour.
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec![name("books").to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let signed = mesh
        .issuer
        .certify(
            &name("books"),
            "spiffe://x/y",
            csr.der(),
            Duration::from_secs(3600),
            SystemTime::now() - Duration::from_secs(7200),
        )
        .unwrap();
    let mut chain = vec![CertificateDer::from(signed.leaf)];
    chain.extend(signed.intermediates.into_iter().map(CertificateDer::from));
    let config = rustls::ServerConfig::builder_with_provider(conduit_identity::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            chain,
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = tokio_rustls::TlsAcceptor::from(Arc::new(config))
            .accept(tcp)
            .await;
    });

    let client = ClientTls::new(mesh.credentials("web")).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = client.connect(&name("books"), true, tcp).await.unwrap_err();
    assert!(err.to_string().contains("certificate expired"), "{err}");
    let _ = mesh.anchor;
}

#[tokio::test]
async fn a_client_hello_is_read_without_being_consumed_and_names_its_server() {
    let mesh = mesh();
    let client = ClientTls::new(mesh.credentials("web")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let _ = client.connect(&name("books"), true, tcp).await;
    });
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut hello = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = loop {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client sent a whole hello");
        hello.extend_from_slice(&buf[..n]);
        if let Some(found) = client_hello(&hello) {
            break found;
        }
    };
    assert_eq!(
        complete,
        ClientHello::Tls {
            server_name: Some(name("books").to_string())
        }
    );
    // Every proper prefix is undecided, never a wrong answer.
    for end in 1..hello.len() {
        assert_eq!(client_hello(&hello[..end]), None, "prefix of {end} bytes");
    }
    assert_eq!(
        client_hello(b"GET / HTTP/1.1\r\n"),
        Some(ClientHello::NotTls)
    );
    assert_eq!(client_hello(b"\x16\x01"), Some(ClientHello::NotTls));
    assert_eq!(
        client_hello(&[0x16, 3, 1, 0, 4, 0xff, 0xff, 0xff, 0xff]),
        Some(ClientHello::NotTls)
    );
}
