//! `probe reasons`: the kernel's drop reasons and the stage the ledger
//! files each under, placed by the table or by a family rule.

use std::path::PathBuf;

use clap::Args;
use probe_common::drops::CORE_REASON_SLOTS;
use serde::Serialize;

use crate::{error::ProbeError, kernel::btf::Btf};
use probe_model::{
    reasons::{Placed, ReasonNames},
    stage::Stage,
};

#[derive(Debug, Args)]
#[command(
    about = "List this kernel's drop reasons and the ledger stage of each",
    long_about = "List this kernel's drop reasons (enum skb_drop_reason, from its BTF) and the stage\n\
        of the receive path the ledger files each under. A reason the probe's table knows is\n\
        placed by the table; one it does not (a kernel newer than the probe) is placed by its\n\
        family: a name prefix (TCP_ -> socket, IPV6 -> ip, VXLAN_ -> vxlan, ...) or, from Linux\n\
        6.4, the subsystem in its high 16 bits; reports name such reasons (placed_by_rule).\n\
        Needs no privilege. Linux < 5.17 has no drop reasons: it says so.\n\n\
        Examples:\n  probe reasons\n  probe reasons --json\n  probe reasons --btf /boot/vmlinux-6.12.0 --list"
)]
pub struct ReasonsArgs {
    /// Read another kernel's BTF: raw BTF, or a vmlinux ELF image with a .BTF section
    /// (not a compressed vmlinuz) [default: /sys/kernel/btf/vmlinux]
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,
    /// One JSON object instead of a table
    #[arg(long, conflicts_with = "list")]
    pub json: bool,
    /// The kernel's reason list only (values and names, no stages): the format of the
    /// test fixtures in probe-model/src/reasons/kernels/
    #[arg(long)]
    pub list: bool,
}

#[derive(Serialize)]
struct Row {
    value: u32,
    name: String,
    stage: Stage,
    /// `table`, or the rule that placed the reason (`prefix TCP_`, ...).
    placed_by: String,
}

#[derive(Serialize)]
struct Output {
    r#type: &'static str,
    btf: String,
    /// Why this kernel has no reasons (then `reasons` is empty).
    unavailable: Option<String>,
    reasons: Vec<Row>,
    subsystems: Vec<Row>,
}

fn row(value: u32, (name, placed): (String, Placed)) -> Row {
    Row {
        value,
        name,
        stage: placed.stage,
        placed_by: placed.by.rule().unwrap_or_else(|| "table".into()),
    }
}

pub fn run(args: ReasonsArgs) -> Result<(), ProbeError> {
    // A file given that is not BTF is bad input (exit 2, as `probe diff`
    // does); a running kernel without BTF is a missing kernel feature.
    let (btf, source) = match &args.btf {
        Some(path) => (
            Btf::from_file(path).map_err(ProbeError::Usage)?,
            path.display().to_string(),
        ),
        None => (
            Btf::from_kernel().map_err(ProbeError::Runtime)?,
            "/sys/kernel/btf/vmlinux".to_string(),
        ),
    };
    let (names, unavailable) = match btf.drop_reasons() {
        Ok(names) => (names, None),
        Err(why) => (ReasonNames::default(), Some(why)),
    };
    if args.list {
        print!("{}", list_file(&names, unavailable.as_deref(), &source));
        return Ok(());
    }
    let out = Output {
        r#type: "reasons",
        btf: source,
        reasons: names
            .core_values()
            .map(|v| row(v, names.reason(v)))
            .collect(),
        subsystems: names
            .subsystem_ids()
            .map(|id| row(id, names.slot(CORE_REASON_SLOTS as usize + id as usize)))
            .collect(),
        unavailable,
    };
    super::print_json_or(args.json, &out, human)
}

/// The list file: a comment naming the source, then `ReasonNames::to_list`.
fn list_file(names: &ReasonNames, unavailable: Option<&str>, source: &str) -> String {
    let mut out =
        format!("# enum skb_drop_reason and skb_drop_reason_subsys, read from {source}\n");
    if let Some(why) = unavailable {
        out += &format!("# none: {why}\n");
    }
    out + &names.to_list()
}

fn human(out: &Output) -> String {
    let mut s = format!("DROP REASONS of {}\n", out.btf);
    if let Some(why) = &out.unavailable {
        s += &format!("  none: {why}\n");
        return s;
    }
    s += &format!(
        "  {:>7}  {:<32} {:<8} PLACED BY\n",
        "VALUE", "REASON", "STAGE"
    );
    for r in &out.reasons {
        s += &format!(
            "  {:>7}  {:<32} {:<8} {}\n",
            r.value, r.name, r.stage, r.placed_by
        );
    }
    for r in &out.subsystems {
        s += &format!(
            "  {:>7}  {:<32} {:<8} {} (subsystem: every reason with {} << 16)\n",
            r.value << 16,
            r.name,
            r.stage,
            r.placed_by,
            r.value
        );
    }
    let by_rule = out
        .reasons
        .iter()
        .chain(&out.subsystems)
        .filter(|r| r.placed_by != "table")
        .count();
    s += &format!(
        "  {} reasons, {} subsystems; {by_rule} placed by rule, not by table\n",
        out.reasons.len(),
        out.subsystems.len()
    );
    s
}
