//! A real Prometheus scrapes a running proxy with `deploy/prometheus/prometheus.yml`'s
//! relabelling, and answers queries of `request_total` and of every expression in the
//! Grafana dashboard (`deploy/grafana/conduit.json`) through its HTTP API.
//!
//! Debian's Prometheus is built without Kubernetes discovery, so the test gives the proxy's
//! job the same `__meta_kubernetes_*` labels through file discovery: the relabelling that
//! runs is the shipped one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use conduit_app_integration::*;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
        .join(path)
}

/// The shipped configuration, with the proxy job discovering `targets` from a file and
/// scraping every second; the controller's job goes (there is no controller to scrape).
fn test_config(targets: &Path) -> String {
    let text = std::fs::read_to_string(repo_file("deploy/prometheus/prometheus.yml")).unwrap();
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    config["global"]["scrape_interval"] = "1s".into();
    let jobs = config["scrape_configs"].as_sequence_mut().unwrap();
    jobs.retain(|j| j["job_name"] == "conduit-proxy");
    let job = jobs[0].as_mapping_mut().unwrap();
    assert!(job.remove("kubernetes_sd_configs").is_some());
    job.insert(
        "file_sd_configs".into(),
        serde_yaml_ng::from_str(&format!(
            "[{{files: [{:?}], refresh_interval: 1s}}]",
            targets.display()
        ))
        .unwrap(),
    );
    serde_yaml_ng::to_string(&config).unwrap()
}

/// A query through Prometheus's HTTP API; the `data.result` of a successful answer.
async fn query(prometheus: SocketAddr, promql: &str) -> Result<Vec<serde_json::Value>, String> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", promql)
        .finish();
    let mut client = http1_client(prometheus).await;
    let req = http::Request::post("/api/v1/query")
        .header("host", prometheus.to_string())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::<Bytes>::from(body))
        .unwrap();
    let rsp = bounded(client.send_request(req))
        .await
        .map_err(|e| e.to_string())?;
    let bytes = rsp.into_body().collect().await.unwrap().to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if answer["status"] != "success" {
        return Err(answer.to_string());
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The value of a one-series instant vector.
fn value(result: &[serde_json::Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_proxy_and_answers_the_dashboards_queries() {
    let Some(prometheus_bin) = require_tool("prometheus", "scrapes a proxy end to end") else {
        return;
    };
    let Some(promtool) = require_tool("promtool", "checks the scrape configuration") else {
        return;
    };
    let (app, _) = hello_server("ok").await;
    let proxy = TestProxy::spawn(config(&[(
        "CONDUIT_PROXY_INBOUND_FORWARD_ADDR",
        &app.to_string(),
    )]))
    .await;
    for _ in 0..5 {
        let rsp = get_via(proxy.inbound, "web.demo.svc.cluster.local:7000", "/").await;
        assert_eq!(body_string(rsp).await, "ok");
    }

    let dir = std::env::temp_dir().join(format!("conduit-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // What Kubernetes discovery would say of a Deployment `web`'s pod in namespace demo.
    let targets = dir.join("targets.json");
    let target = serde_json::json!([{
        "targets": [proxy.admin.to_string()],
        "labels": {
            "__meta_kubernetes_pod_container_port_name": "conduit-admin",
            "__meta_kubernetes_namespace": "demo",
            "__meta_kubernetes_pod_name": "web-5d4f9c7b8-x2x7q",
            "__meta_kubernetes_pod_controller_kind": "ReplicaSet",
            "__meta_kubernetes_pod_controller_name": "web-5d4f9c7b8",
        },
    }]);
    std::fs::write(&targets, target.to_string()).unwrap();
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, test_config(&targets)).unwrap();
    let check = Command::new(&promtool)
        .arg("check")
        .arg("config")
        .arg(&config_file)
        .output()
        .await
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut server = Command::new(prometheus_bin)
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={port}"))
        .arg("--log.level=warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(port).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "Prometheus never listened on {port}"
        );
        assert!(server.try_wait().unwrap().is_none(), "Prometheus exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Scraped, and labelled as the shipped relabelling says: the Deployment's name.
    let inbound = r#"sum(request_total{direction="inbound", namespace="demo", workload="web", pod="web-5d4f9c7b8-x2x7q"})"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(result) = query(port, inbound).await {
            if value(&result) == Some(5.0) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the 5 requests"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every dashboard expression is valid PromQL over these series, and the rates have data
    // once two scrapes have seen traffic.
    for _ in 0..5 {
        let rsp = get_via(proxy.inbound, "web.demo.svc.cluster.local:7000", "/").await;
        body_string(rsp).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/grafana/conduit.json")).unwrap(),
    )
    .unwrap();
    let mut with_data = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$namespace", ".*")
                .replace("$workload", ".*")
                .replace("$__rate_interval", "1m");
            let result = query(port, &expr)
                .await
                .unwrap_or_else(|e| panic!("{}: {expr}: {e}", panel["title"]));
            if !result.is_empty() {
                with_data += 1;
            }
        }
    }
    // Success rate, requests/s, three percentiles, the mTLS share (0 here), open connections
    // and memory; edges and policy refusals have no data without a controller.
    assert!(with_data >= 6, "{with_data} expressions had data");
    let rps = query(
        port,
        r#"sum by (workload) (rate(request_total{direction="inbound", namespace="demo"}[1m]))"#,
    )
    .await
    .unwrap();
    assert!(value(&rps).unwrap() > 0.0, "{rps:?}");

    server.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
