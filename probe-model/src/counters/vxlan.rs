//! A VXLAN device hook's counters: decapsulated skbs, segments and bytes per
//! inner class and CPU.

use probe_common::DevCounters;

/// Raw cumulative counters of one VXLAN-device hook: `per_cpu[cpu]`.
#[derive(Clone, Debug, Default)]
pub struct DevCounts {
    pub per_cpu: Vec<DevCounters>,
}

impl DevCounts {
    /// Adds `other` per CPU and class.
    pub fn add(&mut self, other: &DevCounts) {
        for (mine, theirs) in self.per_cpu.iter_mut().zip(&other.per_cpu) {
            for (a, b) in [
                (&mut mine.skbs, &theirs.skbs),
                (&mut mine.segments, &theirs.segments),
                (&mut mine.bytes, &theirs.bytes),
            ] {
                for (a, b) in a.iter_mut().zip(b) {
                    *a += b;
                }
            }
        }
    }
}
