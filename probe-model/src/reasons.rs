//! Drop reasons: their names on the running kernel (from its BTF) and the
//! receive-path stage of each. Pure: tested without a kernel.
//!
//! A reason gets its stage from the table (every reason of the kernels in
//! `reasons/kernels/`, checked by the tests), else from its family: a name
//! prefix (`TCP_`, `IPV6`, `VXLAN_`, ...) or, from Linux 6.4, the subsystem
//! in its high 16 bits. A kernel newer than the table is not an error: its
//! new reasons are placed by family, and reports name them
//! (`placed_by_rule`), so a reader knows which stages came from a rule.

use std::collections::BTreeMap;

use probe_common::drops::{Benign, CORE_REASON_SLOTS};

use crate::stage::Stage;

mod table;

use table::{FAMILY_RULES, REASON_STAGES, SUBSYSTEM_STAGES};

/// How a reason got its stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Its own entry in the table (a subsystem reason: its subsystem's).
    Table,
    /// The family rule of this name prefix.
    Prefix(&'static str),
    /// A subsystem the table does not know: `other`.
    Subsystem,
    /// No rule matched, or the kernel did not name the value: `other`.
    NoFamily,
}

impl Placement {
    /// The rule that placed a reason, as reports name it (None: the table).
    pub fn rule(self) -> Option<String> {
        match self {
            Placement::Table => None,
            Placement::Prefix(prefix) => Some(format!("prefix {prefix}")),
            Placement::Subsystem => Some("subsystem".into()),
            Placement::NoFamily => Some("no family".into()),
        }
    }
}

/// A reason's stage, and how it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub stage: Stage,
    pub by: Placement,
}

/// The stage of a core reason name: the table's, else its family's.
pub fn place(reason: &str) -> Placed {
    if let Some((stage, _)) = REASON_STAGES
        .iter()
        .find(|(_, names)| names.contains(&reason))
    {
        return Placed {
            stage: *stage,
            by: Placement::Table,
        };
    }
    match FAMILY_RULES
        .iter()
        .find(|(prefix, _)| reason.starts_with(prefix))
    {
        Some((prefix, stage)) => Placed {
            stage: *stage,
            by: Placement::Prefix(prefix),
        },
        None => Placed {
            stage: Stage::Other,
            by: Placement::NoFamily,
        },
    }
}

/// The stage of a subsystem's reasons (its name as the kernel's
/// `skb_drop_reason_subsys` gives it, without the prefix).
fn place_subsystem(subsystem: Option<&str>) -> Placed {
    match SUBSYSTEM_STAGES
        .iter()
        .find(|(name, _)| Some(*name) == subsystem)
    {
        Some((_, stage)) => Placed {
            stage: *stage,
            by: Placement::Table,
        },
        None => Placed {
            stage: Stage::Other,
            by: Placement::Subsystem,
        },
    }
}

/// Every core reason name the table places (the tests check it against the
/// kernels' lists).
pub fn table_names() -> impl Iterator<Item = &'static str> {
    REASON_STAGES
        .iter()
        .flat_map(|(_, names)| names.iter().copied())
}

/// The names benign_drops gives the drops the probe recognises as losing no
/// data (probe_common::drops::Benign): the kernel's reason, and what the
/// packet was.
pub fn benign_name(kind: usize) -> &'static str {
    match kind {
        k if k == Benign::EchoReply as usize => "NO_SOCKET_ECHO_REPLY",
        k if k == Benign::TcpIgnored as usize => "NOT_SPECIFIED_TCP",
        k if k == Benign::TcpStale as usize => "NO_SOCKET_TCP_NOT_SYN",
        k if k == Benign::Control as usize => "NOT_SPECIFIED_LINK_CONTROL",
        _ => "BENIGN",
    }
}

/// What the drop probe says where the kernel predates drop reasons (5.17:
/// `enum skb_drop_reason` and kfree_skb's `reason` argument).
pub const NEEDS_REASONS: &str = "drop reasons need Linux >= 5.17";

/// Drop reason names of the running kernel, from the BTF enums.
#[derive(Clone, Debug, Default)]
pub struct ReasonNames {
    /// Core reasons by value, without the `SKB_DROP_REASON_` prefix.
    core: BTreeMap<u32, String>,
    /// Subsystems by id (1 = MAC80211_UNUSABLE, ...).
    subsystems: BTreeMap<u32, String>,
    /// Values that are not drops (SKB_NOT_DROPPED_YET, SKB_CONSUMED) where
    /// this kernel has them.
    pub not_drops: Vec<u32>,
}

impl ReasonNames {
    /// `not_drops` as the kernel programs take it (the NOT_DROPS globals):
    /// two values, NO_REASON where this kernel has fewer.
    pub fn not_drop_values(&self) -> [u32; 2] {
        let mut values = [probe_common::drops::NO_REASON; 2];
        for (slot, value) in values.iter_mut().zip(&self.not_drops) {
            *slot = *value;
        }
        values
    }

