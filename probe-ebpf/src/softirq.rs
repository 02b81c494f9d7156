//! NET_RX softirq timing (irq:softirq_raise/entry/exit) and NAPI polls
//! (napi:napi_poll), all tp_btf. They run once per softirq run or NAPI poll
//! (a poll handles up to `budget` packets), never per packet.
//!
//! Wait = first raise -> entry, run = entry -> exit, per CPU: raise, entry and
//! exit of NET_RX happen on the same CPU (the pending bit is per CPU).
//!
//! Every run is counted; one in SOFTIRQ_SAMPLE_EVERY is timed. The choice is
//! made at the run's first raise (a countdown per CPU), so a timed run has
//! both its wait and its run time, and the untimed ones cost no clock read
//! and no comm read.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use probe_common::{
    drops::{entry_in, mix},
    latency::{
        bucket, NapiKey, NapiOffsets, NapiTable, SoftirqCpu, HIST_BUCKETS, RAISED_UNSAMPLED,
        WORK_BUCKETS,
    },
};

use crate::kernel::{dev_ids, field};

/// NET_RX_SOFTIRQ, set by the loader from the kernel's BTF.
#[unsafe(no_mangle)]
static NET_RX_VEC: u32 = 3;
/// Time one run in this many per CPU; set by the loader (`--latency-sample`).
#[unsafe(no_mangle)]
static SOFTIRQ_SAMPLE_EVERY: u32 = 1;
#[unsafe(no_mangle)]
static NAPI_OFFSETS: NapiOffsets = NapiOffsets {
    napi_dev: 0,
    dev_ifindex: 0,
    dev_nd_net: 0,
    net_inum: 0,
};

#[map]
static SOFTIRQ: PerCpuArray<SoftirqCpu> = PerCpuArray::with_max_entries(1, 0);
#[map]
static NAPI: PerCpuArray<NapiTable> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn net_rx(ctx: &BtfTracePointContext) -> Option<&'static mut SoftirqCpu> {
    let vec: u32 = ctx.arg(0);
    if vec != unsafe { core::ptr::read_volatile(&NET_RX_VEC) } {
        return None;
    }
    // SAFETY: this CPU's copy; the tracepoints of one softirq vector do not
    // nest on a CPU, and tp_btf programs skip a recursive run.
    SOFTIRQ.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[btf_tracepoint(function = "softirq_raise")]
pub fn net_rx_raise(ctx: BtfTracePointContext) -> i32 {
    if let Some(s) = net_rx(&ctx) {
        // The first raise since the last entry decides whether the run is timed.
        if s.raised_at == 0 {
            if s.countdown == 0 {
                let every = unsafe { core::ptr::read_volatile(&SOFTIRQ_SAMPLE_EVERY) };
                s.countdown = every.saturating_sub(1) as u64;
                s.raised_at = unsafe { bpf_ktime_get_ns() };
            } else {
                s.countdown -= 1;
                s.raised_at = RAISED_UNSAMPLED;
            }
        }
    }
    0
}

#[btf_tracepoint(function = "softirq_entry")]
pub fn net_rx_entry(ctx: BtfTracePointContext) -> i32 {
    if let Some(s) = net_rx(&ctx) {
        s.entries += 1;
        let raised_at = s.raised_at;
        s.raised_at = 0;
        // Untimed: not chosen at its raise, or no raise seen (raised before
        // the probe attached).
        if raised_at <= RAISED_UNSAMPLED {
            s.entered_at = 0;
            return 0;
        }
        let now = unsafe { bpf_ktime_get_ns() };
        s.entered_at = now;
        // Decided once per run; exit reuses it (the comm read is the most
        // expensive part of these programs).
        s.in_ksoftirqd = is_ksoftirqd() as u64;
        s.ksoftirqd_entries += s.in_ksoftirqd;
        if now >= raised_at {
            observe(
                &mut s.wait,
                &mut s.wait_sum,
                &mut s.wait_max,
                now - raised_at,
            );
        }
    }
    0
}

#[btf_tracepoint(function = "softirq_exit")]
pub fn net_rx_exit(ctx: BtfTracePointContext) -> i32 {
    if let Some(s) = net_rx(&ctx) {
        if s.entered_at != 0 {
            let now = unsafe { bpf_ktime_get_ns() };
            if now >= s.entered_at {
                let run = now - s.entered_at;
                observe(&mut s.run, &mut s.run_sum, &mut s.run_max, run);
                if s.in_ksoftirqd != 0 {
                    s.ksoftirqd_run_sum += run;
                }
            }
            s.entered_at = 0;
        }
    }
    0
}

/// Adds `v` ns to a log2 histogram, its sum and its maximum.
#[inline(always)]
fn observe(hist: &mut [u64; HIST_BUCKETS], sum: &mut u64, max: &mut u64, v: u64) {
    hist[bucket(v, HIST_BUCKETS) & (HIST_BUCKETS - 1)] += 1;
    *sum += v;
    if v > *max {
        *max = v;
    }
}

/// Whether the softirq runs in a ksoftirqd/N thread rather than on irq exit
/// or when a task re-enables bottom halves.
#[inline(always)]
fn is_ksoftirqd() -> bool {
    match bpf_get_current_comm() {
        Ok(comm) => comm.starts_with(b"ksoftirqd/"),
        Err(_) => false,
    }
}

/// TP_PROTO(struct napi_struct *napi, int work, int budget), Linux 4.14+.
#[btf_tracepoint(function = "napi_poll")]
pub fn napi_poll(ctx: BtfTracePointContext) -> i32 {
    let napi: *const u8 = ctx.arg(0);
    let work: i32 = ctx.arg(1);
    let budget: i32 = ctx.arg(2);
    let o = unsafe { core::ptr::read_volatile(&NAPI_OFFSETS) };
    let mut key = NapiKey::default();
    if !napi.is_null() {
        let dev: *const u8 = unsafe { field(napi, o.napi_dev) };
        let ids = unsafe { dev_ids(dev, o.dev_ifindex, o.dev_nd_net, o.net_inum) };
        (key.netns, key.ifindex) = (ids.netns, ids.ifindex);
    }
    let Some(table) = NAPI.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's copy; NAPI polls of one CPU run one after another.
    let table = unsafe { &mut *table };
    let home = mix(key.netns, key.ifindex, 0) as usize;
    match entry_in(&mut table.slots, home, key) {
        Some(slot) => {
            let work = if work > 0 { work as u64 } else { 0 };
            slot.polls += 1;
            slot.packets += work;
            if budget > 0 && work >= budget as u64 {
                slot.full_budget += 1;
            }
            slot.work[bucket(work, WORK_BUCKETS) & (WORK_BUCKETS - 1)] += 1;
        }
        None => table.unslotted += 1,
    }
    0
}
