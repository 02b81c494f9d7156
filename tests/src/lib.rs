//! Helpers for the privileged integration tests, one module per concern:
//! setup (root check, a lab per test, the `probe` binary), process (a
//! running probe and its output as it comes), fixture (the common
//! probe-plus-traffic scenario in one call), wait (waiting on events with
//! timeouts), counters (the kernel's own counters in a lab namespace),
//! report (fields of the probe's JSON), kernel (features and attachments),
//! http (the serve endpoints), prog_run (BPF_PROG_TEST_RUN), dashboard.
//! The names tests use are re-exported here.

pub use probe_lab::{self as lab, Lab};

pub mod counters;
pub mod dashboard;
pub mod fixture;
pub mod http;
pub mod kernel;
mod process;
pub mod prog_run;
pub mod report;
pub mod setup;
pub mod wait;

pub use counters::{
    net_file, proc_net_counter, rx_packets, settle_lab, sink_drained, snmp, udp_queued,
};
pub use fixture::{observe, Run};
pub use http::{free_port, http_get, metric};
pub use kernel::{
    kernel_has_drop_reason, kernel_has_drop_reasons, kernel_has_socket_tracepoints,
    lab_attachments, prog_loaded, tc_hook, tc_prog_ids, tcx_available, xdp_prog_id,
};
pub use process::Watch;
pub use report::{assert_no_negatives, intervals, napi_packets, napi_rows, stage, summary};
pub use setup::{lab, lab_with, privileged, probe_bin, probe_output};
pub use wait::{eventually, scaled, time_scale, wait_for, wait_settled, wait_until};

/// The test-only BPF objects (tests-ebpf/src/bin), built by build.rs. `probe`
/// never loads them; its own objects are `probe_user::objects`.
pub mod objects {
    /// Benchmark baselines (empty XDP and tc programs) and counting stand-ins
    /// for another owner's (a CNI's) programs; names in `tests_ebpf`.
    pub static FIXTURES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fixtures"));
}
