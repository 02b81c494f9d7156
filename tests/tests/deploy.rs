//! deploy/: the manifests parse, every probe container's command line is one
//! the binary's own parser accepts, and the capabilities they grant are
//! exactly the ones the binary checks for at start with those flags. The
//! metrics port is the probe's loopback one behind a kube-rbac-proxy sidecar
//! whose upstream, port, health paths and RBAC agree with the rest. With only
//! those capabilities, `probe serve` runs in a lab node as it would on a node.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use clap::Parser;
use probe_tests::{eventually, free_port, http_get, lab, privileged, probe_bin, Watch};
use probe_user::{cli::Cli, kernel::caps};
use serde_json::Value;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy")).join(file)
}

fn manifest(file: &str) -> Value {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file} does not parse: {e}"))
}

/// The pod spec of a Pod or of a workload's template.
fn pod_spec(m: &Value) -> &Value {
    match m["kind"].as_str() {
        Some("Pod") => &m["spec"],
        _ => &m["spec"]["template"]["spec"],
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The Dockerfile's ENTRYPOINT (exec form).
fn entrypoint() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    serde_json::from_str(&line["ENTRYPOINT ".len()..]).expect("exec form")
}

/// Every document of a multi-document YAML file (separated by `---` lines).
fn manifests(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_yaml_ng::from_str::<Value>(d))
        .filter(|d| !matches!(d, Ok(Value::Null)))
        .map(|d| d.unwrap_or_else(|e| panic!("{file} does not parse: {e}")))
        .collect()
}

const MANIFESTS: [&str; 2] = ["daemonset.yaml", "debug-pod.yaml"];

/// The authenticating proxy in front of the metrics port.
const PROXY: &str = "kube-rbac-proxy";
const PROXY_IMAGE: &str = "quay.io/brancz/kube-rbac-proxy";
/// kube-rbac-proxy flags the manifests may use (its `--help`), so a typo
/// fails here rather than in a crash-looping pod.
const PROXY_FLAGS: [&str; 8] = [
    "--secure-listen-address",
    "--upstream",
    "--ignore-paths",
    "--tls-min-version",
    "--tls-cipher-suites",
    "--tls-cert-file",
    "--tls-private-key-file",
    "--client-ca-file",
];

/// `--name=value` flags of a Go program's argument list.
fn go_flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let prefix = format!("{name}=");
    let hits: Vec<&str> = args
        .iter()
        .filter_map(|a| a.strip_prefix(&prefix))
        .collect();
    assert_eq!(hits.len(), 1, "{name} in {args:?}");
    hits[0]
}

/// The port of an `HOST:PORT` or `[HOST]:PORT` address.
fn port_of(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

#[test]
fn manifests_parse_and_their_command_lines_are_accepted() {
    for file in MANIFESTS {
        let m = manifest(file);
        let spec = pod_spec(&m);
        assert_eq!(spec["hostNetwork"], true, "{file}: the node's namespace");
        let containers = spec["containers"].as_array().unwrap();
        assert!(!containers.is_empty(), "{file}");
        assert_eq!(containers[0]["name"], "probe", "{file}: the probe first");
        let init = spec["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Every container but the proxy runs the probe (the proxy: below).
        for (c, is_init) in containers
            .iter()
            .filter(|c| c["name"] != PROXY)
            .map(|c| (c, false))
            .chain(init.iter().map(|c| (c, true)))
        {
            let command = strings(&c["command"]);
            assert_eq!(command, entrypoint(), "{file}: the image's binary");
            let argv: Vec<String> = std::iter::once("probe".to_string())
                .chain(strings(&c["args"]))
                .collect();
            let cli = Cli::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{file}: {argv:?} rejected:\n{e}"));

            // Capabilities: exactly what the binary checks for these flags.
            let sc = &c["securityContext"];
            let granted: BTreeSet<String> =
                strings(&sc["capabilities"]["add"]).into_iter().collect();
            let needed: BTreeSet<String> = caps::minimal_set(&cli.command.requirements())
                .into_iter()
                .map(String::from)
                .collect();
            assert_eq!(granted, needed, "{file}: capabilities for {argv:?}");
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{file}");
            assert_eq!(sc["privileged"], false, "{file}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{file}");

            // Read-only kernel mounts (the probes' containers).
            let mounts: &[&str] = if is_init {
                &[]
            } else {
                &["/sys/kernel/btf", "/sys/kernel/tracing"]
            };
            for &path in mounts {
                let mount = c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|v| v["mountPath"] == path)
                    .unwrap_or_else(|| panic!("{file}: {path} not mounted"));
                assert_eq!(mount["readOnly"], true, "{file}: {path}");
                let volume = spec["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == mount["name"])
                    .unwrap();
                assert_eq!(volume["hostPath"]["path"], path, "{file}");
            }
            for kind in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    assert!(
                        c["resources"][kind][r].is_string(),
                        "{file}: resources.{kind}.{r}"
                    );
                }
            }
        }
    }
}

