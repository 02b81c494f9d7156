//! What the probes read from the running kernel's BTF before they load:
//! offsets, tracepoint prototypes, drop reasons. These hold on every kernel
//! the README supports (5.10 to 6.18): each feature is checked against the
//! kernel's own BTF (a tracepoint's `btf_trace_*` typedef, an enum), never
//! against its version, which backports break. Run on the host and in each
//! guest of `cargo xtask vm`. Reading /sys/kernel/btf/vmlinux needs no root.

use probe_model::reasons::{Placement, ReasonNames, NEEDS_REASONS};
use probe_user::{
    hooks::{drops, stage_latency, steering},
    kernel::btf::Btf,
};

fn kernel_btf() -> Btf {
    Btf::from_kernel().expect("every kernel the probe supports has BTF")
}

/// Whether the kernel has the tracepoint `name` (its BTF typedef).
fn has_tracepoint(btf: &Btf, name: &str) -> bool {
    btf.typedef_fn_params(&format!("btf_trace_{name}")).is_ok()
}

#[test]
fn every_drop_reason_of_this_kernel_gets_a_stage() {
    let btf = kernel_btf();
    let names = match btf.drop_reasons() {
        Ok(names) => names,
        Err(why) => {
            assert!(btf.enum_values("skb_drop_reason").is_err(), "{why}");
            assert!(why.starts_with(NEEDS_REASONS), "{why}");
            println!("this kernel has no drop reasons: {why}");
            return;
        }
    };
    assert!(names.core_names().count() > 60);
    // SKB_NOT_DROPPED_YET, and SKB_CONSUMED where the kernel has it.
    assert!(
        (1..=2).contains(&names.not_drops.len()),
        "{:?}",
        names.not_drops
    );
    let mut by_rule = Vec::new();
    for value in names.core_values() {
        let (name, placed) = names.reason(value);
        if let Some(rule) = placed.by.rule() {
            by_rule.push(format!("{name} -> {} ({rule})", placed.stage));
        }
    }
    println!(
        "{} reasons; placed by rule, not by table: {}",
        names.core_names().count(),
        if by_rule.is_empty() {
            "none".to_string()
        } else {
            by_rule.join(", ")
        }
    );
    for (name, stage) in [
        ("NO_SOCKET", "socket"),
        ("SOCKET_RCVBUFF", "socket"),
        ("NETFILTER_DROP", "ip"),
        ("CPU_BACKLOG", "backlog"),
    ] {
        let value = names.value_of(name).unwrap_or_else(|| panic!("{name}"));
        let (_, placed) = names.reason(value);
        assert_eq!(
            (placed.stage.as_str(), placed.by),
            (stage, Placement::Table),
            "{name}"
        );
    }
}

#[test]
fn the_drop_probe_attaches_where_the_kernel_has_reasons() {
    let btf = kernel_btf();
    let offsets = drops::offsets(&btf).unwrap_or_else(|e| panic!("{e}"));
    // Sanity, not layout: fields are distinct and inside their structs.
    assert_ne!(offsets.skb_dev, offsets.skb_head);
    assert!(offsets.skb_network_header < 512 && offsets.dev_ifindex < 4096);
    assert_eq!(btf.enum_value("NET_RX_SOFTIRQ"), Some(3));
    btf.member_offset("napi_struct", "dev").unwrap();
    // __data, skb, location; reason from 5.17; rx_sk from 6.11.
    let params = btf.typedef_fn_params("btf_trace_kfree_skb").unwrap();
    assert!((3..=5).contains(&params), "{params}");
    let reasons = btf.enum_values("skb_drop_reason").is_ok();
    match drops::setup(&btf) {
        Ok(_) => assert!(reasons && params >= 4),
        Err(e) => {
            assert!(!(reasons && params >= 4), "{e}");
            assert!(e.to_string().contains(NEEDS_REASONS), "{e}");
        }
    }
}

#[test]
fn socket_stages_and_steering_where_the_sock_tracepoints_are() {
    let btf = kernel_btf();
    let sock = has_tracepoint(&btf, "sk_data_ready") && has_tracepoint(&btf, "sock_recv_length");
    let stage = stage_latency::setup(&btf).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stage.socket_unavailable.is_none(),
        sock,
        "{:?}",
        stage.socket_unavailable
    );
    assert!(stage.offsets.tcp_copied_seq > stage.offsets.sk_receive_queue);
    match steering::setup(&btf) {
        Ok(_) => assert!(sock),
        Err(e) => {
            assert!(!sock, "{e}");
            assert!(
                e.to_string().contains("--steering needs Linux >= 6.5"),
                "{e}"
            );
        }
    }
}

/// `probe reasons` on this kernel: each reason with its stage and what
/// placed it, the same as the library's answer; bad files are refused.
#[test]
fn probe_reasons_lists_this_kernels_reasons() {
    let (code, out, err) = probe_tests::probe_output(&["reasons", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let btf = kernel_btf();
    match btf.drop_reasons() {
        Err(why) => {
            assert_eq!(v["unavailable"], why.as_str());
            assert_eq!(v["reasons"], serde_json::json!([]));
        }
        Ok(names) => {
            assert_eq!(v["unavailable"], serde_json::Value::Null);
            let rows = v["reasons"].as_array().unwrap();
            assert_eq!(rows.len(), names.core_names().count());
            for row in rows {
                let (name, placed) = names.reason(row["value"].as_u64().unwrap() as u32);
                assert_eq!(row["name"], name.as_str());
                assert_eq!(row["stage"], placed.stage.as_str());
                let by = placed.by.rule().unwrap_or_else(|| "table".into());
                assert_eq!(row["placed_by"], by.as_str(), "{row}");
            }
        }
    }
    // The list file of this kernel, as `cargo xtask reason-lists` writes it.
    let (code, list, _) = probe_tests::probe_output(&["reasons", "--list"]);
    assert_eq!(code, 0);
    let listed = ReasonNames::from_list(&list).unwrap();
    assert_eq!(
        listed.map(|n| n.to_list()),
        btf.drop_reasons().ok().map(|n| n.to_list())
    );
    // A missing file, and one that is neither BTF nor ELF: bad input
    // (exit 2), named.
    let (code, _, err) = probe_tests::probe_output(&["reasons", "--btf", "/nonexistent/vmlinux"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read /nonexistent/vmlinux"), "{err}");
    let (code, _, err) = probe_tests::probe_output(&["reasons", "--btf", "/proc/self/status"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not little-endian BTF"), "{err}");
}
