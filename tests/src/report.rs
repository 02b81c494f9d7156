//! Reading the probe's JSON reports: the summary among a run's lines, a
//! stage's row, NAPI rows, and the check every report passes (no negative
//! count).

use serde_json::Value;

/// No report ever shows a negative count: checked on every JSON line every
/// lab test reads.
pub fn assert_no_negatives(v: &Value) {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Number(n) if n.as_f64().is_some_and(|f| f < 0.0) => {
                out.push(format!("{path} = {n}"))
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), out);
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    walk(x, &format!("{path}.{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(v, "", &mut found);
    assert!(found.is_empty(), "negative values in a report: {found:?}");
}

/// The last `{"type":"summary"}` object.
pub fn summary(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|l| l["type"] == "summary")
        .expect("a summary line")
}

/// The `{"type":"interval"}` lines, in order.
pub fn intervals(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["type"] == "interval").collect()
}

/// The stage object `stage` on `iface`.
pub fn stage<'a>(report: &'a Value, stage: &str, iface: &str) -> &'a Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage && s["iface"] == iface)
        .unwrap_or_else(|| panic!("no stage {stage} on {iface} in {report}"))
}

/// The `napi[]` rows (one per CPU) of `iface` in namespace `netns`.
pub fn napi_rows<'a>(report: &'a Value, iface: &str, netns: &str) -> Vec<&'a Value> {
    report["napi"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["iface"] == iface && n["netns"] == netns)
        .collect()
}

/// The packets NAPI polled on `iface` in `netns`, all CPUs.
pub fn napi_packets(report: &Value, iface: &str, netns: &str) -> u64 {
    napi_rows(report, iface, netns)
        .iter()
        .map(|n| n["packets"].as_u64().unwrap())
        .sum()
}
