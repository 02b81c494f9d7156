//! The registry: every hook a session can attach, in path order, and the
//! one procedure that attaches them. A new tracing hook is one file with its
//! [`TracingEntry`] and one line in [`TRACING`]; a new kind of tunnel device
//! is one file with its [`DeviceEntry`] and one line in [`TUNNELS`].

use probe_model::model::{HookKind, Sample, Unavailable};

pub use super::lifecycle::*;
use super::{drops, latency, stage_latency, steering, vxlan, Hook, HookError};
use crate::kernel::{btf::Btf, netns::Netns, rtnl::Link};

/// The tracing hooks, in the order they are set up, attached and reported.
pub const TRACING: [TracingEntry; 4] = [
    drops::TRACING,
    latency::TRACING,
    steering::TRACING,
    stage_latency::TRACING,
];

/// The tunnel devices a hook is attached to, by their rtnetlink kind.
pub const TUNNELS: [DeviceEntry; 1] = [vxlan::DEVICE];

/// Attaches the hook for `link`'s kind (None: no tunnel of a kind the
/// probe knows).
pub fn attach_device(
    ctx: &DeviceContext,
    netns: &Netns,
    link: &Link,
) -> Option<Result<Box<dyn Hook>, HookError>> {
    let kind = link.kind.as_deref()?;
    let entry = TUNNELS.iter().find(|e| e.kind == kind)?;
    Some((entry.attach)(netns, link, ctx))
}

/// Sets up, loads and attaches every tracing hook `ctx` asks for, in
/// [`TRACING`] order, into `hooks`; each one that cannot is added to
/// `unavailable` and the others run.
///
/// Memory: the kernel's BTF is ~5 MB that parse to ~10 MB, and each object
/// load has a large short-lived allocation of its own. So each hook reads
/// what it needs from the probe's own compact parse, which is freed before
/// the objects load, and only then does aya parse the BTF for the tp_btf
/// attach: never two of these at once (peak RSS, BENCHMARKS.md).
pub fn attach_tracing(ctx: &TracingContext, hooks: &mut Hooks, unavailable: &mut Vec<Unavailable>) {
    let wanted: Vec<&TracingEntry> = TRACING.iter().filter(|e| (e.wanted)(ctx)).collect();
    if wanted.is_empty() {
        return;
    }
    let loaders: Vec<Result<Loader, HookError>> = match Btf::from_kernel() {
        Ok(btf) => wanted.iter().map(|e| (e.setup)(&btf, ctx)).collect(),
        Err(e) => wanted
            .iter()
            .map(|_| Err(HookError::Kernel(e.clone())))
            .collect(),
    };
    let mut loaded: Vec<Result<Box<dyn Hook>, HookError>> = loaders
        .into_iter()
        .map(|loader| loader.and_then(|load| load()))
        .collect();
    if loaded.iter().any(Result::is_ok) {
        match aya::Btf::from_sys_fs() {
            Ok(btf) => {
                for slot in &mut loaded {
                    if let Ok(hook) = slot {
                        if let Err(e) = hook.attach_tracing(&btf) {
                            *slot = Err(e);
                        }
                    }
                }
            }
            Err(e) => {
                for slot in loaded.iter_mut().filter(|s| s.is_ok()) {
                    *slot = Err(HookError::Kernel(format!("reading the kernel's BTF: {e}")));
                }
            }
        }
    }
    // Give the freed parse buffers back to the system.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    for (entry, result) in wanted.into_iter().zip(loaded) {
        match result {
            Ok(hook) => hooks.push(hook),
            Err(e) => unavailable.push(Unavailable {
                stage: entry.kind,
                iface: "*".into(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Every attached hook, in path order: the NIC, the tunnel devices, the
/// tracing hooks.
#[derive(Default)]
pub struct Hooks(Vec<Box<dyn Hook>>);

impl Hooks {
    pub fn push(&mut self, hook: Box<dyn Hook>) {
        self.0.push(hook);
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn Hook> {
        self.0.iter().map(|h| h.as_ref())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Box<dyn Hook>> {
        self.0.iter_mut()
    }

    /// Every hook of type `T`, in order.
    pub fn all<T: Hook>(&self) -> impl Iterator<Item = &T> {
        self.0.iter().filter_map(|h| h.as_any().downcast_ref())
    }

    pub fn get<T: Hook>(&self) -> Option<&T> {
        self.all().next()
    }

    pub fn get_mut<T: Hook>(&mut self) -> Option<&mut T> {
        self.0
            .iter_mut()
            .find_map(|h| h.as_any_mut().downcast_mut())
    }

    /// Whether any hook counts `kind`.
    pub fn has(&self, kind: HookKind) -> bool {
        self.iter().any(|h| h.kind() == kind)
    }

    /// The hook at `index` (an index into [`Hooks::iter`]), to replace.
    pub fn slot(&mut self, index: usize) -> Option<&mut Box<dyn Hook>> {
        self.0.get_mut(index)
    }

    /// Reads every hook's maps into `sample`, in path order, then the
    /// kernel counters of their devices.
    pub fn read_into(&mut self, at: &ReadAt, sample: &mut Sample) -> Result<(), HookError> {
        self.0
            .iter_mut()
            .try_for_each(|h| h.read_into(at, sample))?;
        for h in &mut self.0 {
            h.read_kernel_into(at, sample);
        }
        Ok(())
    }
}
