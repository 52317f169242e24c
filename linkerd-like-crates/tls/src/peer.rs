use conduit_identity::Name;

/// The identity in a verified peer's certificate: its first DNS SAN that is a valid identity
/// name. `None` when the peer sent no certificate.
pub fn peer_identity(conn: &rustls::CommonState) -> Option<Name> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let sans = cert.subject_alternative_name().ok()??;
    sans.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Name::parse(dns).ok(),
        _ => None,
    })
}
