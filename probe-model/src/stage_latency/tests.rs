use super::*;
use probe_common::latency::bucket;

fn cpu_with(t: Transition, values: &[u64], reached: [u64; Reached::COUNT]) -> PathCpu {
    let mut c = PathCpu {
        reached,
        ..Default::default()
    };
    let h = &mut c.transitions[t as usize];
    for v in values {
        h.buckets[bucket(*v, HIST_BUCKETS)] += 1;
        h.sum += v;
        h.max = h.max.max(*v);
    }
    c
}

#[test]
fn cpus_add_up_and_periods_difference() {
    let a = cpu_with(
        Transition::QueuedToRead,
        &[3_000, 5_000_000],
        [4, 0, 2, 2, 2, 0],
    );
    let b = cpu_with(Transition::QueuedToRead, &[6_000], [1, 0, 1, 1, 1, 1]);
    let s = stage_latency(&[a, b], None, 64, None);
    assert_eq!(
        (s.sampled, s.pod, s.queued, s.read, s.socket_busy),
        (5, 3, 3, 3, 1)
    );
    let q = &s.transition("queued", "read").unwrap().ns;
    assert_eq!(q.count, 3);
    assert_eq!(q.sum, 5_009_000);
    assert_eq!(q.max, Some(5_000_000));
    // 3,000 and 6,000 ns fall in [2048, 4096) and [4096, 8192).
    assert_eq!(q.p50, Some(8191));
    assert_eq!(q.p99, Some((1 << 23) - 1));
    assert_eq!(s.transition("nic", "decap").unwrap().ns.count, 0);
    assert_eq!(s.transitions.len(), Transition::COUNT);

    // The same readings as "earlier": nothing happened in between, and
    // the running maximum that did not grow is not this period's.
    let same = stage_latency(&[a, b], Some(&[a, b]), 64, None);
    assert_eq!(same.sampled, 0);
    let q = &same.transition("queued", "read").unwrap().ns;
    assert_eq!((q.count, q.max, q.p50), (0, None, None));
}

fn socket(netns: u32, port: u16, protocol: u16, waits: &[u64]) -> SocketWait {
    let mut w = SocketWait {
        netns,
        port,
        protocol,
        ..Default::default()
    };
    for v in waits {
        w.queued_to_read.buckets[bucket(*v, HIST_BUCKETS)] += 1;
        w.queued_to_read.sum += v;
        w.queued_to_read.max = w.queued_to_read.max.max(*v);
        w.nic_to_read.buckets[bucket(v + 10_000, HIST_BUCKETS)] += 1;
        w.nic_to_read.sum += v + 10_000;
    }
    w
}

#[test]
fn sockets_add_up_over_cpus_and_the_most_read_come_first() {
    // Slot 0: UDP 9300 of netns 7 read on both CPUs; slot 1: TCP 80 on CPU 1.
    let later = vec![
        vec![
            socket(7, 9300, 17, &[3_000, 5_000_000]),
            socket(7, 9300, 17, &[6_000]),
        ],
        vec![
            SocketWait::default(),
            socket(8, 80, 6, &[1_000, 1_000, 1_000, 1_000]),
        ],
    ];
    let name = |n: u32| Some(format!("ns{n}"));
    let rows = socket_rows(&later, &[], name);
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].protocol, rows[0].port), ("tcp", 80));
    assert_eq!(rows[0].queued_to_read.count, 4);
    let udp = &rows[1];
    assert_eq!(udp.netns.as_deref(), Some("ns7"));
    assert_eq!(udp.queued_to_read.count, 3);
    assert_eq!(udp.queued_to_read.sum, 5_009_000);
    assert_eq!(udp.queued_to_read.max, Some(5_000_000));
    assert_eq!(udp.nic_to_read.sum, 5_039_000);
    // The same readings as "earlier": nothing was read in between.
    assert!(socket_rows(&later, &later, name).is_empty());
    // Only the top TOP_SOCKETS are listed.
    let many: Vec<Vec<SocketWait>> = (0..TOP_SOCKETS as u16 + 5)
        .map(|i| vec![socket(1, 1000 + i, 17, &vec![100; i as usize + 1])])
        .collect();
    let rows = socket_rows(&many, &[], name);
    assert_eq!(rows.len(), TOP_SOCKETS);
    assert_eq!(rows[0].port, 1000 + TOP_SOCKETS as u16 + 4);
}

#[test]
fn human_durations_name_their_unit() {
    assert_eq!(ns(950), "950ns");
    assert_eq!(ns(16_383), "16µs");
    assert_eq!(ns(8_388_607), "8.4ms");
    assert_eq!(ns(12_345_678), "12ms");
    assert_eq!(ns(2_500_000_000), "2.5s");
    let h = Histogram::from_buckets(&[0, 0, 0, 4], 20, Some(7));
    assert_eq!(short(&h), "p50 7ns p99 7ns max 7ns (4)");
    assert_eq!(short(&Histogram::default()), "-");
    let h = Histogram::from_buckets(&[0, 0, 0, 0, 0, 3], 60, Some(20));
    assert_eq!(short(&h), "p50 20ns p99 20ns max 20ns (3)");
}
