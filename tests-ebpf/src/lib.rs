//! Names of the test-only BPF programs and maps, shared by the objects in
//! `src/bin` and the tests that load them (probe-tests, which embeds the
//! objects as `probe_tests::objects`). Nothing here is loaded by `probe`.
#![no_std]

/// Programs that do nothing, the baseline of the benchmark (BPF_PROG_TEST_RUN
/// ns of a real program minus these; the floor of a hook in the traffic part).
pub const PROG_EMPTY_XDP: &str = "bench_empty_xdp";
pub const PROG_EMPTY_TC: &str = "bench_empty_tc";

/// Stand-ins for another owner's (a CNI's) programs in the coexistence tests:
/// they count every packet into [`MAP_FIXTURE_COUNT`] slot
/// [`FIXTURE_SLOT_XDP`] / [`FIXTURE_SLOT_TC`].
pub const PROG_FIXTURE_COUNT_XDP: &str = "fixture_count_xdp";
pub const PROG_FIXTURE_COUNT_TC: &str = "fixture_count_tc";
pub const MAP_FIXTURE_COUNT: &str = "FIXTURE_COUNT";
pub const FIXTURE_SLOT_XDP: u32 = 0;
pub const FIXTURE_SLOT_TC: u32 = 1;
