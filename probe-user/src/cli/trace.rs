//! `probe trace`: marked packets sent on demand, and where each one stopped.

mod human;
mod tcp_syn;

pub use human::human;

use std::{
    io::Read,
    net::{SocketAddrV4, UdpSocket},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use clap::Args;
use serde::Serialize;

use crate::{
    error::ProbeError,
    hooks::{
        latency::LatencyMode,
        nic::{NicHookArg, XdpModeArg},
        BpfLog, TcMode,
    },
    kernel::netns::Netns,
    session::{self, SessionConfig},
};
use probe_model::{stage_latency::StageLatency, trace::TraceAccount};

#[derive(Debug, Args)]
#[command(
    about = "Send marked packets to a pod and show where each one stopped, and why",
    long_about = "Send marked packets to a pod and show where each one stopped, and why.\n\n\
        probe attaches to the receiving node (--netns, --iface: its namespace and NIC), sends\n\
        --count packets from --from-netns (a pod's namespace, or the current one) to --to,\n\
        each carrying a signature (8 random bytes starting its payload), and follows exactly\n\
        those: at the NIC, out of the VXLAN device (decapsulated), into the pod, queued to its\n\
        socket, read. A marked packet's drop is reported with the stage it had reached and the\n\
        kernel's drop reason, also when the sending node drops it before it leaves (stage\n\
        `sender`). Other traffic is not followed: the signature check runs only during the\n\
        trace. The socket stages need Linux >= 6.5, the drop reasons Linux >= 5.17.\n\n\
        --proto tcp-syn sends TCP SYNs instead (from a raw socket: CAP_NET_RAW), the way a\n\
        client's connect starts: they are followed to the pod, and the answers counted\n\
        where they come back: a SYN-ACK (a listener took it) or a RST (none listens). A SYN\n\
        is not queued to a socket, so it has no queued or read stage; the sending node's\n\
        kernel resets each half-open connection, as it owns none of them.\n\n\
        Both nodes on one host (the lab): one run sees both sides. Across two nodes, run\n\
        the trace in two halves that share a signature (16 hex digits of your choice):\n\
        first the receiving half on the pod's node (--listen: sends nothing, follows the\n\
        marked packets for that many seconds), then the sending half on the other node\n\
        (--send-only: sends, and reports what that node dropped before they left).\n\n\
        Examples:\n  \
        probe trace --netns lab-n2 --from-netns lab-n1p1 --to 10.244.2.2:9000\n  \
        probe trace --to 10.244.2.2:9000 --count 1000 --rate 500 --json\n  \
        probe trace --to 10.244.2.2:443 --proto tcp-syn --count 100\n  \
        S=$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')\n  \
        probe trace --listen 30 --signature $S                          # on the pod's node\n  \
        probe trace --send-only --signature $S --to 10.244.2.2:9000 \\\n      \
        --from-netns cni-1234                                         # on the sending node"
)]
pub struct TraceArgs {
    /// The pod's IPv4 address and a port (UDP, or TCP with --proto tcp-syn; not
    /// with --listen)
    #[arg(long, value_name = "IP:PORT", required_unless_present = "listen")]
    pub to: Option<SocketAddrV4>,
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
    /// What to send: UDP datagrams, or TCP SYNs (a connection's first packet)
    #[arg(long, value_enum, default_value_t = TraceProto::Udp)]
    pub proto: TraceProto,
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
    /// Mark the packets with this signature, 16 hex digits, not all zero (the two
    /// halves of a two-node trace share it) [default: 8 random bytes]
    #[arg(long, value_name = "HEX", value_parser = parse_signature)]
    pub signature: Option<u64>,
    /// Two-node trace, receiving half: send nothing; follow the packets marked
    /// with --signature on this node for this many seconds (up to 3600), or until
    /// SIGINT
    #[arg(long, value_name = "SECONDS", requires = "signature",
          conflicts_with_all = ["to", "from_netns", "count", "rate", "wait", "send_only", "proto"])]
    pub listen: Option<f64>,
    /// Two-node trace, sending half: send, and report only what this node
    /// dropped before the packets left (the receiving node runs --listen with the
    /// same --signature)
    #[arg(long, requires = "signature")]
    pub send_only: bool,
    /// Write this file once every probe is attached (for scripts and tests)
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// `--signature`: 16 hex digits (the form a trace prints), not all zero.
fn parse_signature(s: &str) -> Result<u64, String> {
    let expected = "16 hex digits, not all zero (e.g. 34e1a07c9d5b2f86)";
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(expected.into());
    }
    match u64::from_str_radix(s, 16) {
        Ok(v) if v != 0 => Ok(v),
        _ => Err(expected.into()),
    }
}

