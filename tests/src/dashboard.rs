//! The Grafana dashboard (deploy/grafana/probe.json) as the tests see it: its
//! panels' PromQL with the template variables filled in, the metric names an
//! expression uses, and the names it may use (what `probe serve` exports, as
//! docs/metrics.md documents and metrics.rs encodes; the recording rules of
//! deploy/prometheus/rules.yaml; the series Prometheus adds to every target).

use std::{collections::BTreeSet, path::PathBuf};

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(path)
}

/// deploy/grafana/probe.json, parsed.
pub fn load() -> Value {
    let path = repo("deploy/grafana/probe.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// Every panel that is not a row, including those inside collapsed rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels[]") {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct Query {
    pub panel: String,
    pub ref_id: String,
    /// As written in the dashboard (template variables unresolved).
    pub expr: String,
}

/// Every panel's targets[].expr.
pub fn queries(dashboard: &Value) -> Vec<Query> {
    panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            let panel = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| Query {
                    panel: panel.clone(),
                    ref_id: t["refId"].as_str().unwrap_or_default().to_string(),
                    expr: t["expr"].as_str().unwrap_or_default().to_string(),
                })
        })
        .collect()
}

/// `expr` as Grafana would send it: `$node` (a multi-value variable used in
/// `=~`) becomes `nodes`, a regex; `$__rate_interval` and `$__interval`
/// become `rate_interval` (e.g. "1m").
pub fn substitute(expr: &str, nodes: &str, rate_interval: &str) -> String {
    expr.replace("${node}", nodes)
        .replace("$node", nodes)
        .replace("$__rate_interval", rate_interval)
        .replace("$__interval", rate_interval)
}

/// PromQL aggregation operators (followed by `by (...)` or `(`).
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// Keywords whose parenthesised list holds label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan",
];

