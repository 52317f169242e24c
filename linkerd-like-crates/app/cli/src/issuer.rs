//! `conduit issuer generate DIR` and `conduit token`: the identity service's files for running
//! without a cluster (and for `conduit install` to start from).

use conduit_control_ca::{generate, LocalTokens};
use conduit_identity::{Domain, Workload};
use std::path::Path;
use std::time::Duration;

/// Writes a new trust anchor and issuer into `dir` as the controller reads them
/// (`ca.crt`, `tls.crt`, `tls.key`), and a local token key (`token.key`). Returns what was
/// written, for the user.
pub fn generate_into(dir: &Path, domain: &Domain, valid: Duration) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let anchor = generate::trust_anchor(domain, valid).map_err(|e| err(&e))?;
    let issuer = generate::issuer(&anchor, domain, valid).map_err(|e| err(&e))?;
    let key = LocalTokens::generate_key().map_err(|e| err(&e))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files = [
        ("ca.crt", anchor.cert_pem.as_str()),
        ("tls.crt", issuer.cert_pem.as_str()),
        ("tls.key", issuer.key_pem.as_str()),
        ("token.key", key.as_str()),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        if path.exists() {
            return Err(format!(
                "{} exists: not overwriting an issuer",
                path.display()
            ));
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(format!(
        "wrote {0}/ca.crt (trust anchor), {0}/tls.crt and {0}/tls.key (issuer), {0}/token.key (local token key)\n",
        dir.display()
    ))
}

/// A local token for `workload` (`<namespace>/<service-account>`), keyed by the key file.
pub fn token(key_file: &Path, workload: &str) -> Result<String, String> {
    let key =
        std::fs::read_to_string(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let tokens = LocalTokens::from_key(&key).map_err(|e| e.to_string())?;
    let (ns, sa) = workload
        .split_once('/')
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty())
        .ok_or_else(|| format!("{workload:?}: write <namespace>/<service-account>"))?;
    Ok(tokens.issue(&Workload {
        service_account: sa.into(),
        namespace: ns.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_make_a_valid_issuer_and_tokens() {
        let dir = std::env::temp_dir().join(format!("conduit-issuer-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        generate_into(&dir, &Domain::default(), Duration::from_secs(86_400)).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        conduit_control_ca::Issuer::from_pem(&read("ca.crt"), &read("tls.crt"), &read("tls.key"))
            .unwrap();
        let t = token(&dir.join("token.key"), "demo/web").unwrap();
        let tokens = LocalTokens::from_key(&read("token.key")).unwrap();
        assert_eq!(tokens.check(t.as_bytes()).unwrap().service_account, "web");
        assert!(
            generate_into(&dir, &Domain::default(), Duration::from_secs(1))
                .unwrap_err()
                .contains("exists")
        );
        assert!(token(&dir.join("token.key"), "web").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