#[test]
fn daemonset_serves_metrics_where_it_says() {
    let m = manifest("daemonset.yaml");
    // Leftover tc filters (kernels without TCX) are removed before the probe
    // starts, and can be told from a running probe's (hostPID).
    assert_eq!(
        strings(&pod_spec(&m)["initContainers"][0]["args"]),
        ["cleanup"]
    );
    assert_eq!(pod_spec(&m)["hostPID"], true);
    assert_eq!(m["kind"], "DaemonSet");
    let spec = pod_spec(&m);
    let containers = spec["containers"].as_array().unwrap();
    let c = &containers[0];
    let args = strings(&c["args"]);
    assert_eq!(args[0], "serve");

    // The probe: loopback only, plain HTTP (the proxy does TLS).
    let Cli {
        command: probe_user::cli::Command::Serve(serve),
        ..
    } = Cli::try_parse_from(std::iter::once("probe".to_string()).chain(args.clone())).unwrap()
    else {
        panic!("not serve: {args:?}")
    };
    assert!(
        serve.listen.ip().is_loopback(),
        "the probe must not listen beyond the node: {}",
        serve.listen
    );
    assert!(serve.web_config.is_none());
    // The softirq and NAPI histograms stream by default (paused while NET_RX
    // runs too often to time it cheaply).
    let latency = serve.watch.config().unwrap().latency;
    assert_eq!(latency, probe_user::hooks::latency::LatencyMode::Auto);
    assert!(
        c["ports"].is_null(),
        "with hostNetwork a declared port is a host port: the probe's is loopback only"
    );

    // The proxy: a pinned image, upstream = the probe's port on loopback.
    let proxy = containers
        .iter()
        .find(|c| c["name"] == PROXY)
        .expect("a kube-rbac-proxy sidecar");
    let image = proxy["image"].as_str().unwrap();
    let tag = image
        .strip_prefix(PROXY_IMAGE)
        .and_then(|t| t.strip_prefix(":v"))
        .unwrap_or_else(|| panic!("{image}: {PROXY_IMAGE}:vX.Y.Z"));
    assert!(
        tag.split('.').count() == 3 && tag.split('.').all(|n| n.parse::<u32>().is_ok()),
        "{image}: pin a release tag"
    );
    assert!(proxy["command"].is_null(), "the image's own entrypoint");
    let pargs = strings(&proxy["args"]);
    for a in &pargs {
        let flag = a.split('=').next().unwrap();
        assert!(PROXY_FLAGS.contains(&flag), "{PROXY}: unknown flag {a}");
    }
    assert_eq!(
        go_flag(&pargs, "--upstream"),
        format!("http://127.0.0.1:{}/", serve.listen.port()),
        "the proxy forwards to the probe's --listen"
    );
    // On the node's address (the pod's IP under hostNetwork), from the
    // downward API.
    let secure = go_flag(&pargs, "--secure-listen-address");
    let host = secure.rsplit_once(':').unwrap().0;
    assert_eq!(host, "[$(IP)]", "{secure}");
    let env = proxy["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "IP")
        .expect("env IP");
    let field = env["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap();
    assert!(
        ["status.podIP", "status.hostIP"].contains(&field),
        "{field}"
    );
    let port = port_of(secure);
    assert_eq!(proxy["ports"][0]["containerPort"], port);
    let port_name = proxy["ports"][0]["name"].as_str().unwrap();
    assert_eq!(port_name, "https");
    for (k, v) in [
        ("runAsNonRoot", Value::Bool(true)),
        ("allowPrivilegeEscalation", Value::Bool(false)),
        ("readOnlyRootFilesystem", Value::Bool(true)),
    ] {
        assert_eq!(proxy["securityContext"][k], v, "{PROXY}: {k}");
    }
    assert_eq!(
        strings(&proxy["securityContext"]["capabilities"]["drop"]),
        ["ALL"]
    );
    assert!(proxy["securityContext"]["capabilities"]["add"].is_null());
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                proxy["resources"][kind][r].is_string(),
                "{PROXY}: {kind}.{r}"
            );
        }
    }

    // Prometheus is pointed at the proxy, over TLS.
    let annotations = &m["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/scheme"], "https");
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The kubelet's checks reach the probe directly on loopback (it shares
    // the node's namespace): a hung proxy must not restart the probe. The
    // proxy lets exactly those paths through without a token, never /metrics,
    // and has its own check.
    let ignored: Vec<&str> = go_flag(&pargs, "--ignore-paths").split(',').collect();
    assert!(!ignored.contains(&"/metrics"), "{ignored:?}");
    for (check, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[check]["httpGet"];
        assert_eq!(get["path"], path, "{check}");
        assert_eq!(get["port"], port, "{check}");
        assert_eq!(get["scheme"], "HTTP", "{check}");
        assert_eq!(get["host"], "127.0.0.1", "{check}");
        assert!(ignored.contains(&path), "{path} not in {ignored:?}");
    }
    assert_eq!(
        proxy["livenessProbe"]["tcpSocket"]["port"], port,
        "the proxy's own check"
    );
}