/// The metric names (and recording-rule names) a PromQL expression selects:
/// every identifier outside strings, label matchers `{...}`, ranges `[...]`
/// and label lists, that is neither a keyword, an aggregation nor a function.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let c: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Index after the bracketed block that opens at `i`, skipping strings.
    let close = |mut i: usize, open: char, shut: char| -> usize {
        let mut depth = 0;
        while i < c.len() {
            match c[i] {
                q @ ('"' | '\'' | '`') => i = skip_string(&c, i, q),
                x if x == open => {
                    depth += 1;
                    i += 1;
                }
                x if x == shut => {
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => i += 1,
            }
        }
        i
    };
    let next_non_space = |mut i: usize| -> usize {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    while i < c.len() {
        match c[i] {
            q @ ('"' | '\'' | '`') => i = skip_string(&c, i, q),
            '{' => i = close(i, '{', '}'),
            '[' => i = close(i, '[', ']'),
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            x if x.is_ascii_digit()
                || (x == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                    // 1e-9: the exponent's sign belongs to the number.
                    if matches!(c[i], 'e' | 'E') && matches!(c.get(i + 1), Some('-' | '+')) {
                        i += 1;
                    }
                    i += 1;
                }
            }
            x if x.is_ascii_alphabetic() || x == '_' || x == ':' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let next = next_non_space(i);
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if c.get(next) == Some(&'(') {
                        i = close(next, '(', ')');
                    }
                } else if KEYWORDS.contains(&lower.as_str())
                    || AGGREGATIONS.contains(&lower.as_str())
                    || c.get(next) == Some(&'(')
                {
                    // An operator, an aggregation or a function call.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn skip_string(c: &[char], mut i: usize, quote: char) -> usize {
    i += 1;
    while i < c.len() && c[i] != quote {
        if c[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// One metric family of the metrics table in docs/metrics.md: (names as
/// exposed, type).
fn documented_families() -> Vec<(Vec<String>, String)> {
    let text = std::fs::read_to_string(repo("docs/metrics.md")).expect("docs/metrics.md");
    text.lines()
        .filter(|l| l.starts_with("| `rxprobe_"))
        .map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            // | metric | type | labels | meaning |
            let names = cols[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .flat_map(expand_braces)
                .collect();
            (names, cols[2].to_string())
        })
        .collect()
}

/// `a_{b,c}_d` -> a_b_d, a_c_d (one brace group).
fn expand_braces(name: &str) -> Vec<String> {
    match (name.find('{'), name.find('}')) {
        (Some(open), Some(shut)) if open < shut => name[open + 1..shut]
            .split(',')
            .map(|alt| format!("{}{}{}", &name[..open], alt.trim(), &name[shut + 1..]))
            .collect(),
        _ => vec![name.to_string()],
    }
}

/// The families metrics.rs and its modules under metrics/ encode: the first
/// argument of each `.counter(`, `.gauge(` and `.histogram(` call (without
/// the prefix and, for counters, without `_total`).
pub fn encoded_families() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let dir = repo("probe-user/src/output/metrics");
    let mut files = vec![repo("probe-user/src/output/metrics.rs")];
    files.extend(
        std::fs::read_dir(&dir)
            .expect("probe-user/src/output/metrics")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs")),
    );
    for file in files {
        let src = std::fs::read_to_string(&file).expect("a metrics source");
        for call in [".counter(", ".gauge(", ".histogram("] {
            for (at, _) in src.match_indices(call) {
                let rest = src[at + call.len()..].trim_start();
                if let Some(lit) = rest.strip_prefix('"') {
                    out.insert(lit[..lit.find('"').unwrap()].to_string());
                }
            }
        }
    }
    out
}

/// Every series name `probe serve` exposes, from docs/metrics.md's table
/// (a histogram family `x` is exposed as `x_bucket`, `x_sum`, `x_count`).
/// Checked against metrics.rs both ways: a family the table lists that the
/// code does not encode, or the reverse, fails here.
pub fn exported_metrics() -> BTreeSet<String> {
    let families = documented_families();
    assert!(
        families.len() > 10,
        "the metrics table of docs/metrics.md: {families:?}"
    );
    let encoded = encoded_families();
    let mut documented = BTreeSet::new();
    let mut out = BTreeSet::new();
    for (names, kind) in families {
        for name in names {
            let base = name.strip_prefix("rxprobe_").expect("rxprobe_ prefix");
            let family = match kind.as_str() {
                "counter" => base
                    .strip_suffix("_total")
                    .unwrap_or_else(|| panic!("docs/metrics.md: counter {name} without _total")),
                "gauge" | "histogram" => base,
                other => panic!("docs/metrics.md: {name} has type {other:?}"),
            };
            assert!(
                encoded.contains(family),
                "docs/metrics.md lists {name}, metrics.rs does not encode {family:?} (encoded: {encoded:?})"
            );
            documented.insert(family.to_string());
            if kind == "histogram" {
                out.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            } else {
                out.insert(name);
            }
        }
    }
    let undocumented: Vec<&String> = encoded.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "metrics.rs encodes families docs/metrics.md's table does not list: {undocumented:?}"
    );
    out
}

/// The `record:` names of deploy/prometheus/rules.yaml.
pub fn recording_rules() -> Vec<String> {
    let text = std::fs::read_to_string(repo("deploy/prometheus/rules.yaml")).expect("rules.yaml");
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// Series Prometheus itself adds for every scrape target.
pub const PROMETHEUS_TARGET_SERIES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn finds_the_metrics_an_expression_selects() {
        assert_eq!(
            names(
                r#"sum by (instance, le) (rate(a_total{x="y{z}",le=~"1e-9"}[5m] offset 1m)) / on (instance) group_left (stage) b:rule:rate5m > 0.5e-3 or vector(1)"#
            ),
            ["a_total", "b:rule:rate5m"]
        );
        assert_eq!(
            names("histogram_quantile(0.99, sum without (cpu) (rate(h_bucket[1m])))"),
            ["h_bucket"]
        );
        assert_eq!(names("count(up) and bool 1 # up is a comment"), ["up"]);
        assert_eq!(
            expand_braces("rxprobe_softnet_{processed,dropped}_total"),
            [
                "rxprobe_softnet_processed_total",
                "rxprobe_softnet_dropped_total"
            ]
        );
    }
}
