//! `conduit install`: the control plane's Kubernetes manifests, on standard output for
//! `kubectl apply -f -`.
//!
//! Every object is built from `k8s-openapi`'s types, so each field is one the Kubernetes
//! schema has, with the type it has there. What it writes:
//!
//! - the `conduit` namespace and the CRDs (`ServiceProfile`, `Server`, `AuthorizationPolicy`);
//! - the controller's service account `conduit-controller` (its identity is
//!   `conduit-controller.<ns>.serviceaccount.identity.<ns>.<trust-domain>`), a ClusterRole to
//!   watch Services, EndpointSlices, Pods and Conduit's kinds and to create TokenReviews,
//!   and a Role to read only its issuer Secret;
//! - the issuer Secret `conduit-identity-issuer` (`kubernetes.io/tls` with `ca.crt`), from
//!   the files given or, when none are, a trust anchor and issuer made here; the trust
//!   anchors also go in the ConfigMap `conduit-identity-trust-roots` for proxies to trust;
//! - the controller's Deployment and Service (gRPC 8086, admin 9990, dashboard 8084), with
//!   Kubernetes discovery, TokenReviews, and the issuer read from its Secret through the API.

use conduit_control_ca::{generate, Issuer};
use conduit_identity::Domain;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, HTTPGetAction, Namespace, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Secret, SecurityContext, Service, ServiceAccount,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The controller's name: its Deployment, Service and service account.
pub const CONTROLLER: &str = "conduit-controller";
/// The Secret holding the issuer.
pub const ISSUER_SECRET: &str = "conduit-identity-issuer";
/// The ConfigMap holding the trust anchors.
pub const TRUST_ROOTS: &str = "conduit-identity-trust-roots";

/// The controller's listeners: container port name, Service port name, port.
const LISTENERS: [(&str, &str, i32); 3] = [
    ("grpc", "grpc", 8086),
    ("conduit-ctl-admin", "admin", 9990),
    ("dashboard", "dashboard", 8084),
];

/// What to install.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// The control plane's namespace (part of every identity name).
    pub namespace: String,
    /// The trust domain.
    pub trust_domain: String,
    /// The controller's image.
    pub image: String,
    /// The issuer's files: trust anchors, issuer certificate, issuer key. `None` makes new ones.
    pub issuer: Option<[PathBuf; 3]>,
    /// How long generated anchors and issuers are valid.
    pub valid: Duration,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            namespace: "conduit".into(),
            trust_domain: "cluster.local".into(),
            image: format!(
                "ghcr.io/conduit-mesh/controller:v{}",
                env!("CARGO_PKG_VERSION")
            ),
            issuer: None,
            valid: Duration::from_secs(365 * 86_400),
        }
    }
}

