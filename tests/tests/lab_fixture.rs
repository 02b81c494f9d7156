//! The lab itself: the flannel wiring works, and it cleans up after itself,
//! also when a test panics.

use probe_tests::{lab, lab::Lab, privileged};

#[test]
fn lab_is_wired_like_flannel_and_removed_on_drop() {
    if !privileged("lab_is_wired_like_flannel_and_removed_on_drop") {
        return;
    }
    let lab = lab();
    let prefix = lab.prefix.clone();
    assert_eq!(lab::lab_namespaces(&prefix).len(), 6);
    let n1 = &lab.node(1).netns;
    let details = lab::run(
        "ip",
        &["-n", n1, "-d", "-j", "link", "show", "dev", "flannel.1"],
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&details).unwrap();
    let info = &v[0]["linkinfo"]["info_data"];
    assert_eq!(
        (
            info["id"].as_u64(),
            info["port"].as_u64(),
            info["learning"].as_bool()
        ),
        (Some(1), Some(8472), Some(false))
    );
    assert_eq!(v[0]["mtu"], 1450);
    let routes = lab::run("ip", &["-n", n1, "route", "show", "10.244.2.0/24"]).unwrap();
    assert!(
        routes.contains("via 10.244.2.0 dev flannel.1") && routes.contains("onlink"),
        "{routes}"
    );
    let fdb = lab::run("bridge", &["-n", n1, "fdb", "show", "dev", "flannel.1"]).unwrap();
    assert!(
        fdb.contains("dst 192.168.50.2") && fdb.contains("permanent"),
        "{fdb}"
    );
    drop(lab);
    assert!(lab::lab_namespaces(&prefix).is_empty());
}

#[test]
fn lab_is_removed_when_a_test_panics() {
    if !privileged("lab_is_removed_when_a_test_panics") {
        return;
    }
    let prefix = lab::unique_prefix("plt");
    let p = prefix.clone();
    let result = std::panic::catch_unwind(move || {
        let _lab = Lab::up(&p).unwrap();
        panic!("test failure inside a lab");
    });
    assert!(result.is_err());
    assert!(
        lab::lab_namespaces(&prefix).is_empty(),
        "namespaces left: {:?}",
        lab::lab_namespaces(&prefix)
    );
}