    /// The names from the kernel's `enum skb_drop_reason` and (from Linux
    /// 6.4) `enum skb_drop_reason_subsys`, as (name, value) pairs; None: the
    /// enum is not in the kernel's BTF. Err names what is missing: drop
    /// reasons exist only from Linux 5.17.
    pub fn from_enums(
        reasons: Option<&[(String, i64)]>,
        subsystems: Option<&[(String, i64)]>,
    ) -> Result<ReasonNames, String> {
        let mut names = ReasonNames::default();
        let values = reasons.ok_or_else(|| {
            format!("{NEEDS_REASONS} (no enum skb_drop_reason in this kernel's BTF)")
        })?;
        for (name, value) in values {
            let value = *value;
            // SKB_NOT_DROPPED_YET and SKB_CONSUMED are not drops; the _MAX and
            // _SUBSYS_MASK entries are not reasons.
            let Some(short) = name.strip_prefix("SKB_DROP_REASON_") else {
                if name == "SKB_NOT_DROPPED_YET" || name == "SKB_CONSUMED" {
                    names.not_drops.push(value as u32);
                }
                continue;
            };
            if short == "MAX" || short == "SUBSYS_MASK" || !(0..1 << 16).contains(&value) {
                continue;
            }
            names.core.insert(value as u32, short.to_string());
        }
        for (name, value) in subsystems.unwrap_or_default() {
            let short = name.trim_start_matches("SKB_DROP_REASON_SUBSYS_");
            if *value > 0 && short != "NUM" {
                names.subsystems.insert(*value as u32, short.to_string());
            }
        }
        Ok(names)
    }

    /// Names given by hand: tests, and the made-up node of
    /// `metrics::synthetic`.
    pub fn from_lists(core: &[(u32, &str)], subsystems: &[(u32, &str)]) -> ReasonNames {
        ReasonNames {
            core: core.iter().map(|(v, n)| (*v, n.to_string())).collect(),
            subsystems: subsystems
                .iter()
                .map(|(v, n)| (*v, n.to_string()))
                .collect(),
            not_drops: Vec::new(),
        }
    }

    /// The names as a kernel list file (`reasons/kernels/*.txt`): one line
    /// per value, `reason VALUE NAME`, `subsystem ID NAME`, `not_drop VALUE`.
    pub fn to_list(&self) -> String {
        let mut out = String::new();
        for (value, name) in &self.core {
            out += &format!("reason {value} {name}\n");
        }
        for (id, name) in &self.subsystems {
            out += &format!("subsystem {id} {name}\n");
        }
        for value in &self.not_drops {
            out += &format!("not_drop {value}\n");
        }
        out
    }

    /// Names from a kernel list file ([`ReasonNames::to_list`]); `#` starts
    /// a comment. None for a kernel without drop reasons (no `reason` line).
    pub fn from_list(text: &str) -> Result<Option<ReasonNames>, String> {
        let mut names = ReasonNames::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || format!("line {}: {line:?} is not `KIND VALUE [NAME]`", n + 1);
            let mut words = line.split_whitespace();
            let (kind, value) = (words.next(), words.next().and_then(|v| v.parse().ok()));
            match (kind, value, words.next()) {
                (Some("reason"), Some(v), Some(name)) => {
                    names.core.insert(v, name.to_string());
                }
                (Some("subsystem"), Some(v), Some(name)) => {
                    names.subsystems.insert(v, name.to_string());
                }
                (Some("not_drop"), Some(v), None) => names.not_drops.push(v),
                _ => return Err(bad()),
            }
        }
        Ok((!names.core.is_empty()).then_some(names))
    }

    /// The value of the core reason `name` (without the prefix) on this kernel.
    pub fn value_of(&self, name: &str) -> Option<u32> {
        self.core.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    /// Every core reason value of this kernel.
    pub fn core_values(&self) -> impl Iterator<Item = u32> + '_ {
        self.core.keys().copied()
    }

    /// Every subsystem id of this kernel (none before Linux 6.4).
    pub fn subsystem_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.subsystems.keys().copied()
    }

    /// Every core reason name of this kernel.
    pub fn core_names(&self) -> impl Iterator<Item = &str> {
        self.core.values().map(String::as_str)
    }

    /// Name of a raw reason value as the tracepoint reports it.
    pub fn name(&self, reason: u32) -> String {
        let subsys = reason >> 16;
        if subsys == 0 {
            return self
                .core
                .get(&reason)
                .cloned()
                .unwrap_or_else(|| format!("REASON_{reason}"));
        }
        match self.subsystems.get(&subsys) {
            Some(s) => format!("{s}_{}", reason & 0xffff),
            None => format!("SUBSYS_{subsys}_{}", reason & 0xffff),
        }
    }

    /// The name and stage of a raw reason value as the tracepoint reports it.
    pub fn reason(&self, reason: u32) -> (String, Placed) {
        let name = self.name(reason);
        let subsys = reason >> 16;
        let placed = if subsys != 0 {
            place_subsystem(self.subsystems.get(&subsys).map(String::as_str))
        } else if self.core.contains_key(&reason) {
            place(&name)
        } else {
            Placed {
                stage: Stage::Other,
                by: Placement::NoFamily,
            }
        };
        (name, placed)
    }

    /// The name and stage of a slot of `DropTable::by_reason`.
    pub fn slot(&self, slot: usize) -> (String, Placed) {
        if (slot as u32) < CORE_REASON_SLOTS {
            return self.reason(slot as u32);
        }
        let name = self.slot_name(slot);
        let subsys = slot as u32 - CORE_REASON_SLOTS;
        let placed = if subsys == 0 {
            Placed {
                stage: Stage::Other,
                by: Placement::NoFamily,
            }
        } else {
            place_subsystem(self.subsystems.get(&subsys).map(String::as_str))
        };
        (name, placed)
    }

    /// Name of a slot of `DropTable::by_reason`.
    pub fn slot_name(&self, slot: usize) -> String {
        if (slot as u32) < CORE_REASON_SLOTS {
            self.name(slot as u32)
        } else {
            let subsys = slot as u32 - CORE_REASON_SLOTS;
            if subsys == 0 {
                return format!("REASON_{CORE_REASON_SLOTS}_OR_ABOVE");
            }
            match self.subsystems.get(&subsys) {
                Some(s) => s.clone(),
                None => format!("SUBSYS_{subsys}"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
