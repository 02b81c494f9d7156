//! The UDP ports that carry VXLAN, shared by the NIC counters and the drop
//! probe (which reads the inner addresses of VXLAN packets dropped before
//! decapsulation).

use probe_common::{DEFAULT_VXLAN_PORTS, MAX_VXLAN_PORTS};

// Set by the loader. `read_volatile` keeps the compiler from folding the defaults.
#[unsafe(no_mangle)]
static VXLAN_PORTS: [u16; MAX_VXLAN_PORTS] = DEFAULT_VXLAN_PORTS;

// Element-wise volatile reads that stop early: copying the whole array per
// packet (one volatile read of the array) cost several ns in BPF_PROG_TEST_RUN.

/// Ports are packed from slot 0; a 0 ends the list.
#[inline(always)]
pub(crate) fn is_vxlan_port(port: u16) -> bool {
    let mut i = 0;
    while i < MAX_VXLAN_PORTS {
        let p = unsafe { core::ptr::read_volatile(&VXLAN_PORTS[i]) };
        if p == 0 {
            return false;
        }
        if p == port {
            return true;
        }
        i += 1;
    }
    false
}
