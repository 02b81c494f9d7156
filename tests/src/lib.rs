//! Helpers for the privileged integration tests: root checks that fail in CI,
//! a handle on a running `probe` process (process.rs), and BPF object loading.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub use probe_lab::{self as lab, Lab};

pub mod dashboard;
mod process;

pub use process::Watch;

/// The test-only BPF objects (tests-ebpf/src/bin), built by build.rs. `probe`
/// never loads them; its own objects are `probe_user::objects`.
pub mod objects {
    /// Benchmark baselines (empty XDP and tc programs) and counting stand-ins
    /// for another owner's (a CNI's) programs; names in `tests_ebpf`.
    pub static FIXTURES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fixtures"));
}

/// True when the test may run. Not root: in CI (CI=true) the test fails;
/// elsewhere it says loudly that it did not run and returns false.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let msg =
        format!("{test}: needs root (network namespaces, BPF); run `cargo xtask test` as root");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    eprintln!("\n*** NOT RUN: {msg} ***\n");
    false
}

/// A lab with a name unique to this test.
pub fn lab() -> Lab {
    lab_with(probe_lab::Backend::Vxlan)
}

/// A lab with a name unique to this test, on the given backend.
pub fn lab_with(backend: probe_lab::Backend) -> Lab {
    Lab::up_with(&probe_lab::unique_prefix("plt"), backend).expect("lab up")
}

/// The `probe` binary: $PROBE_BIN (set by `cargo xtask test`) or target/debug/probe.
pub fn probe_bin() -> PathBuf {
    let path = std::env::var_os("PROBE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/debug/probe"
            ))
        });
    assert!(
        path.exists(),
        "{} missing: run the suite with `cargo xtask test`",
        path.display()
    );
    path
}

/// `probe` run to completion: exit code, stdout, stderr.
pub fn probe_output(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(probe_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run probe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// GET http://127.0.0.1:PORT/PATH: (status, body). A test client: one request
/// per connection (HTTP/1.0: no chunked body), read to the end.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the response");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The value of the sample `series` (metric name with its labels, exactly as
/// exposed) in a /metrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// No report ever shows a negative count: checked on every JSON line every
/// lab test reads.
pub fn assert_no_negatives(v: &serde_json::Value) {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Number(n) if n.as_f64().is_some_and(|f| f < 0.0) => {
                out.push(format!("{path} = {n}"))
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), out);
                }
            }
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    walk(x, &format!("{path}.{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(v, "", &mut found);
    assert!(found.is_empty(), "negative values in a report: {found:?}");
}

/// The last `{"type":"summary"}` object.
pub fn summary(lines: &[serde_json::Value]) -> &serde_json::Value {
    lines
        .iter()
        .rev()
        .find(|l| l["type"] == "summary")
        .expect("a summary line")
}

/// The stage object `stage` on `iface`.
pub fn stage<'a>(report: &'a serde_json::Value, stage: &str, iface: &str) -> &'a serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage && s["iface"] == iface)
        .unwrap_or_else(|| panic!("no stage {stage} on {iface} in {report}"))
}

/// The `napi[]` rows (one per CPU) of `iface` in namespace `netns`.
pub fn napi_rows<'a>(
    report: &'a serde_json::Value,
    iface: &str,
    netns: &str,
) -> Vec<&'a serde_json::Value> {
    report["napi"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["iface"] == iface && n["netns"] == netns)
        .collect()
}

/// The packets NAPI polled on `iface` in `netns`, all CPUs.
pub fn napi_packets(report: &serde_json::Value, iface: &str, netns: &str) -> u64 {
    napi_rows(report, iface, netns)
        .iter()
        .map(|n| n["packets"].as_u64().unwrap())
        .sum()
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

/// The running kernel's BTF, read once.
fn kernel_btf() -> &'static probe_user::kernel::btf::Btf {
    static BTF: std::sync::OnceLock<probe_user::kernel::btf::Btf> = std::sync::OnceLock::new();
    BTF.get_or_init(|| probe_user::kernel::btf::Btf::from_kernel().expect("the kernel's BTF"))
}

