//! Test fixtures: BTF blobs built by hand, for the parser's tests and for
//! the tests of what the probes read from BTF (reasons, drop probe setup).

use std::collections::HashMap;

use super::*;

/// Encodes a BTF blob: `types` are (name, info, size_or_type, trailing words).
pub(crate) fn blob(types: &[(&str, u32, u32, Vec<u32>)], extra_strings: &[&str]) -> Vec<u8> {
    let mut strings = vec![0u8];
    let mut offsets = HashMap::new();
    let mut add = |s: &str, strings: &mut Vec<u8>| -> u32 {
        if s.is_empty() {
            return 0;
        }
        *offsets.entry(s.to_string()).or_insert_with(|| {
            let off = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            off
        })
    };
    for s in extra_strings {
        add(s, &mut strings);
    }
    let mut tsec = Vec::new();
    for (name, info, size, words) in types {
        for w in [add(name, &mut strings), *info, *size].iter().chain(words) {
            tsec.extend_from_slice(&w.to_le_bytes());
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[1, 0]);
    for w in [
        24u32,
        0,
        tsec.len() as u32,
        tsec.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&tsec);
    out.extend_from_slice(&strings);
    out
}

pub(crate) fn info(kind: u32, vlen: u32) -> u32 {
    kind << 24 | vlen
}

/// A kernel-like BTF: `enum skb_drop_reason` with `reasons` (none: no enum,
/// as before Linux 5.17) and for each of `tracepoints` (name, arguments) a
/// `typedef btf_trace_<name>`: a pointer to a prototype of `void *__data`
/// and the arguments.
pub(crate) fn kernel_like(reasons: &[(&str, i32)], tracepoints: &[(&str, u32)]) -> Btf {
    let names: Vec<&str> = reasons.iter().map(|(n, _)| *n).collect();
    let typedefs: Vec<String> = tracepoints
        .iter()
        .map(|(tp, _)| format!("btf_trace_{tp}"))
        .collect();
    let mut types = vec![("int", info(KIND_INT, 0), 4, vec![32])];
    if !reasons.is_empty() {
        // The enumerators' names are the blob's first strings.
        let words = enumerator_offsets(&names)
            .into_iter()
            .zip(reasons)
            .flat_map(|(name, (_, value))| [name, *value as u32])
            .collect();
        let vlen = reasons.len() as u32;
        types.push(("skb_drop_reason", info(KIND_ENUM, vlen), 4, words));
    }
    for (typedef, (_, args)) in typedefs.iter().zip(tracepoints) {
        let proto = types.len() as u32 + 1;
        let params = (0..=*args).flat_map(|_| [0, 1]).collect();
        types.push(("", info(KIND_FUNC_PROTO, args + 1), 0, params));
        types.push(("", info(KIND_PTR, 0), proto, vec![]));
        types.push((typedef, info(KIND_TYPEDEF, 0), proto + 1, vec![]));
    }
    Btf::parse(&blob(&types, &names)).unwrap()
}

/// The string offsets [`blob`] gives `names` passed as its extra strings.
fn enumerator_offsets(names: &[&str]) -> Vec<u32> {
    let mut next = 1;
    let mut seen: HashMap<&str, u32> = HashMap::new();
    names
        .iter()
        .map(|n| {
            *seen.entry(n).or_insert_with(|| {
                let off = next;
                next += n.len() as u32 + 1;
                off
            })
        })
        .collect()
}
