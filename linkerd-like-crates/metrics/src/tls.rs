use crate::prom::escape_label_value;
use std::sync::Arc;

/// What a connection's TLS says, as the `tls` label and, for mutual TLS, the peer's identity.
///
/// | value | labels |
/// |---|---|
/// | [`TlsLabel::Disabled`] | `tls="disabled"`: this proxy has no identity |
/// | [`TlsLabel::NoIdentity`] | `tls="no_identity"`: plaintext, though this proxy could do mTLS |
/// | [`TlsLabel::Client`] | `tls="true",client_id="..."`: inbound mTLS (no `client_id` when the client sent no certificate) |
/// | [`TlsLabel::Server`] | `tls="true",server_id="..."`: outbound mTLS to that identity |
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum TlsLabel {
    /// No identity, so no TLS.
    #[default]
    Disabled,
    /// Plaintext.
    NoIdentity,
    /// Terminated inbound, from this client.
    Client(Option<Arc<str>>),
    /// Originated outbound, to this server.
    Server(Arc<str>),
}

impl TlsLabel {
    /// Writes `tls="..."` and the identity label, if any.
    pub fn encode(&self, out: &mut String) {
        let (tls, id) = match self {
            TlsLabel::Disabled => ("disabled", None),
            TlsLabel::NoIdentity => ("no_identity", None),
            TlsLabel::Client(id) => ("true", id.as_ref().map(|id| ("client_id", id))),
            TlsLabel::Server(id) => ("true", Some(("server_id", id))),
        };
        out.push_str("tls=\"");
        out.push_str(tls);
        out.push('"');
        if let Some((name, id)) = id {
            out.push(',');
            out.push_str(name);
            out.push_str("=\"");
            escape_label_value(id, out);
            out.push('"');
        }
    }
}

/// The mTLS identity of the server a response came from. A router puts it in the
/// response's extensions; the response metrics then say `tls="true",server_id="..."`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerIdLabel(pub Arc<str>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_peer_identity() {
        let enc = |l: TlsLabel| {
            let mut out = String::new();
            l.encode(&mut out);
            out
        };
        assert_eq!(enc(TlsLabel::Disabled), r#"tls="disabled""#);
        assert_eq!(enc(TlsLabel::NoIdentity), r#"tls="no_identity""#);
        assert_eq!(enc(TlsLabel::Client(None)), r#"tls="true""#);
        assert_eq!(
            enc(TlsLabel::Client(Some("web.demo".into()))),
            r#"tls="true",client_id="web.demo""#
        );
        assert_eq!(
            enc(TlsLabel::Server("books.demo".into())),
            r#"tls="true",server_id="books.demo""#
        );
    }
}