/// Whether the kernel has TCX (Linux >= 6.6, or a backport): its BTF has the
/// attach type. Without it the probe's tc hooks are cls_bpf filters
/// (`--tc-mode auto`), which outlive a SIGKILL. Decided by the feature, not
/// by the version, which backports break.
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

/// How much slower than native this machine runs the tests: 1, or what
/// `PROBE_TEST_TIME_SCALE` says (`cargo xtask vm` sets it for its emulated
/// guests, where everything, the probe's re-attach loop included, runs 10-50x
/// slower). Tests that assert a time bound multiply it by this.
pub fn time_scale() -> u32 {
    std::env::var("PROBE_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// Polls `cond` for up to `timeout`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The probe's BPF object loaded for BPF_PROG_TEST_RUN (nothing attached).
pub mod prog_run {
    use aya::{
        programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
        Ebpf,
    };
    use probe_common::*;
    use tests_ebpf::{PROG_EMPTY_TC, PROG_EMPTY_XDP};

    /// (port, VNI) pairs given their own slot in these tests: slot 0 and slot 1.
    pub const TEST_VNIS: [u32; MAX_VNIS] = [1, 0xabcdef, 0, 0, 0, 0, 0, 0];
    pub const TEST_VNI_PORTS: [u16; MAX_VNIS] = [8472, 4789, 0, 0, 0, 0, 0, 0];
    pub const QUEUE_SLOTS: u32 = 4;

    /// The NIC and VXLAN-device objects, and the fixtures' empty programs.
    pub struct Programs {
        pub nic: Ebpf,
        pub vxlan: Ebpf,
        pub fixtures: Ebpf,
    }

    impl Programs {
        /// Loads the object with known globals and loads (verifies) every program.
        pub fn load() -> Programs {
            let count = 2u32;
            // Logging off, as `probe` loads it without --debug-bpf.
            let nic = probe_user::hooks::BpfLog::Off
                .loader()
                .override_global(GLOBAL_VXLAN_PORTS, &DEFAULT_VXLAN_PORTS, true)
                .override_global(GLOBAL_VNIS, &TEST_VNIS, true)
                .override_global(GLOBAL_VNI_PORTS, &TEST_VNI_PORTS, true)
                .override_global(GLOBAL_VNI_COUNT, &count, true)
                .override_global(GLOBAL_QUEUE_SLOTS, &QUEUE_SLOTS, true)
                .map_max_entries(MAP_NIC_QUEUES, QUEUE_SLOTS + 1)
                .load(probe_user::objects::NIC)
                .expect("load the NIC object");
            let load = |object| Ebpf::load(object).expect("load BPF object");
            let mut p = Programs {
                nic,
                vxlan: load(probe_user::objects::VXLAN),
                fixtures: load(crate::objects::FIXTURES),
            };
            for name in [PROG_NIC_XDP, PROG_EMPTY_XDP] {
                let p: &mut Xdp = p.program(name).try_into().unwrap();
                p.load()
                    .unwrap_or_else(|e| panic!("verifier rejected {name}: {e}"));
            }
            for name in [PROG_NIC_TC, PROG_VXLAN_INGRESS, PROG_EMPTY_TC] {
                let p: &mut SchedClassifier = p.program(name).try_into().unwrap();
                p.load()
                    .unwrap_or_else(|e| panic!("verifier rejected {name}: {e}"));
            }
            p
        }

        /// Program `name`, from whichever object has it.
        fn program(&mut self, name: &str) -> &mut aya::programs::Program {
            [&mut self.nic, &mut self.vxlan, &mut self.fixtures]
                .into_iter()
                .find_map(|o| o.program_mut(name))
                .unwrap_or_else(|| panic!("no program {name}"))
        }

        /// Runs program `name` on `frame` `repeat` times: (return value, mean ns per run).
        pub fn run(&mut self, name: &str, frame: &[u8], repeat: u32) -> (u32, f64) {
            let opts = TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            };
            let prog = self.program(name);
            let r = if let Ok(p) = <&mut Xdp>::try_from(&mut *prog) {
                p.test_run(opts)
            } else {
                <&mut SchedClassifier>::try_from(prog)
                    .unwrap()
                    .test_run(opts)
            }
            .unwrap_or_else(|e| {
                panic!("BPF_PROG_TEST_RUN of {name} on {} bytes: {e}", frame.len())
            });
            (r.return_value, r.duration.as_nanos() as f64)
        }

        /// Runs tc program `name` once on `frame` as an skb of `gso_segs`
        /// segments (set through the test run's `struct __sk_buff`, whose
        /// layout comes from the kernel's BTF): (return value, ns).
        pub fn run_gso(&mut self, name: &str, frame: &[u8], gso_segs: u32) -> (u32, f64) {
            let btf = probe_user::kernel::btf::Btf::from_kernel().expect("kernel BTF");
            let at = btf
                .member_offset("__sk_buff", "gso_segs")
                .expect("__sk_buff.gso_segs") as usize;
            // The kernel zero-fills what a shorter context leaves out
            // (bpf_ctx_init), so it ends at gso_segs: fields added since
            // (hwtstamp, 5.16) need not exist.
            let mut ctx = vec![0u8; at + 4];
            ctx[at..at + 4].copy_from_slice(&gso_segs.to_ne_bytes());
            let opts = TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                ..Default::default()
            };
            let prog: &mut SchedClassifier = self.program(name).try_into().unwrap();
            let r = prog.test_run(opts).unwrap_or_else(|e| {
                panic!("BPF_PROG_TEST_RUN of {name} with gso_segs {gso_segs}: {e}")
            });
            (r.return_value, r.duration.as_nanos() as f64)
        }

        fn nic_counts(&self) -> probe_model::counters::nic::NicCounts {
            let entries = probe_user::hooks::read_per_cpu::<QueueCounters>(
                &self.nic,
                MAP_NIC_QUEUES,
                QUEUE_SLOTS + 1,
            )
            .unwrap();
            probe_model::counters::nic::NicCounts::from_queue_entries(&entries)
        }

        /// (skbs, segments) per NicClass, summed over CPUs and queue slots.
        pub fn nic_classes(&self) -> ([u64; NicClass::COUNT], [u64; NicClass::COUNT]) {
            let (mut skbs, mut segments) = ([0; NicClass::COUNT], [0; NicClass::COUNT]);
            for per_cpu in self.nic_counts().queues {
                for c in per_cpu {
                    for i in 0..NicClass::COUNT {
                        skbs[i] += c.skbs[i];
                        segments[i] += c.segments[i];
                    }
                }
            }
            (skbs, segments)
        }

        /// (outer segments, inner per InnerClass) of a (port, VNI) slot,
        /// summed over CPUs and queues.
        pub fn vni_slot(&self, slot: u32) -> (u64, [u64; InnerClass::COUNT]) {
            let mut inner = [0; InnerClass::COUNT];
            let mut outer = 0;
            for v in &self.nic_counts().vnis[slot as usize] {
                outer += v.outer_segments();
                for (o, p) in inner.iter_mut().zip(v.inner) {
                    *o += p;
                }
            }
            (outer, inner)
        }

        /// (skbs, segments) per InnerClass seen by the VXLAN-device program.
        pub fn dev_classes(&self) -> ([u64; InnerClass::COUNT], [u64; InnerClass::COUNT]) {
            let (mut skbs, mut segments) = ([0; InnerClass::COUNT], [0; InnerClass::COUNT]);
            let per_cpu =
                probe_user::hooks::read_per_cpu::<DevCounters>(&self.vxlan, MAP_VXLAN_DEV, 1)
                    .unwrap()
                    .swap_remove(0);
            for c in per_cpu {
                for i in 0..InnerClass::COUNT {
                    skbs[i] += c.skbs[i];
                    segments[i] += c.segments[i];
                }
            }
            (skbs, segments)
        }
    }
}

/// /proc/net/snmp of `netns`: the kernel's own UDP and IP error counters.
pub fn snmp(netns: &str) -> probe_model::counters::procfs::Snmp {
    lab::in_netns(netns, probe_user::kernel::procfs::read_snmp)
        .expect("enter the namespace")
        .expect("read /proc/net/snmp")
}