/// rbac.yaml: the ServiceAccount the DaemonSet runs as, allowed what
/// kube-rbac-proxy asks the API server (TokenReview, SubjectAccessReview),
/// and the ClusterRole a scraper needs.
#[test]
fn rbac_matches_the_daemonset() {
    let ds = manifest("daemonset.yaml");
    let spec = pod_spec(&ds);
    let namespace = ds["metadata"]["namespace"].as_str().unwrap();
    let account = spec["serviceAccountName"]
        .as_str()
        .expect("the DaemonSet names its ServiceAccount");
    assert_ne!(spec["automountServiceAccountToken"], false);
    let docs = manifests("rbac.yaml");
    let of = |kind: &str, name: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("rbac.yaml: no {kind} {name}"))
    };
    let sa = of("ServiceAccount", account);
    assert_eq!(sa["metadata"]["namespace"], namespace);

    let has_rule = |role: &Value, group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["apiGroups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g == group))
                && r["resources"]
                    .as_array()
                    .is_some_and(|x| x.iter().any(|x| x == resource))
                && r["verbs"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|v| v == verb))
        })
    };
    let bindings: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding")
        .filter(|b| {
            b["subjects"].as_array().unwrap().iter().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == namespace
            })
        })
        .collect();
    assert!(
        !bindings.is_empty(),
        "nothing bound to {namespace}/{account}"
    );
    let proxy_role = bindings
        .iter()
        .map(|b| {
            assert_eq!(b["roleRef"]["kind"], "ClusterRole");
            assert_eq!(b["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
            of("ClusterRole", b["roleRef"]["name"].as_str().unwrap())
        })
        .find(|r| {
            has_rule(r, "authentication.k8s.io", "tokenreviews", "create")
                && has_rule(r, "authorization.k8s.io", "subjectaccessreviews", "create")
        })
        .expect("a ClusterRole with tokenreviews and subjectaccessreviews create, bound to the ServiceAccount");
    // And nothing more: the token is mounted in the probe's container too.
    assert_eq!(proxy_role["rules"].as_array().unwrap().len(), 2);

    // The scraper's role: get on /metrics, the path the proxy authorizes.
    let reader = of("ClusterRole", "probe-metrics-reader");
    let rules = reader["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| {
        strings(&r["nonResourceURLs"]) == ["/metrics"] && strings(&r["verbs"]) == ["get"]
    }));
}

#[test]
fn dockerfile_is_multi_stage_and_builds_with_the_projects_setup() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    assert!(text.lines().filter(|l| l.starts_with("FROM ")).count() >= 2);
    assert!(
        text.contains("cargo xtask setup"),
        "the project's own set-up"
    );
    assert!(text.contains("COPY --from=build /out/probe /usr/local/bin/probe"));
    // The default command parses too.
    let cmd = text.lines().find(|l| l.starts_with("CMD ")).unwrap();
    let args: Vec<String> = serde_json::from_str(&cmd["CMD ".len()..]).unwrap();
    let argv: Vec<String> = std::iter::once("probe".to_string()).chain(args).collect();
    Cli::try_parse_from(&argv).unwrap();
}

