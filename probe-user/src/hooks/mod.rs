//! The kernel hooks: each owns its BPF object (load, attach, read the raw
//! counters); dropping a hook detaches it. One file per hook:
//! nic (tc or XDP on the NIC), vxlan (tc on a VXLAN device), drops
//! (tp_btf/kfree_skb), latency (NET_RX softirq and NAPI), steering,
//! stage_latency (sampled packets timed stage by stage); tc.rs
//! attaches the two tc hooks (TCX, or the legacy filter), bpf_log.rs is
//! `--debug-bpf`.
//!
//! Every attachment but one is a bpf_link (XDP link, TCX link, tp_btf link):
//! the kernel detaches it when the last fd closes, so nothing stays attached
//! after exit, a crash or SIGKILL. The exception is the legacy tc filter of
//! kernels without TCX (tc.rs says how it is cleaned up). Each hooked
//! interface gets its own instance of its object, so its maps hold that
//! interface's counters only.

pub mod bpf_log;
pub mod drops;
pub mod latency;
pub mod lifecycle;
pub mod nic;
pub mod registry;
pub mod stage_latency;
pub mod steering;
pub mod tc;
pub mod vxlan;

use std::any::Any;

use aya::{maps::PerCpuArray, Ebpf, Pod};
use probe_model::{
    events::Event,
    model::{HookKind, Sample, Topology},
};

pub use bpf_log::{BpfLog, BpfLogReader};
pub use lifecycle::ReadAt;
pub use registry::Hooks;
pub use tc::TcMode;

/// A hook's life, the same for every one: set up from the kernel's facts and
/// the configuration, loaded, attached (a device hook when it is built, a
/// tracing hook by [`Hook::attach_tracing`]), read into the sample every
/// interval, described in the topology. It owns the BPF object it loaded;
/// dropping the hook closes its links and unloads its programs.
pub trait Hook: AsAny {
    /// The stage it counts, as reports name it.
    fn kind(&self) -> HookKind;

    fn object(&self) -> &Ebpf;
    fn object_mut(&mut self) -> &mut Ebpf;

    /// Verifies and attaches a tracing hook's programs; `kernel_btf` is aya's
    /// parse of the kernel's BTF (tp_btf needs it). Device hooks are attached
    /// when built.
    fn attach_tracing(&mut self, _kernel_btf: &aya::Btf) -> Result<(), HookError> {
        Ok(())
    }

    /// Reads its maps into `sample`. Every hook's maps are read one after
    /// the other, nothing in between: a packet crossing from one hook to the
    /// next between two reads stands as in flight, so the reads are kept as
    /// close together as they can be.
    fn read_into(&mut self, at: &ReadAt, sample: &mut Sample) -> Result<(), HookError>;

    /// Reads the kernel's own counters of its device into `sample` (driver
    /// statistics), once every hook's maps are read.
    fn read_kernel_into(&mut self, _at: &ReadAt, _sample: &mut Sample) {}

    /// Its part of what is watched (what reports and the ready file say).
    fn describe(&self, topology: &mut Topology);

    /// What attaching had to say (a stale filter removed, another owner's
    /// program left alone), taken once.
    fn take_events(&mut self) -> Vec<Event> {
        Vec::new()
    }

    /// The interface its programs are attached to; "*" for tracing hooks.
    fn iface(&self) -> &str {
        "*"
    }

    /// That interface's index; None for tracing hooks.
    fn ifindex(&self) -> Option<u32> {
        None
    }

    /// Takes over the counts of `old`, the hook on a device this one's
    /// device replaced (deleted and recreated under its name), so that
    /// totals never go back.
    fn carry_over(&mut self, _old: &dyn Hook) -> Result<(), HookError> {
        Err(HookError::Config(format!(
            "{} hooks do not carry counts over",
            self.kind()
        )))
    }

    /// Names of the programs this hook loaded (the object's others stay
    /// unloaded, e.g. nic_tc while nic_xdp is used), sorted.
    fn loaded_programs(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .object()
            .programs()
            .filter(|(_, p)| p.fd().is_ok())
            .map(|(name, _)| name)
            .collect();
        names.sort_unstable();
        names
    }

    /// Kernel ids of the programs this hook loaded (`bpftool prog show id N`).
    fn program_ids(&self) -> Vec<u32> {
        self.loaded_programs()
            .into_iter()
            .filter_map(|name| Some(self.object().program(name)?.info().ok()?.id()))
            .collect()
    }

    /// Runs and kernel run time of each loaded program (BPF stats, `--self`).
    fn program_stats(&self) -> Vec<probe_model::counters::selfcost::ProgramStat> {
        self.loaded_programs()
            .into_iter()
            .filter_map(|name| {
                crate::kernel::selfcost::program_stat(self.object(), name, self.iface())
            })
            .collect()
    }
}

