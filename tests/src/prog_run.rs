//! The probe's BPF objects loaded for BPF_PROG_TEST_RUN (nothing attached):
//! known globals, every program verified, and their counters read back.

use aya::{
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use probe_common::*;
use tests_ebpf::{PROG_EMPTY_TC, PROG_EMPTY_XDP};

/// (port, VNI) pairs given their own slot in these tests: slot 0 and slot 1.
pub const TEST_VNIS: [u32; MAX_VNIS] = [1, 0xabcdef, 0, 0, 0, 0, 0, 0];
pub const TEST_VNI_PORTS: [u16; MAX_VNIS] = [8472, 4789, 0, 0, 0, 0, 0, 0];
pub const QUEUE_SLOTS: u32 = 4;

/// The NIC and VXLAN-device objects, and the fixtures' empty programs.
pub struct Programs {
    pub nic: Ebpf,
    pub vxlan: Ebpf,
    pub fixtures: Ebpf,
}

impl Programs {
    /// Loads the object with known globals and loads (verifies) every program.
    pub fn load() -> Programs {
        let count = 2u32;
        // Logging off, as `probe` loads it without --debug-bpf.
        let nic = probe_user::hooks::BpfLog::Off
            .loader()
            .override_global(GLOBAL_VXLAN_PORTS, &DEFAULT_VXLAN_PORTS, true)
            .override_global(GLOBAL_VNIS, &TEST_VNIS, true)
            .override_global(GLOBAL_VNI_PORTS, &TEST_VNI_PORTS, true)
            .override_global(GLOBAL_VNI_COUNT, &count, true)
            .override_global(GLOBAL_QUEUE_SLOTS, &QUEUE_SLOTS, true)
            .map_max_entries(MAP_NIC_QUEUES, QUEUE_SLOTS + 1)
            .load(probe_user::objects::NIC)
            .expect("load the NIC object");
        let load = |object| Ebpf::load(object).expect("load BPF object");
        let mut p = Programs {
            nic,
            vxlan: load(probe_user::objects::VXLAN),
            fixtures: load(crate::objects::FIXTURES),
        };
        for name in [PROG_NIC_XDP, PROG_EMPTY_XDP] {
            let p: &mut Xdp = p.program(name).try_into().unwrap();
            p.load()
                .unwrap_or_else(|e| panic!("verifier rejected {name}: {e}"));
        }
        for name in [PROG_NIC_TC, PROG_VXLAN_INGRESS, PROG_EMPTY_TC] {
            let p: &mut SchedClassifier = p.program(name).try_into().unwrap();
            p.load()
                .unwrap_or_else(|e| panic!("verifier rejected {name}: {e}"));
        }
        p
    }

    /// Program `name`, from whichever object has it.
    fn program(&mut self, name: &str) -> &mut aya::programs::Program {
        [&mut self.nic, &mut self.vxlan, &mut self.fixtures]
            .into_iter()
            .find_map(|o| o.program_mut(name))
            .unwrap_or_else(|| panic!("no program {name}"))
    }

    /// Runs program `name` on `frame` `repeat` times: (return value, mean ns per run).
    pub fn run(&mut self, name: &str, frame: &[u8], repeat: u32) -> (u32, f64) {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        };
        let prog = self.program(name);
        let r = if let Ok(p) = <&mut Xdp>::try_from(&mut *prog) {
            p.test_run(opts)
        } else {
            <&mut SchedClassifier>::try_from(prog)
                .unwrap()
                .test_run(opts)
        }
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {name} on {} bytes: {e}", frame.len()));
        (r.return_value, r.duration.as_nanos() as f64)
    }

    /// Runs tc program `name` once on `frame` as an skb of `gso_segs`
    /// segments (set through the test run's `struct __sk_buff`, whose
    /// layout comes from the kernel's BTF): (return value, ns).
    pub fn run_gso(&mut self, name: &str, frame: &[u8], gso_segs: u32) -> (u32, f64) {
        let btf = probe_user::kernel::btf::Btf::from_kernel().expect("kernel BTF");
        let at = btf
            .member_offset("__sk_buff", "gso_segs")
            .expect("__sk_buff.gso_segs") as usize;
        // The kernel zero-fills what a shorter context leaves out
        // (bpf_ctx_init), so it ends at gso_segs: fields added since
        // (hwtstamp, 5.16) need not exist.
        let mut ctx = vec![0u8; at + 4];
        ctx[at..at + 4].copy_from_slice(&gso_segs.to_ne_bytes());
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            ..Default::default()
        };
        let prog: &mut SchedClassifier = self.program(name).try_into().unwrap();
        let r = prog.test_run(opts).unwrap_or_else(|e| {
            panic!("BPF_PROG_TEST_RUN of {name} with gso_segs {gso_segs}: {e}")
        });
        (r.return_value, r.duration.as_nanos() as f64)
    }

    fn nic_counts(&self) -> probe_model::counters::nic::NicCounts {
        let entries = probe_user::hooks::read_per_cpu::<QueueCounters>(
            &self.nic,
            MAP_NIC_QUEUES,
            QUEUE_SLOTS + 1,
        )
        .unwrap();
        probe_model::counters::nic::NicCounts::from_queue_entries(&entries)
    }

    /// (skbs, segments) per NicClass, summed over CPUs and queue slots.
    pub fn nic_classes(&self) -> ([u64; NicClass::COUNT], [u64; NicClass::COUNT]) {
        let (mut skbs, mut segments) = ([0; NicClass::COUNT], [0; NicClass::COUNT]);
        for per_cpu in self.nic_counts().queues {
            for c in per_cpu {
                for i in 0..NicClass::COUNT {
                    skbs[i] += c.skbs[i];
                    segments[i] += c.segments[i];
                }
            }
        }
        (skbs, segments)
    }

    /// (outer segments, inner per InnerClass) of a (port, VNI) slot,
    /// summed over CPUs and queues.
    pub fn vni_slot(&self, slot: u32) -> (u64, [u64; InnerClass::COUNT]) {
        let mut inner = [0; InnerClass::COUNT];
        let mut outer = 0;
        for v in &self.nic_counts().vnis[slot as usize] {
            outer += v.outer_segments();
            for (o, p) in inner.iter_mut().zip(v.inner) {
                *o += p;
            }
        }
        (outer, inner)
    }

    /// (skbs, segments) per InnerClass seen by the VXLAN-device program.
    pub fn dev_classes(&self) -> ([u64; InnerClass::COUNT], [u64; InnerClass::COUNT]) {
        let (mut skbs, mut segments) = ([0; InnerClass::COUNT], [0; InnerClass::COUNT]);
        let per_cpu = probe_user::hooks::read_per_cpu::<DevCounters>(&self.vxlan, MAP_VXLAN_DEV, 1)
            .unwrap()
            .swap_remove(0);
        for c in per_cpu {
            for i in 0..InnerClass::COUNT {
                skbs[i] += c.skbs[i];
                segments[i] += c.segments[i];
            }
        }
        (skbs, segments)
    }
}
