use super::*;

#[test]
fn settings_keep_their_errors() {
    let s = Setting::from("x", Err("nope".into()));
    assert_eq!((s.value, s.error.as_deref()), (None, Some("nope")));
    assert!(sysctl("net.core.netdev_max_backlog")
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert!(sysctl("net.core.no_such_knob").is_err());
    assert_eq!(ethtool_netlink::on_off(true), "on");
}

#[test]
fn ss_socket_buffers() {
    let text = "UNCONN 0      0      0.0.0.0:9100 0.0.0.0:*\n\t skmem:(r0,rb200000,t0,tb212992,f0,w0,o0,bl0,d3)\nUNCONN 0 0 [::]:53 [::]:*\n\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)\n";
    let s = parse_ss_udp(text);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].name, "udp 0.0.0.0:9100 rcvbuf");
    assert_eq!(s[0].value.as_deref(), Some("200000"));
    assert_eq!(s[1].name, "udp [::]:53 rcvbuf");
    assert!(parse_ss_udp("").is_empty());
}

#[test]
fn loopback_reports_every_item() {
    // lo has queues but no IRQs, and the driver lacks most ethtool ops:
    // each item is still listed, with its error.
    let q = queue_settings("lo");
    assert!(
        q.iter()
            .any(|s| s.name == "rx-0/rps_cpus" && s.value.is_some()),
        "{q:?}"
    );
    assert!(q.iter().any(|s| s.name == "irqs" && s.error.is_some()));
    let e = ethtool_settings("lo");
    assert_eq!(e.len(), 7);
    assert!(e.iter().all(|s| s.value.is_some() != s.error.is_some()));
}
