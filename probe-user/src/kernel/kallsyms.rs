//! Kernel addresses named by /proc/kallsyms, as dropwatch and perf do: the
//! function an address is in is the text symbol with the highest address at
//! or below it. The file (several MB, not sorted across modules) is read
//! once per batch of new addresses, never kept: a node's drops come from a
//! handful of functions, named once each.

use std::collections::BTreeMap;

/// `[(address, name)]` of the text symbols in `text` (`t`/`T` lines;
/// a module's symbols keep their `[module]` suffix).
fn text_symbols(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.lines().filter_map(|line| {
        let mut words = line.splitn(3, ' ');
        let addr = u64::from_str_radix(words.next()?, 16).ok()?;
        let kind = words.next()?;
        let name = words.next()?.trim_end();
        matches!(kind, "t" | "T").then_some((addr, name))
    })
}

/// The functions `addrs` are in, from the text of /proc/kallsyms. An
/// address below every symbol, or a file whose addresses all read 0 (what
/// kptr_restrict shows a reader without CAP_SYSLOG), stays unnamed.
pub fn resolve_in(text: &str, addrs: &[u64]) -> BTreeMap<u64, String> {
    let mut best: BTreeMap<u64, (u64, &str)> = BTreeMap::new();
    for (sym, name) in text_symbols(text).filter(|(a, _)| *a != 0) {
        for &addr in addrs.iter().filter(|a| **a >= sym) {
            let entry = best.entry(addr).or_insert((sym, name));
            if sym > entry.0 {
                *entry = (sym, name);
            }
        }
    }
    best.into_iter()
        .map(|(addr, (sym, name))| {
            (
                addr,
                format!("{}+0x{:x}", name.replace('\t', " "), addr - sym),
            )
        })
        .collect()
}

/// The functions `addrs` are in: each as `function+0xoffset`, or `0x...`
/// where /proc/kallsyms cannot tell (unreadable, or addresses hidden).
pub fn resolve(addrs: &[u64]) -> BTreeMap<u64, String> {
    let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let mut named = resolve_in(&text, addrs);
    for addr in addrs {
        named.entry(*addr).or_insert_with(|| format!("0x{addr:x}"));
    }
    named
}

#[cfg(test)]
mod tests {
    use probe_model::names::function_of;

    use super::*;

    #[test]
    fn an_address_is_named_by_the_symbol_at_or_below_it() {
        let text = "\
ffffffff81000000 T _stext
ffffffff81a00000 T tcp_v4_rcv
ffffffff81a00800 t tcp_v4_fill_cb
ffffffff81b00000 D some_data
ffffffffc0001000 t vxlan_rcv\t[vxlan]
";
        let named = resolve_in(
            text,
            &[
                0xffffffff81a0012c,
                0xffffffff81b00010,
                0xffffffffc0001010,
                0x10,
            ],
        );
        assert_eq!(named[&0xffffffff81a0012c], "tcp_v4_rcv+0x12c");
        // Data symbols are no functions: the text symbol below it names it.
        assert_eq!(named[&0xffffffff81b00010], "tcp_v4_fill_cb+0xff810");
        assert_eq!(named[&0xffffffffc0001010], "vxlan_rcv [vxlan]+0x10");
        assert!(!named.contains_key(&0x10));
        assert_eq!(function_of("tcp_v4_rcv+0x12c"), "tcp_v4_rcv");
        assert_eq!(function_of("0xffffffff81a0012c"), "0xffffffff81a0012c");
        // kptr_restrict: every address reads 0, nothing is named.
        let hidden = "0000000000000000 T _stext\n0000000000000000 T tcp_v4_rcv\n";
        assert!(resolve_in(hidden, &[0xffffffff81a0012c]).is_empty());
    }
}