/// A hook as `Any`, so a controller finds the one it steers by type
/// ([`Hooks::get_mut`]).
pub trait AsAny: Any {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Why a hook could not be loaded, attached or read. The watch loop reports
/// the stage as unavailable with this text and keeps the other stages.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// aya puts the verifier log into the error text: all of it is kept.
    #[error("loading the BPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {0} missing from the BPF object")]
    MissingProgram(String),
    #[error("program {name}: {source}")]
    Program {
        name: String,
        source: aya::programs::ProgramError,
    },
    #[error("the verifier rejected {name}: {source}")]
    Verifier {
        name: String,
        source: aya::programs::ProgramError,
    },
    /// `what` names the attach point, and what the kernel needs for it.
    #[error("{what}: {source}")]
    Attach {
        what: String,
        source: aya::programs::ProgramError,
    },
    #[error("map {0} missing from the BPF object")]
    MissingMap(String),
    #[error("map {name}: {source}")]
    Map {
        name: String,
        source: aya::maps::MapError,
    },
    /// Entering the network namespace of the device failed.
    #[error("{0}")]
    Netns(String),
    /// A fact of the running kernel is missing: a BTF type, member or enum.
    #[error("{0}")]
    Kernel(String),
    /// A setting the hook cannot take (e.g. too many namespaces).
    #[error("{0}")]
    Config(String),
}

impl From<HookError> for crate::error::ProbeError {
    fn from(e: HookError) -> Self {
        crate::error::ProbeError::Hook(Box::new(e))
    }
}

impl From<String> for HookError {
    /// The BTF reader reports what it could not find as text.
    fn from(e: String) -> Self {
        HookError::Kernel(e)
    }
}

pub(crate) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, HookError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| HookError::MissingProgram(name.into()))?;
    prog.try_into().map_err(|source| HookError::Program {
        name: name.into(),
        source,
    })
}

/// Verifies and attaches tp_btf programs of `ebpf`: `(program, tracepoint)`;
/// their links (see [`link_btf_tracepoints`]). `kernel_btf`: aya's parse of
/// the kernel's BTF (tp_btf needs the tracepoint's BTF id).
pub fn attach_btf_tracepoints<'a>(
    ebpf: &mut Ebpf,
    programs: &[(&'a str, &str)],
    kernel_btf: &aya::Btf,
) -> Result<Vec<(&'a str, aya::programs::tp_btf::BtfTracePointLinkId)>, HookError> {
    for (name, tracepoint) in programs {
        let prog: &mut aya::programs::BtfTracePoint = program(ebpf, name)?;
        prog.load(tracepoint, kernel_btf)
            .map_err(|source| HookError::Verifier {
                name: name.to_string(),
                source,
            })?;
    }
    link_btf_tracepoints(ebpf, programs)
}

/// Attaches loaded tp_btf programs of `ebpf`: `(program, tracepoint)`; their
/// links, to detach them before the object goes (`--latency auto`'s pause).
/// All or nothing: if one fails, those already attached are detached again,
/// so that a later retry cannot attach a program twice.
pub fn link_btf_tracepoints<'a>(
    ebpf: &mut Ebpf,
    programs: &[(&'a str, &str)],
) -> Result<Vec<(&'a str, aya::programs::tp_btf::BtfTracePointLinkId)>, HookError> {
    let mut links = Vec::new();
    for (name, tracepoint) in programs {
        let attached = program::<aya::programs::BtfTracePoint>(ebpf, name).and_then(|prog| {
            prog.attach().map_err(|source| HookError::Attach {
                what: format!("attaching to tp_btf/{tracepoint} failed"),
                source,
            })
        });
        match attached {
            Ok(id) => links.push((*name, id)),
            Err(e) => {
                let _ = unlink_btf_tracepoints(ebpf, links);
                return Err(e);
            }
        }
    }
    Ok(links)
}

/// Detaches the links [`link_btf_tracepoints`] returned; the programs stay
/// loaded, their maps and counts with them. Every link is tried (aya forgets
/// a link as it detaches it, failed or not); the first error is returned.
pub fn unlink_btf_tracepoints(
    ebpf: &mut Ebpf,
    links: Vec<(&str, aya::programs::tp_btf::BtfTracePointLinkId)>,
) -> Result<(), HookError> {
    let mut first_error = None;
    for (name, id) in links {
        let detached = program::<aya::programs::BtfTracePoint>(ebpf, name).and_then(|prog| {
            prog.detach(id).map_err(|source| HookError::Attach {
                what: format!("detaching {name}"),
                source,
            })
        });
        if let Err(e) = detached {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The tracepoints of `programs` (`(program, tracepoint)`) that the kernel's
/// BTF has no `btf_trace_*` typedef for: a tp_btf program cannot attach there.
pub(crate) fn missing_tracepoints<'a>(
    btf: &crate::kernel::btf::Btf,
    programs: &[(&str, &'a str)],
) -> Vec<&'a str> {
    programs
        .iter()
        .map(|(_, tp)| *tp)
        .filter(|tp| btf.typedef_fn_params(&format!("btf_trace_{tp}")).is_err())
        .collect()
}

/// Every entry of a per-CPU array: `result[index][cpu]`.
pub fn read_per_cpu<T: Pod>(
    ebpf: &Ebpf,
    name: &str,
    entries: u32,
) -> Result<Vec<Vec<T>>, HookError> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| HookError::MissingMap(name.into()))?;
    let map_error = map_error(name);
    let array = PerCpuArray::<_, T>::try_from(map).map_err(&map_error)?;
    (0..entries)
        .map(|i| {
            array
                .get(&i, 0)
                .map(|v| v.iter().copied().collect())
                .map_err(&map_error)
        })
        .collect()
}

/// The map `name` of `ebpf`, to write.
pub fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map, HookError> {
    ebpf.map_mut(name)
        .ok_or_else(|| HookError::MissingMap(name.into()))
}

/// What an error of the map `name` becomes.
pub fn map_error(name: &str) -> impl Fn(aya::maps::MapError) -> HookError + '_ {
    move |source| HookError::Map {
        name: name.into(),
        source,
    }
}
