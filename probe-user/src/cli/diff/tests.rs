//! Whatever bytes a recording file holds, `probe diff` reads a recording
//! or refuses it with a usage error (exit status 2), and what it reads
//! it can compare and print, never panicking.

use proptest::prelude::*;
use serde_json::json;

use super::*;

/// A recording as `probe record` writes it, with every field `probe
/// diff` reads.
fn valid() -> Value {
    json!({
        "format": FORMAT,
        "version": VERSION,
        "kernel": "6.18.0",
        "hostname": "node-1",
        "settings": {
            "netns": "current",
            "sysctls": [
                {"name": "net.core.netdev_budget", "value": "300", "error": null},
                {"name": "net.core.rmem_max", "value": null, "error": "permission denied"}
            ],
            "devices": [
                {"iface": "eth0", "settings": [{"name": "mtu", "value": "1500", "error": null}]}
            ]
        },
        "netns_settings": [
            {"netns": "host",
             "sysctls": [{"name": "net.core.rmem_default", "value": "212992", "error": null}],
             "sockets": [{"name": "udp 0.0.0.0:9000 rcvbuf", "value": "212992", "error": null}]}
        ],
        "summary": {
            "kind": "summary",
            "elapsed_s": 60.0,
            // Current rows ({segments, skbs} per reason) and rows of
            // older recordings (packets_in, a bare count per reason).
            "ledger": [
                {"stage": "nic", "segments_in": 100000, "drops": 0, "reasons": {}},
                {"stage": "backlog", "packets_in": 90000, "drops": 3, "reasons": {"CPU_BACKLOG": 3}},
                {"stage": "ip", "drops": 0, "reasons": {}},
                {"stage": "socket", "segments_in": 80000, "drops": 1200,
                 "reasons": {"SOCKET_RCVBUFF": {"segments": 1200, "skbs": 1100}}}
            ],
            "softirq": [{"wait_ns": {"p50": 511, "p99": 4095}, "run_ns": {"p50": 16383, "p99": 65535}}],
            "softnet": [{"cpu": 0, "time_squeeze": 40}, {"cpu": 1, "time_squeeze": 0}],
            "cpus": [
                {"stage": "nic", "cpu": 0, "segments": 90},
                {"stage": "nic", "cpu": 1, "segments": 10},
                {"stage": "xdp", "cpu": 2, "packets": 5},
                {"stage": "vxlan", "cpu": 0, "segments": 50}
            ],
            "advice": [{"rule": "rcvbuf", "text": "raise net.core.rmem_default"}]
        }
    })
}

fn valid_bytes() -> Vec<u8> {
    serde_json::to_vec_pretty(&valid()).unwrap()
}

