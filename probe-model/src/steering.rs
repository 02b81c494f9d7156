//! `--steering`: turning the probes' matrices into CPU pairs and an RFS hit
//! rate. Pure: tested without a kernel.

use probe_common::latency::STEER_CPUS;
use serde::Serialize;

use crate::counters::steering::SteerCounts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CpuPair {
    pub from: u32,
    /// The last CPU index tracked one by one (31) also stands for those above.
    pub to: u32,
    pub count: u64,
}

/// Steering over a period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Steering {
    /// Packets: CPU of the NAPI poll -> CPU of the stack (netif_receive_skb).
    pub poll_to_stack: Vec<CpuPair>,
    /// Socket reads: CPU that queued the data -> CPU of the reading thread.
    pub stack_to_reader: Vec<CpuPair>,
    /// Reads on the CPU that queued the data (what RFS aims for).
    pub rfs_hit_percent: Option<f64>,
}

fn pairs(now: &[u64], before: Option<&[u64]>) -> Vec<CpuPair> {
    now.iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let d = crate::delta::since(*n, before.and_then(|b| b.get(i)).copied().unwrap_or(0));
            (d > 0).then_some(CpuPair {
                from: (i / STEER_CPUS) as u32,
                to: (i % STEER_CPUS) as u32,
                count: d,
            })
        })
        .collect()
}

pub fn steering(later: &SteerCounts, earlier: Option<&SteerCounts>) -> Steering {
    let reads = pairs(
        &later.ready_to_reader,
        earlier.map(|e| e.ready_to_reader.as_slice()),
    );
    let total: u64 = reads.iter().map(|p| p.count).sum();
    let hits: u64 = reads
        .iter()
        .filter(|p| p.from == p.to)
        .map(|p| p.count)
        .sum();
    Steering {
        poll_to_stack: pairs(
            &later.napi_to_stack,
            earlier.map(|e| e.napi_to_stack.as_slice()),
        ),
        stack_to_reader: reads,
        rfs_hit_percent: (total > 0).then(|| hits as f64 * 100.0 / total as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_rfs_hits() {
        let n = STEER_CPUS;
        let mut later = SteerCounts {
            napi_to_stack: vec![0; n * n],
            ready_to_reader: vec![0; n * n],
        };
        later.napi_to_stack[1] = 10; // cpu0 -> cpu1
        later.ready_to_reader[n + 1] = 7; // cpu1 -> cpu1
        later.ready_to_reader[n] = 3; // cpu1 -> cpu0
        let s = steering(&later, None);
        assert_eq!(
            s.poll_to_stack,
            vec![CpuPair {
                from: 0,
                to: 1,
                count: 10
            }]
        );
        assert_eq!(s.stack_to_reader.len(), 2);
        assert_eq!(s.rfs_hit_percent, Some(70.0));
        let none = steering(&later, Some(&later));
        assert!(none.poll_to_stack.is_empty() && none.rfs_hit_percent.is_none());
    }
}