/// The manifests, as one multi-document YAML stream; an issuer that does not load (or does
/// not chain to its anchors) is refused with the reason.
pub fn manifests(options: &InstallOptions) -> Result<String, String> {
    let domain = Domain {
        control_namespace: options.namespace.clone(),
        trust_domain: options.trust_domain.clone(),
    };
    let (anchors, cert, key) = match &options.issuer {
        Some([anchors, cert, key]) => {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
            };
            (read(anchors)?, read(cert)?, read(key)?)
        }
        None => {
            let anchor =
                generate::trust_anchor(&domain, options.valid).map_err(|e| e.to_string())?;
            let issuer =
                generate::issuer(&anchor, &domain, options.valid).map_err(|e| e.to_string())?;
            (anchor.cert_pem, issuer.cert_pem, issuer.key_pem)
        }
    };
    // The controller refuses at start-up what would not load: refuse it here, sooner.
    Issuer::from_pem(&anchors, &cert, &key).map_err(|e| format!("the issuer: {e}"))?;

    let ns = options.namespace.as_str();
    let mut docs = vec![yaml(&Namespace {
        metadata: meta(ns, None),
        ..Default::default()
    })?];
    // The CRDs' stream without its "generated" header.
    let crds = conduit_control_k8s::crd::crds_yaml().map_err(|e| e.to_string())?;
    docs.push(match crds.split_once("---\n") {
        Some((_, rest)) => rest.to_string(),
        None => crds,
    });
    docs.push(yaml(&ServiceAccount {
        metadata: meta(CONTROLLER, Some(ns)),
        ..Default::default()
    })?);
    docs.push(yaml(&cluster_role(ns))?);
    docs.push(yaml(&ClusterRoleBinding {
        metadata: meta(&format!("{CONTROLLER}-{ns}"), None),
        role_ref: role_ref("ClusterRole", &format!("{CONTROLLER}-{ns}")),
        subjects: Some(vec![controller_subject(ns)]),
    })?);
    docs.push(yaml(&Role {
        metadata: meta(CONTROLLER, Some(ns)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(vec![ISSUER_SECRET.into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
    })?);
    docs.push(yaml(&RoleBinding {
        metadata: meta(CONTROLLER, Some(ns)),
        role_ref: role_ref("Role", CONTROLLER),
        subjects: Some(vec![controller_subject(ns)]),
    })?);
    docs.push(yaml(&issuer_secret(ns, &anchors, &cert, &key))?);
    docs.push(yaml(&ConfigMap {
        metadata: meta(TRUST_ROOTS, Some(ns)),
        data: Some(BTreeMap::from([("ca-bundle.crt".into(), anchors)])),
        ..Default::default()
    })?);
    docs.push(yaml(&controller_deployment(options))?);
    docs.push(yaml(&controller_service(ns))?);
    Ok(docs.join("---\n"))
}

fn yaml<T: serde::Serialize>(object: &T) -> Result<String, String> {
    serde_yaml_ng::to_string(object).map_err(|e| e.to_string())
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), CONTROLLER.into()),
        ("app.kubernetes.io/part-of".into(), "conduit".into()),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/part-of".into(),
            "conduit".into(),
        )])),
        ..Default::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn controller_subject(ns: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: CONTROLLER.into(),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

/// What the controller's watchers and token reviews need, and nothing more.
fn cluster_role(ns: &str) -> ClusterRole {
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    let watch = ["get", "list", "watch"];
    ClusterRole {
        metadata: meta(&format!("{CONTROLLER}-{ns}"), None),
        rules: Some(vec![
            rule("", &["services", "pods"], &watch),
            rule("discovery.k8s.io", &["endpointslices"], &watch),
            rule("conduit.io", &["serviceprofiles"], &watch),
            rule(
                "policy.conduit.io",
                &["servers", "authorizationpolicies"],
                &watch,
            ),
            rule("authentication.k8s.io", &["tokenreviews"], &["create"]),
        ]),
        ..Default::default()
    }
}

fn issuer_secret(ns: &str, anchors: &str, cert: &str, key: &str) -> Secret {
    let data = [
        (conduit_control_k8s::ANCHORS_KEY, anchors),
        (conduit_control_k8s::CERT_KEY, cert),
        (conduit_control_k8s::KEY_KEY, key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: meta(ISSUER_SECRET, Some(ns)),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn controller_deployment(options: &InstallOptions) -> Deployment {
    let ns = options.namespace.as_str();
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("conduit-ctl-admin".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let args = [
        "--discovery=kubernetes".to_string(),
        format!("--controller-namespace={ns}"),
        format!("--trust-domain={}", options.trust_domain),
        "--identity-tokens=kubernetes".into(),
        format!("--identity-issuer-secret={ns}/{ISSUER_SECRET}"),
    ];
    let container = Container {
        name: "controller".into(),
        image: Some(options.image.clone()),
        args: Some(args.to_vec()),
        ports: Some(
            LISTENERS
                .iter()
                .map(|(name, _, port)| ContainerPort {
                    name: Some((*name).into()),
                    container_port: *port,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        readiness_probe: Some(probe("/ready")),
        liveness_probe: Some(probe("/live")),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("50Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("250Mi".into()),
            )])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(2103),
            ..Default::default()
        }),
        ..Default::default()
    };
    Deployment {
        metadata: ObjectMeta {
            labels: Some(labels()),
            ..meta(CONTROLLER, Some(ns))
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(CONTROLLER.into()),
                    containers: vec![container],
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn controller_service(ns: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            labels: Some(labels()),
            ..meta(CONTROLLER, Some(ns))
        },
        spec: Some(ServiceSpec {
            selector: Some(labels()),
            ports: Some(
                LISTENERS
                    .iter()
                    .map(|(_, name, port)| ServicePort {
                        name: Some((*name).into()),
                        port: *port,
                        target_port: Some(IntOrString::Int(*port)),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    fn documents(text: &str) -> Vec<Value> {
        serde_yaml_ng::Deserializer::from_str(text)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect()
    }

    /// Reads `doc` as `T` and writes it back: a field the schema does not have, or of
    /// another type, does not survive the trip.
    fn typed<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
        let object: T = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(
            &serde_json::to_value(&object).unwrap(),
            doc,
            "not as the schema has it"
        );
        object
    }

    fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
        docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    #[test]
    fn every_object_is_as_kubernetes_types_it_and_the_generated_issuer_loads() {
        let text = manifests(&InstallOptions::default()).unwrap();
        let docs = documents(&text);
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "CustomResourceDefinition",
                "CustomResourceDefinition",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Secret",
                "ConfigMap",
                "Deployment",
                "Service"
            ]
        );
        for doc in &docs {
            match doc["kind"].as_str().unwrap() {
                "Namespace" => drop(typed::<Namespace>(doc)),
                "CustomResourceDefinition" => drop(typed::<
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
                >(doc)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
                "ClusterRole" => drop(typed::<ClusterRole>(doc)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc)),
                "Role" => drop(typed::<Role>(doc)),
                "RoleBinding" => drop(typed::<RoleBinding>(doc)),
                "Secret" => drop(typed::<Secret>(doc)),
                "ConfigMap" => drop(typed::<ConfigMap>(doc)),
                "Deployment" => drop(typed::<Deployment>(doc)),
                "Service" => drop(typed::<Service>(doc)),
                other => panic!("{other}"),
            }
        }

        // The Secret holds an issuer the controller loads; proxies trust the same anchors.
        let secret: Secret = typed(of_kind(&docs, "Secret")[0]);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.data.unwrap();
        let pem = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        let issuer = Issuer::from_pem(&pem("ca.crt"), &pem("tls.crt"), &pem("tls.key")).unwrap();
        let days = issuer
            .info()
            .not_after
            .duration_since(std::time::SystemTime::now())
            .unwrap()
            .as_secs()
            / 86_400;
        assert_eq!(days, 364);
        let roots: ConfigMap = typed(of_kind(&docs, "ConfigMap")[0]);
        assert_eq!(roots.data.unwrap()["ca-bundle.crt"], pem("ca.crt"));

        // The controller's own command line takes the Deployment's arguments.
        let deployment: Deployment = typed(of_kind(&docs, "Deployment")[0]);
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some(CONTROLLER));
        let container = &pod.containers[0];
        let mut argv = vec!["conduit-controller".to_string()];
        argv.extend(container.args.clone().unwrap());
        let args = conduit_app_controller::Args::try_parse_from(argv).unwrap();
        assert_eq!(
            args.discovery,
            conduit_app_controller::Discovery::Kubernetes
        );
        assert_eq!(
            args.identity_issuer_secret,
            Some(conduit_app_controller::ObjectRef {
                namespace: "conduit".into(),
                name: ISSUER_SECRET.into()
            })
        );
        // Its listeners are the ports the Service and Prometheus's scrape config name.
        let ports: Vec<(String, i32)> = container
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.container_port))
            .collect();
        assert!(ports.contains(&("grpc".into(), args.destination_addr.port().into())));
        assert!(ports.contains(&("conduit-ctl-admin".into(), args.admin_addr.port().into())));
        assert!(ports.contains(&("dashboard".into(), args.dashboard_addr.port().into())));
    }

    #[test]
    fn the_roles_grant_what_the_controller_reads_and_only_its_own_secret() {
        let docs = documents(&manifests(&InstallOptions::default()).unwrap());
        let role: ClusterRole = typed(of_kind(&docs, "ClusterRole")[0]);
        let grants = |group: &str, resource: &str, verb: &str| {
            role.rules.iter().flatten().any(|r| {
                r.api_groups.iter().flatten().any(|g| g == group)
                    && r.resources.iter().flatten().any(|x| x == resource)
                    && r.verbs.iter().any(|v| v == verb)
            })
        };
        for (group, resource) in [
            ("", "services"),
            ("", "pods"),
            ("discovery.k8s.io", "endpointslices"),
            ("conduit.io", "serviceprofiles"),
            ("policy.conduit.io", "servers"),
            ("policy.conduit.io", "authorizationpolicies"),
        ] {
            assert!(
                grants(group, resource, "list") && grants(group, resource, "watch"),
                "{resource}"
            );
        }
        assert!(grants("authentication.k8s.io", "tokenreviews", "create"));
        assert!(!grants("", "secrets", "get"), "no Secret cluster-wide");
        let secrets: Role = typed(of_kind(&docs, "Role")[0]);
        let rule = &secrets.rules.unwrap()[0];
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&[ISSUER_SECRET.to_string()][..])
        );
        assert_eq!(rule.verbs, ["get"]);
    }

    #[test]
    fn given_issuer_files_are_used_and_a_mismatched_issuer_is_refused() {
        let dir = std::env::temp_dir().join(format!("conduit-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let domain = Domain::default();
        let year = Duration::from_secs(365 * 86_400);
        let anchor = generate::trust_anchor(&domain, year).unwrap();
        let other = generate::trust_anchor(&domain, year).unwrap();
        let issuer = generate::issuer(&anchor, &domain, year).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let files = [
            write("ca.crt", &anchor.cert_pem),
            write("tls.crt", &issuer.cert_pem),
            write("tls.key", &issuer.key_pem),
        ];
        let options = InstallOptions {
            issuer: Some(files.clone()),
            ..Default::default()
        };
        let docs = documents(&manifests(&options).unwrap());
        let secret: Secret = typed(of_kind(&docs, "Secret")[0]);
        assert_eq!(
            secret.data.unwrap()["tls.crt"].0,
            issuer.cert_pem.as_bytes()
        );

        let wrong = InstallOptions {
            issuer: Some([
                write("other.crt", &other.cert_pem),
                files[1].clone(),
                files[2].clone(),
            ]),
            ..Default::default()
        };
        let err = manifests(&wrong).unwrap_err();
        assert!(err.contains("not signed by any trust anchor"), "{err}");
        let missing = InstallOptions {
            issuer: Some([dir.join("nope"), files[1].clone(), files[2].clone()]),
            ..Default::default()
        };
        assert!(manifests(&missing).unwrap_err().contains("nope"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