/// The DaemonSet's command line with only the DaemonSet's capabilities, in a
/// lab node's namespace (hostNetwork): it attaches everything and serves
/// /readyz; without CAP_NET_ADMIN it names what is missing and exits 1.
#[test]
fn the_daemonsets_capabilities_are_enough() {
    if !privileged("the_daemonsets_capabilities_are_enough") {
        return;
    }
    let lab = lab();
    let node = lab.node(2);
    let m = manifest("daemonset.yaml");
    let c = &pod_spec(&m)["containers"][0];
    let granted = strings(&c["securityContext"]["capabilities"]["add"]);
    let port = free_port();
    let mut args = strings(&c["args"]);
    let at = args.iter().position(|a| a == "--listen").unwrap() + 1;
    args[at] = format!("127.0.0.1:{port}"); // loopback of the lab node
    let bounding = |caps: &[String]| {
        std::iter::once("-all".to_string())
            .chain(caps.iter().map(|c| format!("+{}", c.to_lowercase())))
            .collect::<Vec<_>>()
            .join(",")
    };
    // The pod's view: the node's network namespace, these capabilities only.
    let run = |caps: &[String], args: &[String]| {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &node.netns, "setpriv", "--bounding-set"])
            .arg(bounding(caps))
            .args(["--inh-caps", "-all", "--"])
            .arg(probe_bin())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let child = run(&granted, &args).spawn().unwrap();
    // Ready within a minute: an emulated guest takes seconds to attach.
    let ready = eventually(Duration::from_secs(60), || {
        lab::in_netns(&node.netns, move || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http_get(port, "/readyz").0 == 200
        })
        .unwrap()
    });
    let metrics = lab::in_netns(&node.netns, move || http_get(port, "/metrics").1).unwrap();
    // SAFETY: our child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(ready, "not ready with {granted:?}: {err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    for stage in [
        r#"stage="nic",iface="eth0""#,
        r#"stage="vxlan",iface="flannel.1""#,
    ] {
        let hook = format!(
            r#"rxprobe_hook_attached{{{stage},hook="{}"}} 1"#,
            probe_tests::tc_hook()
        );
        assert!(metrics.contains(&hook), "{hook} in:\n{metrics}");
    }
    // Every stage this kernel has attached: only the drop stage may be
    // missing, below Linux 5.17 (no drop reasons), and then for that reason.
    let missing: Vec<&str> = err.lines().filter(|l| l.contains("unavailable")).collect();
    let expected_missing = !probe_tests::kernel_has_drop_reasons();
    assert!(
        missing.is_empty()
            || (expected_missing
                && missing.len() == 1
                && missing[0].contains("stage drops")
                && missing[0].contains("Linux >= 5.17")),
        "every stage attached with {granted:?}: {err}"
    );

    let fewer: Vec<String> = granted
        .iter()
        .filter(|c| *c != "NET_ADMIN")
        .cloned()
        .collect();
    let out = run(&fewer, &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing privilege: CAP_NET_ADMIN"), "{err}");

    // The init container, with its own capabilities, removes the tc filters
    // of a probe killed on a kernel without TCX (forced here: legacy tc).
    let init = &pod_spec(&m)["initContainers"][0];
    let init_caps = strings(&init["securityContext"]["capabilities"]["add"]);
    let killed = Watch::start(&["--netns", &node.netns, "--tc-mode", "legacy"]);
    let _ = killed.stop_text(libc::SIGKILL);
    let filters = || {
        let (code, out, _) = probe_output_in(
            &node.netns,
            &["tc", "filter", "show", "dev", "eth0", "ingress"],
        );
        assert_eq!(code, 0);
        out
    };
    assert!(filters().contains("nic_tc"), "left behind: {}", filters());
    let out = run(&init_caps, &strings(&init["args"])).output().unwrap();
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        stdout.matches("removed a leftover tc filter").count(),
        2,
        "{stdout}"
    );
    assert!(!filters().contains("nic_tc"), "{}", filters());
}