/// `--proto`: what a trace sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TraceProto {
    Udp,
    TcpSyn,
}

/// Which part of a trace this run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceMode {
    /// Sends and follows (one node, or both nodes on one host).
    Both,
    /// Sends; reports this node's drops of them (two-node trace).
    SendOnly,
    /// Follows what another node sends (two-node trace).
    Listen,
}

/// What a trace found.
#[derive(Debug, Serialize)]
pub struct Trace {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub mode: TraceMode,
    /// Null with --listen.
    pub to: Option<String>,
    pub from_netns: Option<String>,
    pub netns: String,
    /// The signature, hex.
    pub signature: String,
    /// `udp` or `tcp-syn`; null with --listen (it follows both).
    pub proto: Option<TraceProto>,
    /// Packets handed to the sending socket; null with --listen.
    pub sent: Option<u64>,
    /// `--proto tcp-syn`: SYNs answered with a SYN-ACK (a listener took
    /// them) and with a RST (nothing listens), as the sender received them;
    /// null otherwise.
    pub answered: Option<u64>,
    pub refused: Option<u64>,
    /// The marked packets at each stage, their drops and their times
    /// (`stage_latency` of `probe watch`, following only these).
    pub path: StageLatency,
    /// What became of them: dropped, followed to an end, missing.
    pub accounting: TraceAccount,
}

impl Trace {
    /// The accounting of what it found (probe_model::trace).
    pub fn account(&self) -> TraceAccount {
        let answers = self.answered.zip(self.refused);
        probe_model::trace::account(&self.path, self.sent, answers, self.mode == TraceMode::Both)
    }
}

const WAIT: super::SecondsRange = super::SecondsRange {
    flag: "--wait",
    min: 0.0,
    min_inclusive: true,
    max: 60.0,
    expected: "a number of seconds from 0 to 60",
};

const LISTEN: super::SecondsRange = super::SecondsRange {
    flag: "--listen",
    min: 0.0,
    min_inclusive: false,
    max: 3600.0,
    expected: "a number of seconds above 0, at most 3600 (1 hour)",
};

pub fn validate(args: &TraceArgs) -> Result<(), ProbeError> {
    WAIT.check(args.wait)?;
    if let Some(listen) = args.listen {
        LISTEN.check(listen)?;
    }
    Ok(())
}

impl TraceArgs {
    fn mode(&self) -> TraceMode {
        match (self.listen.is_some(), self.send_only) {
            (true, _) => TraceMode::Listen,
            (false, true) => TraceMode::SendOnly,
            (false, false) => TraceMode::Both,
        }
    }
}