/// Refused with exit status 2, or read and then compared (both ways,
/// with itself and with a valid recording) and printed as text and JSON.
fn read_and_compare(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse(bytes, "fuzz.json") {
        Err(e) => prop_assert_eq!(e.exit_code(), 2, "{}", e),
        Ok(r) => {
            let good = parse(&valid_bytes(), "valid.json").unwrap();
            for (a, b) in [(&good, &r), (&r, &good), (&r, &r)] {
                for json in [false, true] {
                    let out = output(a, b, json);
                    prop_assert!(out.is_ok(), "{:?}", out);
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_fixture_is_a_recording() {
    let r = parse(&valid_bytes(), "valid.json").unwrap();
    let text = output(&r, &r, false).unwrap();
    assert!(text.contains("drops socket/SOCKET_RCVBUFF"), "{text}");
    assert!(text.contains("ADVICE rcvbuf: raise"), "{text}");
    let v: Value = serde_json::from_str(&output(&r, &r, true).unwrap()).unwrap();
    assert_eq!(v["advice"][0]["rule"], "rcvbuf");
}

#[test]
fn malformed_recordings_are_usage_errors() {
    // Nested past serde_json's recursion limit where the recording is
    // free-form (a stack overflow would abort, not unwind).
    let deep = {
        let mut v = valid();
        v["summary"] = Value::Null;
        let nested = "[".repeat(100_000) + &"]".repeat(100_000);
        v.to_string()
            .replace("\"summary\":null", &format!("\"summary\":{nested}"))
    };
    let wrong_version = {
        let mut v = valid();
        v["version"] = json!(VERSION + 1);
        v.to_string()
    };
    let wrong_format = {
        let mut v = valid();
        v["format"] = json!("probe-record\u{0}\n");
        v.to_string()
    };
    let negative_version = {
        let mut v = valid();
        v["version"] = json!(-1);
        v.to_string()
    };
    let huge_number = valid_bytes()
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .replacen("60.0", "1e400", 1);
    for (bytes, needle) in [
        (&b""[..], "is not a probe recording"),
        (b"null", "is not a probe recording"),
        (b"{}", "is not a probe recording"),
        (b"[]", "is not a probe recording"),
        (b"\xff\xfe{", "is not a probe recording"),
        (deep.as_bytes(), "recursion limit"),
        (wrong_version.as_bytes(), "version 2, this probe reads"),
        (wrong_format.as_bytes(), "format \"probe-record\\0\\n\""),
        (negative_version.as_bytes(), "is not a probe recording"),
        (huge_number.as_bytes(), "is not a probe recording"),
    ] {
        let e = parse(bytes, "x.json").unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn unreadable_files_are_usage_errors() {
    for path in ["/", "/nonexistent/probe-recording.json"] {
        let e = load(Path::new(path)).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(
            e.to_string().contains(&format!("cannot read {path}")),
            "{e}"
        );
    }
}

/// Values that are valid JSON but nothing `probe record` writes: they
/// are read (the summary is free-form) and compared without panicking.
#[test]
fn odd_summaries_compare_without_panicking() {
    let odd = [
        json!(null),
        json!([]),
        json!({"elapsed_s": -5, "ledger": [{"stage": 7, "drops": -1e308, "reasons": [1, 2]}]}),
        json!({"elapsed_s": 0, "ledger": [{"drops": 1e308}, {"drops": 1e308}]}),
        json!({"elapsed_s": 1e-300, "softnet": [{"time_squeeze": 1.7e308}, {"time_squeeze": 1.7e308}]}),
        json!({"elapsed_s": u64::MAX, "softirq": {"0": 1}, "cpus": [{"stage": "xdp", "packets": -10}, {"stage": "xdp", "packets": 10}]}),
        json!({"cpus": [{"stage": "xdp", "packets": 1e308}, {"stage": "xdp", "packets": 1e308}]}),
        json!({"softirq": [{"wait_ns": {"p50": -1e308, "p99": 1e308}}], "advice": {"rule": 1}}),
        json!({"advice": [null, 1, {"rule": ["x"], "text": {}}]}),
        json!({"ledger": [
            {"stage": "nic", "segments_in": 0, "drops": 5},
            {"stage": "ip", "packets_in": -1e308, "drops": -1e308,
             "reasons": {"A": {"segments": "x"}, "B": {"skbs": 1}, "C": [1], "D": {"segments": 1e308}}},
            {"stage": "socket", "segments_in": 1, "drops": 1e308}
        ]}),
        json!({"cpus": [{"stage": "nic", "segments": "9"}, {"stage": "nic", "segments": 0}]}),
    ];
    for summary in odd {
        let mut v = valid();
        v["summary"] = summary;
        read_and_compare(&serde_json::to_vec(&v).unwrap()).unwrap();
    }
}

/// A step into a JSON value.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                prefix.push(Step::Key(k.clone()));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

#[derive(Clone, Debug)]
enum Edit {
    Replace(Value),
    Remove,
}

/// Applies `edit` at the `which`th place in `v` (the root included).
fn apply(v: &mut Value, which: prop::sample::Index, edit: &Edit) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = which.get(&all).clone();
    match (edit, path.split_last()) {
        (Edit::Replace(x), _) => {
            if let Some(place) = at(v, &path) {
                *place = x.clone();
            }
        }
        (Edit::Remove, Some((last, parent))) => match (at(v, parent), last) {
            (Some(Value::Object(o)), Step::Key(k)) => {
                o.remove(k);
            }
            (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
                a.remove(*i);
            }
            _ => {}
        },
        (Edit::Remove, None) => {}
    }
}

/// The keys a recording has, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "format",
            "version",
            "summary",
            "settings",
            "netns_settings",
            "elapsed_s",
            "ledger",
            "stage",
            "drops",
            "reasons",
            "softirq",
            "wait_ns",
            "run_ns",
            "p50",
            "p99",
            "softnet",
            "time_squeeze",
            "cpus",
            "packets",
            "advice",
            "rule",
            "text",
            "segments_in",
            "packets_in",
            "segments",
            "skbs",
            "nic",
            "xdp",
            "name",
            "value",
            "error",
            "sysctls",
            "sockets",
            "devices",
            "iface",
            "netns",
        ])
        .prop_map(String::from),
        ".{0,8}",
    ]
}

/// Any JSON value, leaning to the numbers that overflow sums and divisions.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        prop::sample::select(vec![0.0, -0.0, 1e-300, -1.0, 1e308, -1e308, f64::MAX])
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(Value::from(FORMAT)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => any_json().prop_map(Edit::Replace),
        1 => Just(Edit::Remove),
    ]
}

/// A change to the bytes of a file.
#[derive(Clone, Debug)]
enum ByteEdit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let tokens = prop::sample::select(vec![
        &b"-"[..],
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"null",
        b"1e400",
        b"-1",
        b"18446744073709551616",
        b"4294967296",
        b"0.0",
        b"\\u0000",
        b"\\ud800",
        b"\xff",
    ])
    .prop_map(<[u8]>::to_vec);
    prop_oneof![
        any::<(prop::sample::Index, u8)>().prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![tokens, prop::collection::vec(any::<u8>(), 1..8)]
        )
            .prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..64).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        any::<prop::sample::Index>().prop_map(ByteEdit::Truncate),
    ]
}

fn apply_bytes(bytes: &mut Vec<u8>, edit: &ByteEdit) {
    let at = |i: &prop::sample::Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
    match edit {
        ByteEdit::Set(i, b) => {
            if !bytes.is_empty() {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
        }
        ByteEdit::Insert(i, b) => {
            let i = at(i, bytes.len());
            bytes.splice(i..i, b.iter().copied());
        }
        ByteEdit::Delete(i, n) => {
            let i = at(i, bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        ByteEdit::Truncate(i) => {
            let i = at(i, bytes.len());
            bytes.truncate(i);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        read_and_compare(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        read_and_compare(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn mutated_recording_bytes_never_panic(
        edits in prop::collection::vec(byte_edit(), 1..8),
        pretty in any::<bool>(),
    ) {
        let mut bytes = if pretty {
            valid_bytes()
        } else {
            serde_json::to_vec(&valid()).unwrap()
        };
        for e in &edits {
            apply_bytes(&mut bytes, e);
        }
        read_and_compare(&bytes)?;
    }

    #[test]
    fn mutated_recording_values_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), edit()), 1..6),
    ) {
        let mut v = valid();
        for (which, e) in &edits {
            apply(&mut v, *which, e);
        }
        read_and_compare(&serde_json::to_vec(&v).unwrap())?;
    }
}
