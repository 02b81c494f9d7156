//! `--drop-netns`: the namespaces whose drops (and, with `--steering`, whose
//! socket reads) are counted. Shared by the drop and steering objects.

use probe_common::drops::MAX_SCOPE_NETNS;

/// Namespaces (inode numbers) in scope; SCOPE_COUNT 0 = all. Set by the loader.
#[unsafe(no_mangle)]
static SCOPE_NETNS: [u32; MAX_SCOPE_NETNS] = [0; MAX_SCOPE_NETNS];
#[unsafe(no_mangle)]
static SCOPE_COUNT: u32 = 0;

#[inline(always)]
pub(crate) fn in_scope(netns: u32) -> bool {
    let count = unsafe { core::ptr::read_volatile(&SCOPE_COUNT) } as usize;
    if count == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_SCOPE_NETNS && i < count {
        if unsafe { core::ptr::read_volatile(&SCOPE_NETNS[i]) } == netns {
            return true;
        }
        i += 1;
    }
    false
}
