//! Attaching a session: the NIC and VXLAN devices resolved from the
//! configuration, then each stage's hook (a stage that cannot attach is
//! reported unavailable and the others run), then the tracing hooks.

use std::time::Instant;

use super::{
    targets::{self, Targets},
    Session, SessionConfig,
};
use crate::{
    error::ProbeError,
    hooks::{
        self,
        drops::DropHook,
        latency::{LatencyHook, LatencyMode},
        nic::NicConfig,
        stage_latency::StageHook,
        steering::SteerHook,
        HookError,
    },
    kernel::netns::Netns,
    kernel::rtnl::{Link, RtnlSocket},
};
use probe_model::{
    model::{DevInfo, HookKind, NicInfo, StageLatencyInfo, Topology, Unavailable},
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

    let targets = targets::resolve(cfg, &links, &mut rtnl, &netns)?;
    let Targets {
        nic,
        devices,
        ports,
        vnis,
        scope,
        scope_inums,
    } = targets;
    let mut unavailable = Vec::new();
    let nic_cfg = NicConfig {
        vxlan_ports: ports.clone(),
        vnis,
        hook: cfg.nic_hook,
        mode: cfg.xdp_mode,
        tc_mode: cfg.tc_mode,
        log: cfg.bpf_log,
    };
    let mut nic_hook = match hooks::nic::attach_nic(&netns, &nic, &nic_cfg) {
        Ok(hook) => Some(hook),
        Err(reason) => {
            unavailable.push(Unavailable {
                stage: HookKind::Nic,
                iface: nic.name.clone(),
                reason: reason.to_string(),
            });
            None
        }
    };
    let mut dev_hooks = Vec::new();
    for dev in &devices {
        match hooks::vxlan::attach_vxlan_dev(&netns, dev, cfg.bpf_log, cfg.tc_mode) {
            Ok(hook) => dev_hooks.push(hook),
            Err(reason) => unavailable.push(Unavailable {
                stage: HookKind::Vxlan,
                iface: dev.name.clone(),
                reason: reason.to_string(),
            }),
        }
    }
    let Tracing {
        drops: drop_hook,
        latency: latency_hook,
        steering: steer_hook,
        stage_latency: stage_hook,
    } = attach_tracing(
        cfg,
        &netns,
        &nic,
        &dev_hooks.iter().map(|h| h.ifindex).collect::<Vec<_>>(),
        &ports,
        &scope_inums,
        &mut unavailable,
    );
    if nic_hook.is_none() && dev_hooks.is_empty() && drop_hook.is_none() {
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
    if let Some(hook) = nic_hook.as_mut() {
        if let Some(link) = after.iter().find(|l| l.ifindex == hook.ifindex) {
            hook.set_hook_from(link);
        }
        if let Some(id) = hook.foreign_xdp {
            eprintln!(
                "probe: {} already has an XDP program (id {id}) that is not ours; \
                 leaving it alone and counting the NIC stage at TCX ingress instead",
                hook.iface
            );
        }
    }
    for u in unavailable.iter_mut() {
        // The whole reason (a verifier log can be long) goes to stderr once;
        // reports carry its first line.
        eprintln!(
            "probe: stage {} on {} unavailable: {}",
            u.stage, u.iface, u.reason
        );
        u.reason = super::first_line(&u.reason);
    }
    let stage_window = stage_hook
        .as_ref()
        .and_then(|(_, info)| info.window)
        .map(|(on, every)| super::stage_window::StageWindow::new(on, every, Instant::now()));
    let topology = Topology {
        netns: netns.label(),
        nic: nic_hook.as_ref().map(|h| NicInfo {
            iface: h.iface.clone(),
            hook: h.hook.clone(),
            queue_slots: h.queue_slots,
            vnis: h.vnis.clone(),
        }),
        vxlan_devs: dev_hooks
            .iter()
            .map(|h| DevInfo {
                iface: h.iface.clone(),
                hook: h.hook.into(),
                vni: h.vni,
                port: h.port,
            })
            .collect(),
        unavailable,
        reasons: drop_hook.as_ref().map(|h| h.reasons.clone()),
        latency: latency_hook.is_some(),
        latency_max_runs: (cfg.latency == LatencyMode::Auto && latency_hook.is_some())
            .then_some(cfg.latency_max_runs),
        steering: steer_hook.is_some(),
        stage_latency: stage_hook.as_ref().map(|(_, info)| info.clone()),
        drop_scope: cfg.drop_netns.clone(),
        gaps: Vec::new(),
    };
    let mut bpf_stats = None;
    if cfg.self_cost {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => bpf_stats = Some(fd),
            Err(e) => eprintln!(
                "probe: --self: cannot enable BPF run-time statistics ({e}); reporting CPU and memory only"
            ),
        }
    }
    // Without --drop-netns drops are counted in every namespace: their
    // counters are read in every one with a name (sample.rs).
    let snmp_netns = (!scope.is_empty()).then_some(scope);
    let dev_hooks_len = dev_hooks.len();
    let session_has_latency = latency_hook.is_some();
    let session = Session {
        netns,
        rtnl,
        nic: nic_hook,
        devs: dev_hooks,
        drops: drop_hook,
        latency: latency_hook,
        steering: steer_hook,
        stage_latency: stage_hook.map(|(hook, _)| hook),
        snmp_netns,
        names: Names::default(),
        bpf_stats,
        self_cost: cfg.self_cost,
        attach_ms: started_attach.elapsed().as_secs_f64() * 1e3,
        settings: None,
        topology,
        started: Instant::now(),
        last_device_check: Instant::now(),
        governor: (cfg.latency == LatencyMode::Auto && session_has_latency)
            .then(|| super::governor::Governor::new(cfg.latency_max_runs, Instant::now())),
        stage_window,
        devs_retry_at: vec![None; dev_hooks_len],
        bpf_log: cfg.bpf_log,
        tc_mode: cfg.tc_mode,
        bpf_logs: Vec::new(),
    };
    // Settings are read after attaching (not counted in attach_ms); failing
    // to read them only costs the advice.
    let mut devices: Vec<&Link> = vec![&nic];
    devices.extend(
        links
            .iter()
            .filter(|l| session.devs.iter().any(|d| d.ifindex == l.ifindex)),
    );
    let mut session = session;
    session.bpf_logs = session
        .hooks_mut()
        .filter_map(|h| cfg.bpf_log.reader(h.object_mut()))
        .collect();
    session.settings = crate::kernel::tune::snapshot(&session.netns, &devices, &links).ok();
    if !cfg.quiet {
        eprintln!(
            "probe: attached in {:.0} ms (netns {}): {}",
            session.attach_ms,
            session.netns.label(),
            super::describe_hooks(&session.topology)
        );
    }
    Ok(session)
}

