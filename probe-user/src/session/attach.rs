//! Attaching a session: the NIC and tunnel devices resolved from the
//! configuration, then each one's hook, then the tracing hooks, all through
//! the hooks' registry. A stage that cannot attach is reported unavailable
//! and the others run.

use std::time::Instant;

use super::{
    targets::{self, Targets},
    Session, SessionConfig,
};
use crate::{
    error::ProbeError,
    hooks::{
        latency::LatencyMode,
        nic::{NicConfig, NicHook},
        registry::{self, DeviceContext, TracingContext},
        Hooks,
    },
    kernel::netns::Netns,
    kernel::rtnl::{Link, RtnlSocket},
};
use probe_model::{
    events::{Event, History},
    model::{HookKind, Topology, Unavailable},
    names::Names,
};

/// Attaches every hook `cfg` asks for in `netns` (see the module doc).
pub(super) fn attach(cfg: &SessionConfig, netns: Netns) -> Result<Session, ProbeError> {
    let started_attach = Instant::now();
    let mut rtnl = netns
        .run(RtnlSocket::open)?
        .map_err(|e| ProbeError::Runtime(format!("cannot open an rtnetlink socket: {e}")))?;
    let links = rtnl
        .links()
        .map_err(|e| ProbeError::Runtime(format!("cannot list interfaces: {e}")))?;

    let Targets {
        nic,
        devices,
        ports,
        vnis,
        scope,
        scope_inums,
    } = targets::resolve(cfg, &links, &mut rtnl, &netns)?;
    let mut hooks = Hooks::default();
    let mut unavailable = Vec::new();
    let nic_cfg = NicConfig {
        vxlan_ports: ports.clone(),
        vnis,
        hook: cfg.nic_hook,
        mode: cfg.xdp_mode,
        tc_mode: cfg.tc_mode,
        log: cfg.bpf_log,
    };
    match crate::hooks::nic::attach_nic(&netns, &nic, &nic_cfg) {
        Ok(hook) => hooks.push(Box::new(hook)),
        Err(reason) => unavailable.push(Unavailable {
            stage: HookKind::Nic,
            iface: nic.name.clone(),
            reason: reason.to_string(),
        }),
    }
    let device_ctx = DeviceContext {
        bpf_log: cfg.bpf_log,
        tc_mode: cfg.tc_mode,
    };
    let mut tunnel_ifindexes = Vec::new();
    for dev in &devices {
        match registry::attach_device(&device_ctx, &netns, dev) {
            Some(Ok(hook)) => {
                tunnel_ifindexes.push(dev.ifindex);
                hooks.push(hook);
            }
            Some(Err(reason)) => unavailable.push(Unavailable {
                stage: HookKind::Vxlan,
                iface: dev.name.clone(),
                reason: reason.to_string(),
            }),
            None => {}
        }
    }
    let tracing = TracingContext {
        latency: cfg.latency != LatencyMode::Off,
        latency_sample: cfg.latency_sample,
        latency_max_runs: (cfg.latency == LatencyMode::Auto).then_some(cfg.latency_max_runs),
        steering: cfg.steering,
        stage_sampling: cfg.stage_latency.or(cfg.trace_magic.map(|_| 1)),
        stage_window: cfg
            .stage_window
            .map(|(on, every)| (super::seconds(on), super::seconds(every))),
        trace_magic: cfg.trace_magic,
        bpf_log: cfg.bpf_log,
        scope_inums,
        tunnel_ports: ports,
        nic_ifindex: nic.ifindex,
        // Where the drop probe counts outer VXLAN drops and steering
        // follows the NIC's packets.
        nic_netns: netns
            .inum()
            .map_err(|e| format!("cannot identify netns {}: {e}", netns.label())),
        tunnel_ifindexes,
    };
    registry::attach_tracing(&tracing, &mut hooks, &mut unavailable);
    if ![HookKind::Nic, HookKind::Vxlan, HookKind::Drops]
        .iter()
        .any(|k| hooks.has(*k))
    {
        let reasons: Vec<_> = unavailable
            .iter()
            .map(|u| format!("{} on {}: {}", u.stage, u.iface, u.reason))
            .collect();
        return Err(ProbeError::Runtime(format!(
            "no probe could be attached: {}",
            reasons.join("; ")
        )));
    }
    // Read back the XDP mode the kernel chose (auto picks native where it can).
    let after = rtnl
        .links()
        .map_err(|e| ProbeError::Runtime(format!("cannot list interfaces: {e}")))?;
    if let Some(hook) = hooks.get_mut::<NicHook>() {
        if let Some(link) = after.iter().find(|l| l.ifindex == hook.ifindex) {
            hook.set_hook_from(link);
        }
    }
    let mut topology = Topology {
        netns: netns.label(),
        unavailable,
        drop_scope: cfg.drop_netns.clone(),
        ..Topology::default()
    };
    for hook in hooks.iter() {
        hook.describe(&mut topology);
    }
    let mut events: Vec<Event> = hooks.iter_mut().flat_map(|h| h.take_events()).collect();
    for u in topology.unavailable.iter_mut() {
        // The whole reason (a verifier log can be long) is the event's;
        // reports carry its first line.
        events.push(Event::Unavailable {
            stage: u.stage,
            iface: u.iface.clone(),
            reason: u.reason.clone(),
        });
        u.reason = super::first_line(&u.reason);
    }
    let mut bpf_stats = None;
    if cfg.self_cost {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => bpf_stats = Some(fd),
            Err(e) => events.push(Event::SelfStatsUnavailable {
                error: e.to_string(),
            }),
        }
    }
    // Without --drop-netns drops are counted in every namespace: their
    // counters are read in every one with a name (sample.rs).
    let snmp_netns = (!scope.is_empty()).then_some(scope);
    let mut session = Session {
        netns,
        rtnl,
        hooks: Hooks::default(),
        device_ctx,
        snmp_netns,
        names: Names::default(),
        bpf_stats,
        self_cost: cfg.self_cost,
        attach_ms: started_attach.elapsed().as_secs_f64() * 1e3,
        settings: None,
        topology,
        history: History::default(),
        started: Instant::now(),
        bpf_logs: Vec::new(),
        on_event: cfg.on_event,
    };
    for hook in hooks.iter_mut() {
        session.read_bpf_log(hook.as_mut());
    }
    session.hooks = hooks;
    // Settings are read after attaching (not counted in attach_ms); failing
    // to read them only costs the advice.
    let mut watched: Vec<&Link> = vec![&nic];
    watched.extend(links.iter().filter(|l| {
        session
            .hooks
            .iter()
            .any(|h| h.kind() == HookKind::Vxlan && h.ifindex() == Some(l.ifindex))
    }));
    session.settings = crate::kernel::tune::snapshot(&session.netns, &watched, &links).ok();
    session.emit_all(events);
    let attached = Event::Attached {
        ms: session.attach_ms,
        netns: session.netns.label(),
        hooks: session.topology.hooks_line(),
    };
    session.emit(attached);
    // Everything said so far is attaching's: at the run's start.
    for e in &mut session.history.events {
        e.at_s = 0.0;
    }
    Ok(session)
}
