use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the controller learns about services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// Watchers on the Kubernetes API.
    Kubernetes,
    /// A watched YAML registry.
    File(PathBuf),
}

impl std::str::FromStr for Discovery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "kubernetes" => Ok(Discovery::Kubernetes),
            Some(("file", path)) if !path.is_empty() => Ok(Discovery::File(path.into())),
            _ => Err(format!(
                "{s:?} is not a discovery source: use `kubernetes` or `file:PATH`"
            )),
        }
    }
}

/// How the identity service checks the tokens that come with CSRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// TokenReviews of projected service-account tokens.
    Kubernetes,
    /// Local workload tokens keyed by the file at this path.
    Local(PathBuf),
}

impl std::str::FromStr for Tokens {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "kubernetes" => Ok(Tokens::Kubernetes),
            Some(("local", path)) if !path.is_empty() => Ok(Tokens::Local(path.into())),
            _ => Err(format!(
                "{s:?} is not a token verifier: use `kubernetes` or `local:KEY-FILE`"
            )),
        }
    }
}

/// A Kubernetes object by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::str::FromStr for ObjectRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let dns_label = |p: &str| {
            !p.is_empty()
                && p.len() <= 253
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        match s.split_once('/') {
            Some((namespace, name)) if dns_label(namespace) && dns_label(name) => Ok(ObjectRef {
                namespace: namespace.into(),
                name: name.into(),
            }),
            _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
        }
    }
}

/// The controller's command line.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "conduit-controller", version, about = "The Conduit controller")]
pub struct Args {
    /// Where services come from: `kubernetes`, or `file:PATH` for a YAML registry.
    #[arg(
        long,
        default_value = "kubernetes",
        env = "CONDUIT_CONTROLLER_DISCOVERY"
    )]
    pub discovery: Discovery,

    /// The gRPC APIs' address.
    #[arg(
        long,
        default_value = "0.0.0.0:8086",
        env = "CONDUIT_CONTROLLER_GRPC_ADDR"
    )]
    pub destination_addr: SocketAddr,

    /// The admin server's address.
    #[arg(
        long,
        default_value = "0.0.0.0:9990",
        env = "CONDUIT_CONTROLLER_ADMIN_ADDR"
    )]
    pub admin_addr: SocketAddr,

    /// The web dashboard's address (no login of its own: reach it by port-forward).
    #[arg(
        long,
        default_value = "0.0.0.0:8084",
        env = "CONDUIT_CONTROLLER_DASHBOARD_ADDR"
    )]
    pub dashboard_addr: SocketAddr,

    /// The cluster's DNS domain.
    #[arg(
        long,
        default_value = "cluster.local",
        env = "CONDUIT_CONTROLLER_CLUSTER_DOMAIN"
    )]
    pub cluster_domain: String,

    /// The namespace the controller runs in (part of every identity name).
    #[arg(long, default_value = "conduit", env = "CONDUIT_CONTROLLER_NAMESPACE")]
    pub controller_namespace: String,

    /// The trust domain of identities.
    #[arg(
        long,
        default_value = "cluster.local",
        env = "CONDUIT_CONTROLLER_TRUST_DOMAIN"
    )]
    pub trust_domain: String,

    /// The identity service's issuer: a directory holding `ca.crt` (the trust anchors),
    /// `tls.crt` (the issuer certificate, then any intermediates) and `tls.key` (its PKCS#8
    /// key), as a mounted `kubernetes.io/tls` Secret does. Reloaded when they change. Without
    /// it the identity service is off.
    #[arg(long, env = "CONDUIT_CONTROLLER_IDENTITY_DIR")]
    pub identity_dir: Option<PathBuf>,

    /// The identity service's issuer, read through the Kubernetes API from this Secret
    /// (`NAMESPACE/NAME`, type `kubernetes.io/tls` with `ca.crt`, as `conduit install`
    /// writes it), reloaded when it changes; instead of --identity-dir. Needs Kubernetes
    /// discovery, and RBAC to get that Secret.
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_IDENTITY_ISSUER_SECRET",
        conflicts_with = "identity_dir"
    )]
    pub identity_issuer_secret: Option<ObjectRef>,

    /// How tokens are checked: `kubernetes` (TokenReview; the default with Kubernetes
    /// discovery) or `local:KEY-FILE`.
    #[arg(long, env = "CONDUIT_CONTROLLER_IDENTITY_TOKENS")]
    pub identity_tokens: Option<Tokens>,

    /// How long issued certificates are valid.
    #[arg(
        long,
        default_value = "24h",
        value_parser = humantime::parse_duration,
        env = "CONDUIT_CONTROLLER_IDENTITY_LIFETIME"
    )]
    pub identity_lifetime: std::time::Duration,

    /// What inbound ports no Server describes allow, unless the pod says otherwise:
    /// all-unauthenticated, all-authenticated, cluster-unauthenticated, cluster-authenticated
    /// or deny.
    #[arg(
        long,
        default_value = "all-unauthenticated",
        env = "CONDUIT_CONTROLLER_DEFAULT_INBOUND_POLICY",
        value_parser = |s: &str| s.parse::<conduit_policy::DefaultPolicy>().map_err(|e| e.0)
    )]
    pub default_inbound_policy: conduit_policy::DefaultPolicy,

    /// The cluster's pod and node networks, for the cluster-* default policies.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16",
        env = "CONDUIT_CONTROLLER_CLUSTER_NETWORKS",
        value_parser = |s: &str| conduit_policy::parse_net(s).map_err(|e| e.0)
    )]
    pub cluster_networks: Vec<ipnet::IpNet>,

    /// How often every meshed proxy's golden metrics are pulled for the Stats API.
    #[arg(
        long,
        default_value = "10s",
        value_parser = humantime::parse_duration,
        env = "CONDUIT_CONTROLLER_STATS_INTERVAL"
    )]
    pub stats_interval: std::time::Duration,

    /// The log filter (`info`, `warn,conduit=debug`).
    #[arg(long, default_value = "info", env = "CONDUIT_CONTROLLER_LOG")]
    pub log: String,
}

