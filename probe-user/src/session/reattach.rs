//! Devices that come and go: a flanneld restart deletes and recreates
//! flannel.1; the session re-attaches to the successor and carries the
//! counters over, marking the gap.

use std::time::{Duration, Instant};

use super::Session;
use crate::hooks::{self, Hook};
use probe_model::model::HookKind;

/// How often the probe looks for watched VXLAN devices that were deleted or
/// recreated. A lookup by name (SIOCGIFINDEX) in the watched namespace: cheap.
pub(super) const DEVICE_CHECK: Duration = Duration::from_millis(200);

/// Finds VXLAN devices that disappeared or were replaced by a device of the
/// same name (a flanneld restart), opens a gap for each, and attaches to the
/// successor, carrying the counters over.
pub(super) fn check_devices(a: &mut Session) {
    for i in 0..a.devs.len() {
        let (name, old_ifindex) = (a.devs[i].iface.clone(), a.devs[i].ifindex);
        let now_index = match a.netns.run(|| crate::kernel::rtnl::ifindex_of(&name)) {
            Ok(index) => index,
            Err(_) => continue,
        };
        if now_index == Some(old_ifindex) {
            continue;
        }
        let now_s = a.started.elapsed().as_secs_f64();
        let open = a
            .topology
            .gaps
            .iter()
            .rposition(|g| g.iface == name && g.reattached_s.is_none());
        let gap = match open {
            Some(gap) => gap,
            None => {
                eprintln!(
                    "probe: {name} (ifindex {old_ifindex}) is gone; its hooks went with it. \
                     Waiting for it to come back"
                );
                a.topology.gaps.push(probe_model::model::Gap {
                    stage: HookKind::Vxlan,
                    iface: name.clone(),
                    lost_s: now_s,
                    reattached_s: None,
                    old_ifindex,
                    new_ifindex: None,
                });
                a.topology.gaps.len() - 1
            }
        };
        let Some(new_index) = now_index else {
            continue;
        };
        if a.devs_retry_at[i].is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let link = match a.rtnl.links() {
            Ok(links) => links.into_iter().find(|l| l.ifindex == new_index),
            Err(_) => None,
        };
        let Some(link) = link else { continue };
        let mut hook = match hooks::vxlan::attach_vxlan_dev(&a.netns, &link, a.bpf_log, a.tc_mode) {
            Ok(hook) => hook,
            Err(e) => {
                // Perhaps not ready yet (still being set up): try again soon.
                if a.devs_retry_at[i].is_none() {
                    eprintln!(
                        "probe: cannot attach to the new {name} yet: {}",
                        super::first_line(&e.to_string())
                    );
                }
                a.devs_retry_at[i] = Some(Instant::now() + Duration::from_secs(1));
                continue;
            }
        };
        // The old counts could not be carried into the new hook (a map read
        // or write failed): dropped, it detaches; tried again in 1 s, as an
        // attach that failed, and said once.
        if let Err(e) = hook.carry_over(&a.devs[i]) {
            if a.devs_retry_at[i].is_none() {
                eprintln!(
                    "probe: cannot carry {name}'s counts over to its new hooks yet: {}",
                    super::first_line(&e.to_string())
                );
            }
            a.devs_retry_at[i] = Some(Instant::now() + Duration::from_secs(1));
            continue;
        }
        a.devs_retry_at[i] = None;
        a.bpf_logs.extend(a.bpf_log.reader(hook.object_mut()));
        a.devs[i] = hook; // drops the old hook: its dead links close
        let g = &mut a.topology.gaps[gap];
        g.reattached_s = Some(a.started.elapsed().as_secs_f64());
        g.new_ifindex = Some(new_index);
        eprintln!(
            "probe: {name} is back (ifindex {new_index}); re-attached {:.2} s after it was found gone",
            g.reattached_s.unwrap() - g.lost_s
        );
    }
}
