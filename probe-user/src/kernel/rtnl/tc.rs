//! tc filters on a device's clsact ingress hook: list the cls_bpf ones
//! (RTM_GETTFILTER) and delete one (RTM_DELTFILTER), for the legacy tc
//! attach of kernels without TCX; and the root qdiscs' drop counters
//! (RTM_GETQDISC).

use std::{collections::BTreeMap, io};

use netlink_packet_route::tc::TcStats2;

use netlink_packet_route::{
    tc::{TcAttribute, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
    RouteNetlinkMessage,
};

use super::RtnlSocket;

/// clsact's ingress parent, `ffff:fff2` (TC_H_CLSACT, TC_H_MIN_INGRESS).
const INGRESS_PARENT: TcHandle = TcHandle {
    major: 0xffff,
    minor: TcHandle::MIN_INGRESS,
};

/// One cls_bpf filter: where it sits and which program it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpfFilter {
    /// Lower runs first.
    pub priority: u16,
    /// Network byte order, as tcm_info carries it (ETH_P_ALL: 0x0300).
    pub protocol_be: u16,
    pub handle: u32,
    /// TCA_BPF_NAME: the program's name (`tc filter show` prints it).
    pub name: Option<String>,
    pub prog_id: Option<u32>,
}

impl RtnlSocket {
    /// The cls_bpf filters on `ifindex`'s clsact ingress hook (none without clsact).
    pub fn ingress_bpf_filters(&mut self, ifindex: u32) -> io::Result<Vec<BpfFilter>> {
        let answers = self.dump(RouteNetlinkMessage::GetTrafficFilter(request(ifindex)))?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewTrafficFilter(f) => bpf_filter(f),
                _ => None,
            })
            .collect())
    }

    /// Deletes exactly `filter` (priority, protocol and handle) from `ifindex`'s ingress hook.
    pub fn delete_ingress_filter(&mut self, ifindex: u32, filter: &BpfFilter) -> io::Result<()> {
        let mut m = request(ifindex);
        m.header.info = (u32::from(filter.priority) << 16) | u32::from(filter.protocol_be);
        m.header.handle = TcHandle::from(filter.handle);
        m.attributes.push(TcAttribute::Kind("bpf".into()));
        self.change(RouteNetlinkMessage::DelTrafficFilter(m))
    }
}

impl RtnlSocket {
    /// The drops every root qdisc of the namespace counted, by (ifindex,
    /// handle). A root qdisc's counter holds its children's (mq sums them
    /// when dumped; a classful qdisc counts what its classes refuse), so
    /// only roots are summed. A qdisc replaced or a device re-created is a
    /// new key, or a counter that went back: both count from zero.
    pub fn root_qdisc_drops(&mut self) -> io::Result<BTreeMap<(u32, u32), u64>> {
        Ok(self
            .root_qdiscs()?
            .into_iter()
            .map(|q| ((q.ifindex, q.handle), q.drops))
            .collect())
    }

    /// Every root qdisc of the namespace (`tc qdisc show`'s `root` lines).
    pub fn root_qdiscs(&mut self) -> io::Result<Vec<RootQdisc>> {
        let answers = self.dump(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()))?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewQueueDiscipline(q) if q.header.parent == TcHandle::ROOT => {
                    Some(RootQdisc {
                        ifindex: q.header.index as u32,
                        handle: u32::from(q.header.handle),
                        kind: q.attributes.iter().find_map(|a| match a {
                            TcAttribute::Kind(k) => Some(k.clone()),
                            _ => None,
                        }),
                        drops: qdisc_drops(&q.attributes),
                    })
                }
                _ => None,
            })
            .collect())
    }
}

/// A device's root qdisc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootQdisc {
    pub ifindex: u32,
    pub handle: u32,
    /// `pfifo_fast`, `fq_codel`, `mq`, `noqueue`, ...
    pub kind: Option<String>,
    /// Packets it dropped since it was created (32-bit in the kernel).
    pub drops: u64,
}

/// TCA_STATS2's queue statistics, else the older TCA_STATS (both 32-bit).
fn qdisc_drops(attributes: &[TcAttribute]) -> u64 {
    let stats2 = attributes.iter().find_map(|a| match a {
        TcAttribute::Stats2(s) => s.iter().find_map(|s| match s {
            TcStats2::Queue(q) => Some(q.drops),
            _ => None,
        }),
        _ => None,
    });
    let stats = || {
        attributes.iter().find_map(|a| match a {
            TcAttribute::Stats(s) => Some(s.drops),
            _ => None,
        })
    };
    u64::from(stats2.or_else(stats).unwrap_or(0))
}

fn request(ifindex: u32) -> TcMessage {
    let mut m = TcMessage::default();
    m.header.index = ifindex as i32;
    m.header.parent = INGRESS_PARENT;
    m
}

/// The cls_bpf filter in an RTM_NEWTFILTER, or None for other kinds and for
/// the chain's header entry (handle 0, which names no program).
fn bpf_filter(message: TcMessage) -> Option<BpfFilter> {
    let info = message.header.info;
    let handle = u32::from(message.header.handle);
    let mut filter = BpfFilter {
        priority: (info >> 16) as u16,
        protocol_be: info as u16,
        handle,
        name: None,
        prog_id: None,
    };
    let mut is_bpf = false;
    for attribute in message.attributes {
        match attribute {
            TcAttribute::Kind(kind) => is_bpf = kind == "bpf",
            TcAttribute::Options(options) => {
                for option in options {
                    match option {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => filter.name = Some(n),
                        TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => filter.prog_id = Some(id),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (is_bpf && handle != 0).then_some(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str, handle: u32, options: Vec<TcOption>) -> TcMessage {
        let mut m = request(3);
        m.header.info = (1 << 16) | 0x0300;
        m.header.handle = TcHandle::from(handle);
        m.attributes = vec![
            TcAttribute::Kind(kind.into()),
            TcAttribute::Options(options),
        ];
        m
    }

    #[test]
    fn reads_a_cls_bpf_filter() {
        let f = bpf_filter(message(
            "bpf",
            0x2a,
            vec![
                TcOption::Bpf(TcFilterBpfOption::ProgName("nic_tc".into())),
                TcOption::Bpf(TcFilterBpfOption::ProgId(77)),
            ],
        ))
        .unwrap();
        assert_eq!(
            f,
            BpfFilter {
                priority: 1,
                protocol_be: 0x0300,
                handle: 0x2a,
                name: Some("nic_tc".into()),
                prog_id: Some(77),
            }
        );
    }

    #[test]
    fn skips_other_kinds_and_the_chain_header() {
        assert_eq!(bpf_filter(message("u32", 0x800, vec![])), None);
        assert_eq!(bpf_filter(message("bpf", 0, vec![])), None);
    }
}