/// The tracing hooks a session asked for: the drop probe always, the
/// latency and steering probes on request.
struct Tracing {
    drops: Option<DropHook>,
    latency: Option<LatencyHook>,
    steering: Option<SteerHook>,
    stage_latency: Option<(StageHook, StageLatencyInfo)>,
}

/// Loads and attaches the tracing hooks; each one that cannot attach is
/// added to `unavailable` and the others run.
fn attach_tracing(
    cfg: &SessionConfig,
    netns: &Netns,
    nic: &Link,
    vxlan_ifindexes: &[u32],
    ports: &[u16],
    scope_inums: &[u32],
    unavailable: &mut Vec<Unavailable>,
) -> Tracing {
    // The tracing probes. Memory: the kernel's BTF is ~5 MB that parse to
    // ~10 MB, and each object load has a large short-lived allocation of its
    // own. So: read what the probes need from our own compact parse, free it,
    // load the objects, and only then let aya parse the BTF for the tp_btf
    // attach: never two of these at once (peak RSS, BENCHMARKS.md).
    let (drop_setup, latency_setup, steer_setup, stage_setup) =
        match crate::kernel::btf::Btf::from_kernel() {
            Ok(btf) => (
                hooks::drops::setup(&btf),
                hooks::latency::setup(&btf),
                hooks::steering::setup(&btf),
                hooks::stage_latency::setup(&btf),
            ),
            Err(e) => (
                Err(HookError::Kernel(e.clone())),
                Err(HookError::Kernel(e.clone())),
                Err(HookError::Kernel(e.clone())),
                Err(HookError::Kernel(e)),
            ),
        };
    // The NIC's namespace: where the drop probe counts outer VXLAN drops (0:
    // nowhere, if unknown) and where steering follows the NIC's packets.
    let nic_netns = netns
        .inum()
        .map_err(|e| format!("cannot identify netns {}: {e}", netns.label()));
    let nic_netns_inum = nic_netns.as_ref().copied().unwrap_or(0);
    // What `probe trace` needs to name its drops: the drop setup's reasons.
    let trace_not_drops = drop_setup
        .as_ref()
        .map(|d| d.reasons.not_drop_values())
        .map_err(ToString::to_string);
    let mut drop_hook = drop_setup.and_then(|setup| {
        hooks::drops::load_drops(setup, scope_inums, ports, nic_netns_inum, cfg.bpf_log)
    });
    let mut latency_hook = if cfg.latency != LatencyMode::Off {
        latency_setup
            .and_then(|setup| {
                let setup = hooks::latency::LatencySetup {
                    sample_every: cfg.latency_sample,
                    ..setup
                };
                hooks::latency::load_latency(setup, cfg.bpf_log)
            })
            .map(Some)
    } else {
        Ok(None)
    };
    let mut steer_hook = if cfg.steering {
        let nic_netns = nic_netns.clone().map_err(HookError::Kernel);
        steer_setup
            .and_then(|offsets| {
                hooks::steering::load_steering(
                    offsets,
                    nic.ifindex,
                    nic_netns?,
                    scope_inums,
                    cfg.bpf_log,
                )
            })
            .map(Some)
    } else {
        Ok(None)
    };
    let stage_sampling = cfg.stage_latency.or(cfg.trace_magic.map(|_| 1));
    let mut stage_hook = match stage_sampling {
        Some(sample_every) => {
            let node_netns = nic_netns.clone().map_err(HookError::Kernel);
            stage_setup
                .and_then(|setup| {
                    let hook = hooks::stage_latency::load_stage_latency(
                        &setup,
                        nic.ifindex,
                        node_netns?,
                        vxlan_ifindexes,
                        sample_every,
                        cfg.trace_magic,
                        trace_not_drops.as_ref().ok().copied(),
                        cfg.bpf_log,
                    )?;
                    let info = StageLatencyInfo {
                        sample_every: sample_every.max(1),
                        socket_stages: setup.socket_unavailable.is_none(),
                        socket_unavailable: setup.socket_unavailable,
                        trace: cfg.trace_magic.is_some(),
                        window: cfg
                            .stage_window
                            .filter(|_| cfg.trace_magic.is_none())
                            .map(|(on, every)| (super::seconds(on), super::seconds(every))),
                        drops_unavailable: match (&cfg.trace_magic, &trace_not_drops) {
                            (Some(_), Err(e)) => Some(e.clone()),
                            _ => None,
                        },
                    };
                    Ok((hook, info))
                })
                .map(Some)
        }
        None => Ok(None),
    };
    if drop_hook.is_ok()
        || matches!(latency_hook, Ok(Some(_)))
        || matches!(steer_hook, Ok(Some(_)))
        || matches!(stage_hook, Ok(Some(_)))
    {
        match aya::Btf::from_sys_fs() {
            Ok(btf) => {
                if let Ok(hook) = &mut drop_hook {
                    if let Err(e) = hook.attach(&btf) {
                        drop_hook = Err(e);
                    }
                }
                if let Ok(Some(hook)) = &mut latency_hook {
                    if let Err(e) = hook.attach(&btf) {
                        latency_hook = Err(e);
                    }
                }
                if let Ok(Some(hook)) = &mut steer_hook {
                    if let Err(e) = hook.attach(&btf) {
                        steer_hook = Err(e);
                    }
                }
                if let Ok(Some((hook, _))) = &mut stage_hook {
                    if let Err(e) = hook.attach(&btf) {
                        stage_hook = Err(e);
                    }
                }
            }
            Err(e) => {
                let e = format!("reading the kernel's BTF: {e}");
                drop_hook = Err(HookError::Kernel(e.clone()));
                latency_hook = Err(HookError::Kernel(e.clone()));
                steer_hook = Err(HookError::Kernel(e.clone()));
                stage_hook = Err(HookError::Kernel(e));
            }
        }
    }
    // Give the freed parse buffers back to the system.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let mut tracing_stage = |stage: HookKind, reason: Option<String>| {
        if let Some(reason) = reason {
            unavailable.push(Unavailable {
                stage,
                iface: "*".into(),
                reason,
            });
        }
    };
    tracing_stage(
        HookKind::Drops,
        drop_hook.as_ref().err().map(ToString::to_string),
    );
    tracing_stage(
        HookKind::Softirq,
        latency_hook.as_ref().err().map(ToString::to_string),
    );
    tracing_stage(
        HookKind::Steering,
        steer_hook.as_ref().err().map(ToString::to_string),
    );
    tracing_stage(
        HookKind::StageLatency,
        stage_hook.as_ref().err().map(ToString::to_string),
    );
    // The socket stages alone missing: the others run, and the report says why.
    if let Ok(Some((_, info))) = &stage_hook {
        tracing_stage(HookKind::StageLatency, info.socket_unavailable.clone());
    }
    let stage_hook = stage_hook.ok().flatten();
    let steer_hook = steer_hook.ok().flatten();
    let drop_hook = drop_hook.ok();
    let latency_hook = latency_hook.ok().flatten();
    Tracing {
        drops: drop_hook,
        latency: latency_hook,
        steering: steer_hook,
        stage_latency: stage_hook,
    }
}