pub fn run(args: TraceArgs) -> Result<(), ProbeError> {
    validate(&args)?;
    let magic = match args.signature {
        Some(s) => s,
        None => signature()?,
    };
    let cfg = SessionConfig {
        netns: args.netns.clone(),
        iface: args.iface.clone(),
        vxlan_ifaces: args.vxlan_ifaces.clone(),
        vxlan_ports: Vec::new(),
        nic_hook: NicHookArg::Tc,
        xdp_mode: XdpModeArg::Auto,
        tc_mode: TcMode::Auto,
        drop_netns: Vec::new(),
        latency: LatencyMode::Off,
        latency_max_runs: 0,
        latency_sample: 1,
        steering: false,
        stage_latency: None,
        stage_window: None,
        trace_magic: Some(magic),
        self_cost: false,
        bpf_log: BpfLog::Off,
        interval: 1.0,
        duration: None,
        ready_file: args.ready_file.clone(),
        on_event: Some(if args.json {
            crate::notice::event_quiet
        } else {
            crate::notice::event
        }),
    };
    let sender = match &args.from_netns {
        Some(name) => Netns::named(name)?,
        None => Netns::current(),
    };
    let wait = Duration::from_secs_f64(args.wait);
    let (sent, report) = session::around(&cfg, |stop| match (args.listen, args.to) {
        (Some(listen), _) => {
            sleep_unless(stop, Duration::from_secs_f64(listen));
            Ok(None)
        }
        (None, Some(to)) => {
            let sending = |e: std::io::Error| ProbeError::Runtime(format!("sending to {to}: {e}"));
            match args.proto {
                TraceProto::Udp => {
                    let sent = sender
                        .run(|| send(to, magic, args.count, args.rate, stop))?
                        .map_err(sending)?;
                    sleep_unless(stop, wait);
                    Ok(Some((sent, None)))
                }
                // Answers are read until `wait` after the last SYN.
                TraceProto::TcpSyn => {
                    let (sent, answers) = sender
                        .run(|| tcp_syn::trace(to, magic, args.count, args.rate, wait, stop))?
                        .map_err(sending)?;
                    Ok(Some((sent, Some(answers))))
                }
            }
        }
        // clap requires --to without --listen.
        (None, None) => Err(ProbeError::Usage("--to IP:PORT is required".into())),
    })?;
    let path = report
        .stage_latency
        .ok_or_else(|| ProbeError::Runtime(unavailable(&report.unavailable)))?;
    let mut trace = Trace {
        kind: "trace",
        mode: args.mode(),
        to: args.to.map(|to| to.to_string()),
        from_netns: args.from_netns.clone(),
        netns: report.netns.clone(),
        signature: format!("{magic:016x}"),
        proto: args.listen.is_none().then_some(args.proto),
        sent: sent.map(|(sent, _)| sent),
        answered: sent.and_then(|(_, a)| a).map(|a| a.accepted),
        refused: sent.and_then(|(_, a)| a).map(|a| a.refused),
        path,
        accounting: TraceAccount::default(),
    };
    trace.accounting = trace.account();
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

/// Sleeps `d`, or less if `stop` is set meanwhile (SIGINT, SIGTERM).
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Why the trace could not follow anything: the stage latency probe's reason.
fn unavailable(list: &[probe_model::model::Unavailable]) -> String {
    list.iter()
        .find(|u| u.stage == probe_model::stage::HookKind::StageLatency)
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
/// Stops early when `stop` is set (SIGINT, SIGTERM).
fn send(
    to: SocketAddrV4,
    magic: u64,
    count: u32,
    rate: u32,
    stop: &AtomicBool,
) -> std::io::Result<u64> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    let mut payload = [0u8; 32];
    payload[..8].copy_from_slice(&magic.to_ne_bytes());
    paced(count, rate, stop, |seq| {
        payload[8..12].copy_from_slice(&seq.to_be_bytes());
        sock.send_to(&payload, to).map(|_| ())
    })
}

/// Calls `send(0..count)` at `rate` per second; stops early when `stop` is
/// set (SIGINT, SIGTERM). Returns how many were sent.
fn paced(
    count: u32,
    rate: u32,
    stop: &AtomicBool,
    mut send: impl FnMut(u32) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut sent = 0;
    for seq in 0..count {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = start + gap * seq;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        send(seq)?;
        sent += 1;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests;
