//! Devices that come and go: a flanneld restart deletes and recreates
//! flannel.1; the session re-attaches to the successor (through the hooks'
//! registry, by the device's kind) and carries the counters over, marking
//! the gap.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::{
    controllers::{Controller, Step},
    Session,
};
use probe_model::{
    events::Event,
    model::{Gap, HookKind},
};

/// How often the probe looks for watched VXLAN devices that were deleted or
/// recreated. A lookup by name (SIOCGIFINDEX) in the watched namespace: cheap.
const DEVICE_CHECK: Duration = Duration::from_millis(200);

/// After a failed re-attach, how long until the next try (each try loads
/// and verifies the programs).
const RETRY: Duration = Duration::from_secs(1);

/// Finds VXLAN devices that disappeared or were replaced by a device of the
/// same name (a flanneld restart), opens a gap for each, and attaches to the
/// successor, carrying the counters over.
pub(super) struct DeviceFollower {
    last: Instant,
    /// Per device name: after a failed re-attach, when to try again.
    retry_at: BTreeMap<String, Instant>,
}

impl DeviceFollower {
    pub(super) fn new(now: Instant) -> DeviceFollower {
        DeviceFollower {
            last: now,
            retry_at: BTreeMap::new(),
        }
    }
}

impl Controller for DeviceFollower {
    fn due(&self, _: Instant) -> Instant {
        self.last + DEVICE_CHECK
    }

    fn run(&mut self, a: &mut Session, now: Instant) -> Step {
        self.last = now;
        // The tunnel devices' hooks (the NIC is not followed: without it
        // there is nothing to watch).
        let watched: Vec<(usize, HookKind, String, u32)> = a
            .hooks
            .iter()
            .enumerate()
            .filter(|(_, h)| h.kind() != HookKind::Nic)
            .filter_map(|(i, h)| Some((i, h.kind(), h.iface().to_string(), h.ifindex()?)))
            .collect();
        for (slot, kind, name, old_ifindex) in watched {
            self.check(a, slot, kind, name, old_ifindex);
        }
        Step::Continue
    }
}

impl DeviceFollower {
    /// One watched device, the hook at `slot` of the session's hooks.
    fn check(
        &mut self,
        a: &mut Session,
        slot: usize,
        stage: HookKind,
        name: String,
        old_ifindex: u32,
    ) {
        let now_index = match a.netns.run(|| crate::kernel::rtnl::ifindex_of(&name)) {
            Ok(index) => index,
            Err(_) => return,
        };
        if now_index == Some(old_ifindex) {
            return;
        }
        let now_s = a.started.elapsed().as_secs_f64();
        let open = a
            .history
            .gaps
            .iter()
            .rposition(|g| g.iface == name && g.reattached_s.is_none());
        let gap = match open {
            Some(gap) => gap,
            None => {
                a.emit(Event::DeviceGone {
                    iface: name.clone(),
                    ifindex: old_ifindex,
                });
                a.history.gaps.push(Gap {
                    stage,
                    iface: name.clone(),
                    lost_s: now_s,
                    reattached_s: None,
                    old_ifindex,
                    new_ifindex: None,
                });
                a.history.gaps.len() - 1
            }
        };
        let Some(new_index) = now_index else {
            return;
        };
        if self
            .retry_at
            .get(&name)
            .is_some_and(|t| Instant::now() < *t)
        {
            return;
        }
        let link = match a.rtnl.links() {
            Ok(links) => links.into_iter().find(|l| l.ifindex == new_index),
            Err(_) => None,
        };
        let Some(link) = link else { return };
        let Some(attached) = crate::hooks::registry::attach_device(&a.device_ctx, &a.netns, &link)
        else {
            return; // a device of another kind took the name
        };
        let mut hook = match attached {
            Ok(hook) => hook,
            // Perhaps not ready yet (still being set up): try again soon.
            Err(e) => {
                let error = super::first_line(&e.to_string());
                let event = Event::DeviceNotReady {
                    iface: name.clone(),
                    error,
                };
                return self.retry_later(a, name, event);
            }
        };
        // The old counts could not be carried into the new hook (a map read
        // or write failed): dropped, it detaches; tried again in 1 s, as an
        // attach that failed, and said once.
        let Some(old) = a.hooks.slot(slot) else {
            return;
        };
        let carried = hook.carry_over(old.as_ref());
        if let Err(e) = carried {
            let error = super::first_line(&e.to_string());
            let event = Event::CarryOverFailed {
                iface: name.clone(),
                error,
            };
            return self.retry_later(a, name, event);
        }
        self.retry_at.remove(&name);
        a.read_bpf_log(hook.as_mut());
        a.emit_all(hook.take_events());
        if let Some(h) = a.hooks.slot(slot) {
            *h = hook; // drops the old hook: its dead links close
        }
        let g = &mut a.history.gaps[gap];
        g.reattached_s = Some(a.started.elapsed().as_secs_f64());
        g.new_ifindex = Some(new_index);
        let after_s = g.reattached_s.unwrap_or(g.lost_s) - g.lost_s;
        a.emit(Event::DeviceBack {
            iface: name,
            ifindex: new_index,
            after_s,
        });
    }

    /// `name`'s successor could not be taken over: tried again in RETRY,
    /// and `why` said only for the first failure in a row.
    fn retry_later(&mut self, a: &mut Session, name: String, why: Event) {
        if !self.retry_at.contains_key(&name) {
            a.emit(why);
        }
        self.retry_at.insert(name, Instant::now() + RETRY);
    }
}