impl Args {
    /// The defaults, with discovery from the registry at `path` and the given listeners:
    /// for embedding the controller (the demo, tests).
    pub fn with_registry(
        path: PathBuf,
        destination_addr: SocketAddr,
        admin_addr: SocketAddr,
    ) -> Self {
        Args {
            discovery: Discovery::File(path),
            destination_addr,
            admin_addr,
            dashboard_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster_domain: "cluster.local".into(),
            controller_namespace: "conduit".into(),
            trust_domain: "cluster.local".into(),
            identity_dir: None,
            identity_issuer_secret: None,
            identity_tokens: None,
            identity_lifetime: std::time::Duration::from_secs(24 * 3600),
            default_inbound_policy: conduit_policy::DefaultPolicy::AllUnauthenticated,
            cluster_networks: [
                "10.0.0.0/8",
                "100.64.0.0/10",
                "172.16.0.0/12",
                "192.168.0.0/16",
            ]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
            stats_interval: std::time::Duration::from_secs(10),
            log: "info".into(),
        }
    }

    /// Turns the identity service on, with the issuer in `dir` and local tokens keyed by
    /// `token_key`.
    pub fn with_identity(mut self, dir: PathBuf, token_key: PathBuf) -> Self {
        self.identity_dir = Some(dir);
        self.identity_tokens = Some(Tokens::Local(token_key));
        self
    }

    /// The naming of identities.
    pub fn domain(&self) -> conduit_identity::Domain {
        conduit_identity::Domain {
            control_namespace: self.controller_namespace.clone(),
            trust_domain: self.trust_domain.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn discovery_sources_parse_and_bad_ones_say_what_to_use() {
        let args = Args::try_parse_from(["c", "--discovery", "file:/etc/reg.yaml"]).unwrap();
        assert_eq!(args.discovery, Discovery::File("/etc/reg.yaml".into()));
        let args = Args::try_parse_from(["c"]).unwrap();
        assert_eq!(args.discovery, Discovery::Kubernetes);
        let err = Args::try_parse_from(["c", "--discovery", "consul"]).unwrap_err();
        assert!(
            err.to_string().contains("use `kubernetes` or `file:PATH`"),
            "{err}"
        );
        let err = Args::try_parse_from(["c", "--identity-tokens", "jwt"]).unwrap_err();
        assert!(err.to_string().contains("`local:KEY-FILE`"), "{err}");
        let args = Args::try_parse_from(["c", "--identity-tokens", "local:/k"]).unwrap();
        assert_eq!(args.identity_tokens, Some(Tokens::Local("/k".into())));
        let err = Args::try_parse_from(["c", "--default-inbound-policy", "open"]).unwrap_err();
        assert!(err.to_string().contains("cluster-authenticated"), "{err}");
        let args =
            Args::try_parse_from(["c", "--cluster-networks", "10.0.0.0/16,fd00::/8"]).unwrap();
        assert_eq!(args.cluster_networks.len(), 2);
        let err = Args::try_parse_from(["c", "--admin-addr", "nine"]).unwrap_err();
        assert!(err.to_string().contains("--admin-addr"), "{err}");
        let args = Args::try_parse_from([
            "c",
            "--identity-issuer-secret",
            "conduit/conduit-identity-issuer",
        ])
        .unwrap();
        assert_eq!(
            args.identity_issuer_secret,
            Some(ObjectRef {
                namespace: "conduit".into(),
                name: "conduit-identity-issuer".into()
            })
        );
        for bad in ["issuer", "/x", "Conduit/x", "a/b/c"] {
            let err = Args::try_parse_from(["c", "--identity-issuer-secret", bad]).unwrap_err();
            assert!(err.to_string().contains("NAMESPACE/NAME"), "{err}");
        }
        let both = Args::try_parse_from([
            "c",
            "--identity-dir",
            "/d",
            "--identity-issuer-secret",
            "a/b",
        ]);
        assert!(both
            .unwrap_err()
            .to_string()
            .contains("cannot be used with"));
    }
}
