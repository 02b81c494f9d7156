//! `probe trace`: marked packets sent on demand, and where each one stopped.

use std::{
    io::Read,
    net::{SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use clap::Args;
use serde::Serialize;

use crate::{
    error::ProbeError,
    hooks::{
        nic::{NicHookArg, XdpModeArg},
        BpfLog, TcMode,
    },
    netns::Netns,
    session::{self, SessionConfig},
    stage_latency::{short, StageLatency},
};

#[derive(Debug, Args)]
#[command(
    about = "Send marked packets to a pod and show where each one stopped, and why",
    long_about = "Send marked UDP packets to a pod and show where each one stopped, and why.\n\n\
        probe attaches to the receiving node (--netns, --iface: its namespace and NIC), sends\n\
        --count packets from --from-netns (a pod's namespace, or the current one) to --to,\n\
        each carrying a signature (8 random bytes starting its payload), and follows exactly\n\
        those: at the NIC, out of the VXLAN device (decapsulated), into the pod, queued to its\n\
        socket, read. A marked packet's drop is reported with the stage it had reached and the\n\
        kernel's drop reason, also when the sending node drops it before it leaves (stage\n\
        `sender`). Other traffic is not followed: the signature check runs only during the\n\
        trace. The socket stages need Linux >= 6.5, the drop reasons Linux >= 5.17.\n\n\
        Both nodes on one host (the lab): one run sees both sides. On a cluster, run probe\n\
        trace on the receiving node with --from-netns naming a namespace on the same node,\n\
        or send the packets yourself: the receiving node's probe follows only what it sends.\n\n\
        Examples:\n  \
        probe trace --netns lab-n2 --from-netns lab-n1p1 --to 10.244.2.2:9000\n  \
        probe trace --to 10.244.2.2:9000 --count 1000 --rate 500 --json"
)]
pub struct TraceArgs {
    /// The pod's IPv4 address and a UDP port
    #[arg(long, value_name = "IP:PORT")]
    pub to: SocketAddrV4,
    /// Send from this network namespace (a name under /run/netns) [default: the current one]
    #[arg(long, value_name = "NAME")]
    pub from_netns: Option<String>,
    /// The receiving node's network namespace, where its NIC is [default: the current one]
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// The receiving node's NIC [default: the interface of the default route]
    #[arg(long, value_name = "NIC")]
    pub iface: Option<String>,
    /// VXLAN device of the receiving node; repeatable [default: every VXLAN device]
    #[arg(long = "vxlan-iface", value_name = "DEV")]
    pub vxlan_ifaces: Vec<String>,
    /// Packets to send
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub count: u32,
    /// Packets per second
    #[arg(long, value_name = "PPS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Seconds to wait after the last packet for those still on their way
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub wait: f64,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// What a trace found.
#[derive(Debug, Serialize)]
pub struct Trace {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub to: String,
    pub from_netns: Option<String>,
    pub netns: String,
    /// The signature, hex.
    pub signature: String,
    /// UDP datagrams handed to the sending socket.
    pub sent: u64,
    /// The marked packets at each stage, their drops and their times
    /// (`stage_latency` of `probe watch`, following only these).
    pub path: StageLatency,
}

const WAIT: super::SecondsRange = super::SecondsRange {
    flag: "--wait",
    min: 0.0,
    min_inclusive: true,
    max: 60.0,
    expected: "a number of seconds from 0 to 60",
};

pub fn validate(args: &TraceArgs) -> Result<(), ProbeError> {
    WAIT.check(args.wait).map(|_| ())
}

pub fn run(args: TraceArgs) -> Result<(), ProbeError> {
    validate(&args)?;
    let magic = signature()?;
    let cfg = SessionConfig {
        netns: args.netns.clone(),
        iface: args.iface.clone(),
        vxlan_ifaces: args.vxlan_ifaces.clone(),
        vxlan_ports: Vec::new(),
        nic_hook: NicHookArg::Tc,
        xdp_mode: XdpModeArg::Auto,
        tc_mode: TcMode::Auto,
        drop_netns: Vec::new(),
        latency: false,
        latency_sample: 1,
        steering: false,
        stage_latency: None,
        trace_magic: Some(magic),
        self_cost: false,
        bpf_log: BpfLog::Off,
        interval: 1.0,
        duration: None,
        ready_file: None,
        quiet: args.json,
    };
    let sender = match &args.from_netns {
        Some(name) => Netns::named(name)?,
        None => Netns::current(),
    };
    let (sent, report) = session::around(&cfg, || {
        let sent = sender
            .run(|| send(args.to, magic, args.count, args.rate))?
            .map_err(|e| ProbeError::Runtime(format!("sending to {}: {e}", args.to)))?;
        std::thread::sleep(Duration::from_secs_f64(args.wait));
        Ok(sent)
    })?;
    let path = report
        .stage_latency
        .ok_or_else(|| ProbeError::Runtime(unavailable(&report.unavailable)))?;
    let trace = Trace {
        kind: "trace",
        to: args.to.to_string(),
        from_netns: args.from_netns.clone(),
        netns: report.netns.clone(),
        signature: format!("{magic:016x}"),
        sent,
        path,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&trace).map_err(|e| ProbeError::Runtime(e.to_string()))?
        );
    } else {
        print!("{}", human(&trace));
    }
    Ok(())
}

