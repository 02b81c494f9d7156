use super::*;

fn syn_trace(answered: u64, refused: u64, pod: u64) -> Trace {
    let mut path = probe_model::stage_latency::stage_latency(&[], None, 1, None);
    (path.sampled, path.decap, path.pod) = (1000, 1000, pod);
    Trace {
        kind: "trace",
        mode: TraceMode::Both,
        to: Some("10.244.2.2:443".into()),
        from_netns: None,
        netns: "n2".into(),
        signature: "34e1a07c9d5b2f86".into(),
        proto: Some(TraceProto::TcpSyn),
        sent: Some(1000),
        answered: Some(answered),
        refused: Some(refused),
        path,
        accounting: Default::default(),
    }
}

#[test]
fn a_syn_funnel_ends_with_the_answers_not_the_socket_stages() {
    let text = human(&syn_trace(1000, 0, 1000));
    assert!(
        text.starts_with("TRACE  1000 marked TCP SYNs to 10.244.2.2:443"),
        "{text}"
    );
    assert!(text.contains("answered (SYN-ACK)       1000"), "{text}");
    assert!(text.contains("refused (RST)               0"), "{text}");
    assert!(!text.contains("queued to a socket"), "{text}");
    assert!(!text.contains("MISSING"), "{text}");
    // 10 lost on the way and not seen dropped: named as missing.
    let text = human(&syn_trace(990, 0, 990));
    assert!(
        text.contains("MISSING 10 not answered and not seen dropped"),
        "{text}"
    );
}

#[test]
fn refused_syns_are_accounted_for_with_or_without_drop_reasons() {
    // A kernel without socket stages (< 6.5) and without drop reasons
    // (< 5.17): the RSTs alone account for the refused.
    let mut t = syn_trace(600, 400, 1000);
    t.path.unavailable = Some("the socket stages (queued, read) need Linux >= 6.5".into());
    assert!(!human(&t).contains("MISSING"), "{}", human(&t));
    // With drop reasons, the refused are also dropped as NO_SOCKET, and
    // 10 more by the pod's iptables: none missing, none counted twice.
    let mut t = syn_trace(590, 400, 1000);
    let drop = |reason: &str, skbs| probe_model::stage_latency::TraceDrop {
        stage: "pod",
        reason: reason.into(),
        skbs,
    };
    t.path.drops = vec![drop("NO_SOCKET", 400), drop("NETFILTER_DROP", 10)];
    assert!(!human(&t).contains("MISSING"), "{}", human(&t));
    // 10 RSTs lost on the way back: their drops account for them.
    t.refused = Some(390);
    assert!(!human(&t).contains("MISSING"), "{}", human(&t));
    // Without an answer or a drop for 5 of them, those are missing.
    t.path.drops[1].skbs = 5;
    assert!(
        human(&t).contains("MISSING 5 not answered and not seen dropped"),
        "{}",
        human(&t)
    );
}
