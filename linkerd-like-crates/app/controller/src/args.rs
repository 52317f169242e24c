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
            cluster_domain: "cluster.local".into(),
            controller_namespace: "conduit".into(),
            trust_domain: "cluster.local".into(),
            log: "info".into(),
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
        let err = Args::try_parse_from(["c", "--admin-addr", "nine"]).unwrap_err();
        assert!(err.to_string().contains("--admin-addr"), "{err}");
    }
}
