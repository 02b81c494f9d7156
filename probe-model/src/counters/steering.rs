//! The steering probes' CPU matrices.

/// Cumulative matrices summed over CPUs, `[from * STEER_CPUS + to]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SteerCounts {
    pub napi_to_stack: Vec<u64>,
    pub ready_to_reader: Vec<u64>,
}
