//! What the running kernel offers, decided by its BTF (features, not
//! versions, which backports break), and what is attached where: the XDP,
//! TCX and cls_bpf programs of the lab's devices, read from the kernel.

use crate::{lab, Lab};

/// The running kernel's BTF, read once.
fn kernel_btf() -> &'static probe_user::kernel::btf::Btf {
    static BTF: std::sync::OnceLock<probe_user::kernel::btf::Btf> = std::sync::OnceLock::new();
    BTF.get_or_init(|| probe_user::kernel::btf::Btf::from_kernel().expect("the kernel's BTF"))
}

/// Whether the kernel has TCX (Linux >= 6.6, or a backport): its BTF has the
/// attach type. Without it the probe's tc hooks are cls_bpf filters
/// (`--tc-mode auto`), which outlive a SIGKILL.
pub fn tcx_available() -> bool {
    kernel_btf().enum_value("BPF_TCX_INGRESS").is_some()
}

/// Whether the kernel has drop reasons (Linux >= 5.17): `enum
/// skb_drop_reason` in its BTF.
pub fn kernel_has_drop_reasons() -> bool {
    kernel_btf().enum_values("skb_drop_reason").is_ok()
}

/// Whether the kernel has the socket tracepoints the socket stages and
/// `--steering` use (sock:sk_data_ready, sock:sock_recv_length; Linux >= 6.5).
pub fn kernel_has_socket_tracepoints() -> bool {
    ["sk_data_ready", "sock_recv_length"].iter().all(|tp| {
        kernel_btf()
            .typedef_fn_params(&format!("btf_trace_{tp}"))
            .is_ok()
    })
}

/// Whether the running kernel's `enum skb_drop_reason` has `reason` (from
/// its BTF). Older kernels free some packets with no reason, which the probe
/// then reports, truthfully, as NOT_SPECIFIED.
pub fn kernel_has_drop_reason(reason: &str) -> bool {
    kernel_btf()
        .enum_value(&format!("SKB_DROP_REASON_{reason}"))
        .is_some()
}

/// The hook the probe reports for its tc hooks on this kernel.
pub fn tc_hook() -> &'static str {
    if tcx_available() {
        "tcx/ingress"
    } else {
        "tc/ingress"
    }
}

/// Ids of the BPF programs attached in `netns` at XDP on `iface` (from netlink).
pub fn xdp_prog_id(netns: &str, iface: &str) -> Option<u32> {
    let out = lab::run(
        "ip",
        &["-n", netns, "-j", "-d", "link", "show", "dev", iface],
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["xdp"]["prog"]["id"].as_u64().map(|id| id as u32)
}

/// Ids of the tc programs on `iface` in `netns`: TCX (ingress, egress) and
/// cls_bpf filters on the clsact ingress hook.
pub fn tc_prog_ids(netns: &str, iface: &str) -> Vec<u32> {
    use aya::programs::{tc::TcAttachType, SchedClassifier};
    let (netns, iface) = (netns.to_string(), iface.to_string());
    lab::in_netns(&netns, move || {
        let mut ids: Vec<u32> = [TcAttachType::Ingress, TcAttachType::Egress]
            .into_iter()
            .filter(|_| tcx_available())
            .flat_map(|t| SchedClassifier::query_tcx(&iface, t).expect("query tcx").1)
            .map(|p| p.id())
            .collect();
        let ifindex = probe_user::kernel::rtnl::ifindex_of(&iface).expect("device");
        let filters = probe_user::kernel::rtnl::RtnlSocket::open()
            .and_then(|mut s| s.ingress_bpf_filters(ifindex))
            .expect("list tc filters");
        ids.extend(filters.into_iter().filter_map(|f| f.prog_id));
        ids
    })
    .unwrap()
}

/// Every XDP, TCX and cls_bpf program attached to any interface of the lab's
/// namespaces: (netns, iface, program id).
pub fn lab_attachments(lab: &Lab) -> Vec<(String, String, u32)> {
    let mut out = Vec::new();
    for netns in lab.namespaces() {
        let text = lab::run("ip", &["-n", &netns, "-j", "link", "show"]).unwrap();
        let links: serde_json::Value = serde_json::from_str(&text).unwrap();
        for link in links.as_array().unwrap() {
            let iface = link["ifname"].as_str().unwrap().to_string();
            let ids = xdp_prog_id(&netns, &iface)
                .into_iter()
                .chain(tc_prog_ids(&netns, &iface));
            out.extend(ids.map(|id| (netns.clone(), iface.clone(), id)));
        }
    }
    out
}

/// Whether a BPF program with this id is still loaded anywhere.
pub fn prog_loaded(id: u32) -> bool {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .any(|p| p.id() == id)
}