/// Why the trace could not follow anything: the stage latency probe's reason.
fn unavailable(list: &[crate::model::Unavailable]) -> String {
    list.iter()
        .find(|u| u.stage == crate::stage::HookKind::StageLatency)
        .map_or("the trace probes could not be attached".into(), |u| {
            format!("the trace probes could not be attached: {}", u.reason)
        })
}

/// 8 random bytes, never 0 (0 turns the check off).
fn signature() -> Result<u64, ProbeError> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| ProbeError::Runtime(format!("reading /dev/urandom: {e}")))?;
    Ok(u64::from_ne_bytes(b).max(1))
}

/// `count` datagrams to `to` at `rate` per second: the signature in native
/// byte order (as the kernel program reads it), then the sequence number.
fn send(to: SocketAddrV4, magic: u64, count: u32, rate: u32) -> std::io::Result<u64> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    let mut payload = [0u8; 32];
    payload[..8].copy_from_slice(&magic.to_ne_bytes());
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut sent = 0;
    for seq in 0..count {
        payload[8..12].copy_from_slice(&seq.to_be_bytes());
        let due = start + gap * seq;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        sock.send_to(&payload, to)?;
        sent += 1;
    }
    Ok(sent)
}

/// The funnel, the drops by stage and reason, and the times.
pub fn human(t: &Trace) -> String {
    use std::fmt::Write;
    let p = &t.path;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "TRACE  {} marked UDP packets to {}{} (signature {}), followed on {}",
        t.sent,
        t.to,
        t.from_netns
            .as_ref()
            .map_or(String::new(), |n| format!(" from {n}")),
        t.signature,
        t.netns
    );
    let rows = [
        ("sent", t.sent),
        ("at the NIC", p.sampled),
        ("decapsulated", p.decap),
        ("in the pod", p.pod),
        ("queued to a socket", p.queued),
        ("read", p.read),
    ];
    for (name, n) in rows {
        let _ = writeln!(o, "  {name:<20} {n:>8}");
    }
    if p.socket_busy > 0 {
        let _ = writeln!(
            o,
            "  ({} queued while another marked packet still waited: not followed to their read)",
            p.socket_busy
        );
    }
    for d in &p.drops {
        let stage = match d.stage {
            "sender" => "on the sending node (the NIC never saw them)",
            "nic" => "after the NIC",
            "decap" => "after decapsulation",
            _ => "in the pod, before its socket",
        };
        let _ = writeln!(o, "STOPPED {} {stage}: {}", d.skbs, d.reason);
    }
    let dropped: u64 = p.drops.iter().map(|d| d.skbs).sum();
    let followed_to_end = p.read + p.socket_busy + dropped;
    if p.unavailable.is_none() && followed_to_end < t.sent {
        let _ = writeln!(
            o,
            "MISSING {} not read and not seen dropped (still queued, merged, or where the probe does not look)",
            t.sent - followed_to_end
        );
    }
    for step in p.transitions.iter().filter(|step| step.ns.count > 0) {
        let _ = writeln!(o, "TIME   {}->{} {}", step.from, step.to, short(&step.ns));
    }
    if let Some(why) = &p.unavailable {
        let _ = writeln!(o, "UNAVAILABLE {why}");
    }
    o
}
