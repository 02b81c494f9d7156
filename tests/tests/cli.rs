//! What users see on a bad day: bad input, missing privilege, a hook the
//! kernel or device cannot provide, `--help`.

use probe_tests::{lab, privileged, probe_bin, probe_output, stage, summary, xdp_prog_id, Watch};

#[test]
fn help_teaches() {
    let (code, out, _) = probe_output(&["watch", "--help"]);
    assert_eq!(code, 0);
    for needle in [
        "--iface",
        "--vxlan-iface",
        "--netns",
        "--json",
        "--ready-file",
        "--nic-hook",
        "segments",
        "no loss",
        "Exit status",
        "Examples",
    ] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
}

#[test]
fn bad_flag_values_exit_2() {
    assert_eq!(probe_output(&["watch", "--interval", "0"]).0, 2);
    assert_eq!(probe_output(&["watch", "--xdp-mode", "fast"]).0, 2);
    assert_eq!(probe_output(&["watch", "--vxlan-port", "0"]).0, 2);
    assert_eq!(probe_output(&["frobnicate"]).0, 2);
    // Durations that overflowed after attaching (exit 101 and a backtrace):
    // refused first, with the accepted range.
    for args in [
        ["--duration", "1e20"],
        ["--interval", "1e20"],
        ["--interval", "inf"],
        ["--interval", "NaN"],
    ] {
        let (code, _, err) = probe_output(&[&["watch"][..], &args].concat());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(args[0]) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn missing_netns_exits_2() {
    let (code, _, err) = probe_output(&["watch", "--netns", "no-such-netns-probe-test"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no-such-netns-probe-test") && err.contains("/run/netns"),
        "{err}"
    );
}

#[test]
fn bad_drop_netns_exits_2() {
    if !privileged("bad_drop_netns_exits_2") {
        return;
    }
    let lab = lab();
    let ns = &lab.node(2).netns;
    let (code, _, err) = probe_output(&[
        "watch",
        "--netns",
        ns,
        "--drop-netns",
        "no-such-netns-probe-test",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-such-netns-probe-test"), "{err}");
    let mut argv = vec!["watch", "--netns", ns.as_str()];
    for _ in 0..17 {
        argv.extend(["--drop-netns", "host"]);
    }
    let (code, _, err) = probe_output(&argv);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at most 16"), "{err}");
}

#[test]
fn unknown_interface_exits_2_and_lists_what_exists() {
    if !privileged("unknown_interface_exits_2_and_lists_what_exists") {
        return;
    }
    let lab = lab();
    let ns = &lab.node(1).netns;
    for args in [vec!["--iface", "eth9"], vec!["--vxlan-iface", "eth9"]] {
        let mut argv = vec!["watch", "--netns", ns];
        argv.extend(args);
        let (code, _, err) = probe_output(&argv);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("\"eth9\""), "{err}");
        for existing in ["cni0", "eth0", "flannel.1", "lo", "veth1"] {
            assert!(err.contains(existing), "{existing} not listed: {err}");
        }
    }
}

/// The wrong kind of device for a flag is a usage error, not a silent run:
/// a bridge is not a VXLAN device, and a VXLAN device is not the NIC.
#[test]
fn wrong_kind_of_interface_exits_2() {
    if !privileged("wrong_kind_of_interface_exits_2") {
        return;
    }
    let lab = lab();
    let ns = &lab.node(1).netns;
    let (code, _, err) = probe_output(&["watch", "--netns", ns, "--vxlan-iface", "cni0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cni0 is not a VXLAN device") && err.contains("flannel.1"),
        "{err}"
    );
    let (code, _, err) = probe_output(&["watch", "--netns", ns, "--iface", "flannel.1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("flannel.1 is a VXLAN device"), "{err}");
}

#[test]
fn missing_privilege_names_the_capabilities() {
    if !privileged("missing_privilege_names_the_capabilities") {
        return;
    }
    let lab = lab();
    // Root without CAP_BPF and CAP_SYS_ADMIN in its bounding set (so not in
    // its effective set after exec).
    let out = std::process::Command::new("setpriv")
        .args([
            "--bounding-set",
            "-bpf,-sys_admin",
            "--inh-caps",
            "-all",
            "--",
        ])
        .arg(probe_bin())
        .args(["watch", "--netns", &lab.node(1).netns])
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing privilege"), "{err}");
    assert!(
        err.contains("CAP_BPF (or CAP_SYS_ADMIN) to load BPF programs"),
        "{err}"
    );
    assert!(err.contains("CAP_SYS_ADMIN to enter the --netns"), "{err}");
    assert!(
        !err.contains("CAP_NET_ADMIN"),
        "CAP_NET_ADMIN is there: {err}"
    );
    assert_eq!(xdp_prog_id(&lab.node(1).netns, "eth0"), None);
}

/// A hook the device cannot give (native XDP on a bridge: the bridge driver
/// has no ndo_bpf) is reported unavailable; the VXLAN stage still runs.
#[test]
fn unavailable_hook_is_reported_and_the_rest_runs() {
    if !privileged("unavailable_hook_is_reported_and_the_rest_runs") {
        return;
    }
    let lab = lab();
    let (n1, n2) = (lab.node(1), lab.node(2));
    let w = Watch::start(&[
        "--netns",
        &n2.netns,
        "--iface",
        "cni0",
        "--nic-hook",
        "xdp",
        "--xdp-mode",
        "native",
    ]);
    let dst = format!("{}:9000", n2.pods[0].ip).parse().unwrap();
    let sink = lab::UdpSink::start(&n2.pods[0].netns, 9000).unwrap();
    lab::send_udp(&n1.pods[0].netns, dst, 100, 16, 0).unwrap();
    sink.finish(100, std::time::Duration::from_secs(2));
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    let s = summary(&lines);
    let un = &s["unavailable"][0];
    assert_eq!(
        (un["stage"].as_str(), un["iface"].as_str()),
        (Some("nic"), Some("cni0")),
        "{s}"
    );
    assert!(
        un["reason"].as_str().unwrap().contains("native XDP"),
        "{un}"
    );
    assert!(err.contains("unavailable"), "said on stderr too: {err}");
    assert_eq!(stage(s, "vxlan", "flannel.1")["segments"], 100);
}

#[test]
fn record_and_diff_reject_bad_input() {
    let out = std::env::temp_dir().join(format!("probe-cli-{}.json", std::process::id()));
    let out_s = out.display().to_string();
    let (code, _, err) = probe_output(&["record", "--out", &out_s]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--duration"), "{err}");
    assert!(!out.exists(), "nothing written for a refused run");
    std::fs::write(&out, "{\"not\": \"a recording\"}").unwrap();
    let (code, _, err) = probe_output(&["diff", &out_s, &out_s]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a probe recording"), "{err}");
    let (code, _, err) = probe_output(&["diff", "/nonexistent/a.json", &out_s]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read /nonexistent/a.json"), "{err}");
    // A run that fails after the check (here: no such interface) leaves an
    // earlier file at --out as it was, and removes only a file it created.
    let earlier = "an earlier recording";
    std::fs::write(&out, earlier).unwrap();
    let failing = [
        "record",
        "--out",
        &out_s,
        "--duration",
        "1",
        "--iface",
        "nosuchnic0",
    ];
    let (code, _, err) = probe_output(&failing);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), earlier);
    std::fs::remove_file(&out).unwrap();
    let (code, _, err) = probe_output(&failing);
    assert_eq!(code, 2, "{err}");
    assert!(!out.exists(), "the file a failed run created is removed");
}

#[test]
fn serve_help_and_bad_listen_address() {
    let (code, out, _) = probe_output(&["serve", "--help"]);
    assert_eq!(code, 0);
    for needle in [
        "--listen",
        "/metrics",
        "/healthz",
        "/readyz",
        "rxprobe_",
        "--iface",
        "[default: 127.0.0.1:9435]",
        "--web-config",
        "tls_server_config",
        "client_auth_type: RequireAndVerifyClientCert",
        "client_ca_file",
        "kube-rbac-proxy",
    ] {
        assert!(out.contains(needle), "serve --help lacks {needle}:\n{out}");
    }
    let (code, _, err) = probe_output(&["serve", "--listen", "not-an-address"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--listen"), "{err}");
}

/// `--web-config`: every problem is found before anything listens or attaches,
/// and named with the file at fault (no privilege needed to see them).
#[test]
fn serve_web_config_problems_exit_2() {
    let dir = std::env::temp_dir().join(format!("probe-cli-webcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    write("empty.crt", "no certificate here\n");
    let d = dir.display();
    for (file, text, needle) in [
        ("none.yml", None, format!("--web-config {d}/none.yml: cannot read it")),
        (
            "basic.yml",
            Some("basic_auth_users:\n  prometheus: x\n"),
            "basic_auth_users is not supported".to_string(),
        ),
        (
            "auth.yml",
            Some("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAnyClientCert\n"),
            "supported: NoClientCert, RequireAndVerifyClientCert".to_string(),
        ),
        (
            "noca.yml",
            Some("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n"),
            "RequireAndVerifyClientCert needs client_ca_file".to_string(),
        ),
        (
            "missing.yml",
            Some("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"),
            format!("cert_file {d}/a.crt: cannot read it"),
        ),
        (
            "notpem.yml",
            Some("tls_server_config:\n  cert_file: empty.crt\n  key_file: a.key\n"),
            format!("cert_file {d}/empty.crt: no PEM certificate"),
        ),
    ] {
        let path = match text {
            Some(text) => write(file, text),
            None => dir.join(file).to_str().unwrap().to_string(),
        };
        let (code, _, err) = probe_output(&["serve", "--web-config", &path]);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(err.contains(&needle), "{file}: {err}");
        assert!(!err.contains("serving"), "{file}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without --iface the NIC is the device of the namespace's lowest-metric
/// default route (read over rtnetlink); without a default route, the error
/// says so. The namespace is this test's own.
#[test]
fn default_nic_is_the_default_routes_device() {
    if !privileged("default_nic_is_the_default_routes_device") {
        return;
    }
    let ns = format!("rxprobe-route-{}", std::process::id());
    let ip = |args: &str| {
        let ok = std::process::Command::new("ip")
            .args(["-n", &ns])
            .args(args.split_whitespace())
            .status()
            .expect("run ip")
            .success();
        assert!(ok, "ip -n {ns} {args}");
    };
    assert!(std::process::Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .expect("run ip")
        .success());
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _remove = Remove(ns.clone());

    let (code, _, err) = probe_output(&["tune", "--netns", &ns]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no default route"), "{err}");

    ip("link add up0 type veth peer name up1");
    for dev in ["up0", "up1"] {
        ip(&format!("link set {dev} up"));
    }
    ip("addr add 10.99.0.1/24 dev up0");
    ip("addr add 10.99.1.1/24 dev up1");
    ip("route add default via 10.99.1.2 dev up1 metric 200");
    ip("route add default via 10.99.0.2 dev up0 metric 100");
    let (code, out, err) = probe_output(&["tune", "--netns", &ns, "--json"]);
    assert_eq!(code, 0, "{err}");
    let snapshot: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(snapshot["devices"][0]["iface"], "up0", "{out}");
}