/// (exit code, stdout, stderr) of a command run in network namespace `netns`.
fn probe_output_in(netns: &str, argv: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(argv)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Prometheus rules: promtool accepts them, their unit tests (each alert
/// firing and silent, on synthetic series) pass, and the PrometheusRule for
/// prometheus-operator holds the same groups.
#[test]
fn prometheus_rules_check_and_pass_their_tests() {
    let dir = deploy("prometheus");
    for args in [
        vec!["check", "rules", "rules.yaml"],
        vec!["test", "rules", "rules.test.yaml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian's prometheus package; `cargo xtask setup` installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = manifest("prometheus/rules.yaml");
    let operator = manifest("prometheus/prometheusrule.yaml");
    assert_eq!(operator["kind"], "PrometheusRule");
    assert_eq!(operator["spec"]["groups"], rules["groups"]);
    let alerts: Vec<&str> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    let tests = std::fs::read_to_string(dir.join("rules.test.yaml")).unwrap();
    for alert in alerts {
        // Every alert is tested silent (an empty exp_alerts) and firing.
        let cases: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|c| c.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{alert} never tested silent"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_labels:")),
            "{alert} never tested firing"
        );
    }
}

/// The Grafana dashboard: it parses, every panel has queries on the
/// `${datasource}` variable filtered by `$node`, and every metric a query
/// names is one `probe serve` exports (the README's table, checked against
/// metrics.rs), a recording rule of rules.yaml, or a series Prometheus adds
/// to every target. promtool parses and type-checks every query. Whether
/// they return data is lab_prometheus' job.
#[test]
fn grafana_dashboard_queries_use_exported_metrics_and_rules() {
    use probe_tests::dashboard;
    let d = dashboard::load();
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "uid");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );
    let exported = dashboard::exported_metrics();
    let rules = dashboard::recording_rules();
    assert!(rules.len() >= 5, "recording rules: {rules:?}");
    let known = |name: &str| {
        exported.contains(name)
            || rules.iter().any(|r| r == name)
            || dashboard::PROMETHEUS_TARGET_SERIES.contains(&name)
    };

    // Template variables: the data source, and the nodes (the rules'
    // `instance`) from a series every probe exports.
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let node = var("node");
    assert_eq!(node["datasource"]["uid"], "${datasource}");
    let definition = node["definition"].as_str().unwrap();
    assert_eq!(node["query"]["query"], definition);
    let args = definition
        .strip_prefix("label_values(")
        .and_then(|a| a.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(METRIC, LABEL): {definition}"));
    let (metric, label) = args.split_once(',').unwrap();
    assert!(exported.contains(metric.trim()), "{definition}");
    assert_eq!(label.trim(), "instance", "the label the rules aggregate by");

    let panels = dashboard::panels(&d);
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut unknown = Vec::new();
    let mut rule_file = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id reused");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let ref_id = t["refId"].as_str().unwrap_or_default();
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title} {ref_id}: empty expr");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title} {ref_id}");
            assert!(
                expr.contains(r#"instance=~"$node""#),
                "{title} {ref_id}: not filtered by $node: {expr}"
            );
            if p["type"] == "heatmap" {
                assert_eq!(t["format"], "heatmap", "{title}: buckets as a heatmap");
                assert!(expr.contains("_bucket"), "{title}: {expr}");
            }
            let expr = dashboard::substitute(expr, "node-a|node-b", "1m");
            let names = dashboard::metric_names(&expr);
            assert!(!names.is_empty(), "{title} {ref_id}: no metric in {expr}");
            unknown.extend(
                names
                    .iter()
                    .filter(|n| !known(n))
                    .map(|n| format!("{title} {ref_id}: {n}")),
            );
            rule_file.push(serde_json::json!({
                "record": format!("dashboard:panel_{}:{ref_id}", p["id"]),
                "expr": expr,
            }));
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics neither exported, nor recording rules: {unknown:#?}\nexported: {exported:?}\nrules: {rules:?}"
    );

    // promtool parses and type-checks each query as a recording rule's
    // expression (JSON is YAML).
    let dir = std::env::temp_dir().join(format!("probe-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashboard.rules.json");
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rule_file}]});
    std::fs::write(&file, groups.to_string()).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian's prometheus package; `cargo xtask setup` installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool rejects a dashboard query:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
