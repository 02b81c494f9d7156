//! The numeric flags of every subcommand: whatever a user types, parsing and
//! validation end in Ok or a usage error (exit status 2), never a panic, and
//! what they accept converts to `Duration`/`Instant` the way `watch::session`
//! does without overflowing.

use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use proptest::prelude::*;

use super::*;

/// How a command line ended: accepted, refused by clap's parser, or refused
/// by `Command::validate`; the last two with their exit status and message.
#[derive(Debug)]
enum Outcome {
    Ok(Box<Cli>),
    Parse(i32, String),
    Invalid(i32, String),
}

/// Parses like `main` (`Cli::parse`) and validates like each `run` does
/// before anything else.
fn check<S: AsRef<str>>(argv: &[S]) -> Outcome {
    let argv = std::iter::once("probe").chain(argv.iter().map(AsRef::as_ref));
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return Outcome::Parse(e.exit_code(), e.to_string()),
    };
    match cli.command.validate() {
        Ok(()) => Outcome::Ok(Box::new(cli)),
        Err(e) => Outcome::Invalid(e.exit_code(), e.to_string()),
    }
}

fn watch_args(cli: &Cli) -> Option<&watch::WatchArgs> {
    match &cli.command {
        Command::Watch(w) => Some(w),
        Command::Serve(s) => Some(&s.watch),
        Command::Record(r) => Some(&r.watch),
        Command::Tune(_)
        | Command::Diff(_)
        | Command::Cleanup(_)
        | Command::Trace(_)
        | Command::Reasons(_) => None,
    }
}

/// What `watch::session` does with accepted values: `from_secs_f64` and
/// `Instant + Duration` (both panic on overflow).
fn use_like_session(cli: &Cli) {
    let Some(w) = watch_args(cli) else { return };
    assert!(INTERVAL.contains(w.interval), "{}", w.interval);
    let started = Instant::now();
    let interval = Duration::from_secs_f64(w.interval);
    let next_tick = started + interval;
    let _ = next_tick + interval;
    if let Some(d) = w.duration {
        assert!(DURATION.contains(d), "{d}");
        let _ = started + Duration::from_secs_f64(d);
    }
}

/// Ok (and then usable like `session` uses it) or exit status 2; a refusal
/// by validation names `flag`.
fn ok_or_usage_error(argv: &[String], flag: &str) -> Result<(), TestCaseError> {
    match check(argv) {
        Outcome::Ok(cli) => use_like_session(&cli),
        Outcome::Parse(code, msg) => prop_assert_eq!(code, 2, "{:?}: {}", argv, msg),
        Outcome::Invalid(code, msg) => {
            prop_assert_eq!(code, 2, "{:?}: {}", argv, msg);
            prop_assert!(
                msg.contains(flag),
                "{:?}: {} does not name {}",
                argv,
                msg,
                flag
            );
        }
    }
    Ok(())
}

/// The subcommands that take the flags of `watch`, each with what it needs
/// besides `flag`.
fn command_lines(flag: &str, value: &str) -> Vec<Vec<String>> {
    let mut lines: Vec<Vec<&str>> = vec![
        vec!["watch"],
        vec!["serve", "--listen", "127.0.0.1:9435"],
        vec!["record", "--out", "/nonexistent/probe-test.json"],
    ];
    if flag != "--duration" {
        lines[2].extend(["--duration", "1"]);
    }
    if flag == "--listen" {
        lines = vec![vec!["serve"]];
    }
    let with = format!("{flag}={value}");
    lines
        .into_iter()
        .map(|l| {
            l.into_iter()
                .map(String::from)
                .chain([with.clone()])
                .collect()
        })
        .collect()
}

/// Refused by validation with exit status 2 and a message containing each
/// of `needles`, in every subcommand that has the flag.
fn refused(flag: &str, value: &str, needles: &[&str]) {
    for argv in command_lines(flag, value) {
        match check(&argv) {
            Outcome::Invalid(2, msg) => {
                for n in needles {
                    assert!(msg.contains(n), "{argv:?}: {msg:?} lacks {n:?}");
                }
            }
            other => panic!("{argv:?}: {other:?}"),
        }
    }
}

fn accepted(argv: &[&str]) -> Cli {
    match check(argv) {
        Outcome::Ok(cli) => {
            use_like_session(&cli);
            *cli
        }
        other => panic!("{argv:?}: {other:?}"),
    }
}

// The reported defects.

#[test]
fn duration_1e20_is_refused_before_attach() {
    refused(
        "--duration",
        "1e20",
        &["--duration 1e20 is out of range", "31536000 (365 days)"],
    );
}

#[test]
fn interval_1e20_is_refused_before_attach() {
    refused(
        "--interval",
        "1e20",
        &["--interval 1e20 is out of range", "0.1 to 86400 (1 day)"],
    );
}

#[test]
fn interval_inf_is_out_of_range_not_too_small() {
    refused(
        "--interval",
        "inf",
        &["--interval inf is out of range", "0.1 to 86400 (1 day)"],
    );
    for argv in command_lines("--interval", "inf") {
        if let Outcome::Invalid(_, msg) = check(&argv) {
            assert!(!msg.contains("at least"), "{msg}");
        }
    }
}

#[test]
fn interval_nan_is_not_a_number() {
    refused(
        "--interval",
        "NaN",
        &["--interval NaN is not a number", "0.1 to 86400"],
    );
    refused("--duration", "nan", &["--duration NaN is not a number"]);
}

#[test]
fn duration_minus_zero_is_refused() {
    refused(
        "--duration",
        "-0",
        &["--duration -0 is out of range", "above 0"],
    );
    // Without `=`, clap takes -0 for a flag: a usage error all the same.
    match check(&["watch", "--duration", "-0"]) {
        Outcome::Parse(2, _) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_out_of_range_seconds_are_refused() {
    for (flag, value) in [
        ("--interval", "0"),
        ("--interval", "0.09"),
        ("--interval", "-1"),
        ("--interval", "-inf"),
        ("--interval", "86400.001"),
        ("--interval", "1e300"),
        ("--duration", "0"),
        ("--duration", "-1"),
        ("--duration", "infinity"),
        ("--duration", "31536000.5"),
        ("--duration", "1.8446744073709552e19"),
    ] {
        refused(flag, value, &[flag, "is out of range"]);
    }
}

#[test]
fn the_bounds_themselves_are_accepted() {
    accepted(&["watch", "--interval", "0.1", "--duration", "31536000"]);
    accepted(&["watch", "--interval", "86400", "--duration", "1e-9"]);
    accepted(&["serve", "--interval", "86400"]);
    accepted(&["record", "--out", "x.json", "--duration", "31536000"]);
}

#[test]
fn record_needs_a_duration() {
    match check(&["record", "--out", "x.json"]) {
        Outcome::Invalid(2, msg) => assert!(msg.contains("needs --duration"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn listen_port_0_is_refused() {
    match check(&["serve", "--listen", "0.0.0.0:0"]) {
        Outcome::Invalid(2, msg) => {
            assert!(
                msg.contains("--listen 0.0.0.0:0") && msg.contains("1 to 65535"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    accepted(&["serve", "--listen", "[::1]:65535"]);
}

#[test]
fn serve_listens_on_loopback_unless_told_otherwise() {
    let Outcome::Ok(cli) = check(&["serve"]) else {
        panic!("serve without flags refused")
    };
    let Command::Serve(s) = cli.command else {
        panic!("not serve")
    };
    assert_eq!(s.listen, "127.0.0.1:9435".parse().unwrap());
    assert!(s.web_config.is_none());
}

#[test]
fn web_config_problems_are_usage_errors_naming_the_file() {
    match check(&["serve", "--web-config", "/nonexistent/web.yml"]) {
        Outcome::Invalid(2, msg) => assert!(
            msg.contains("--web-config /nonexistent/web.yml: cannot read it"),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
    let dir = serve::pki::Dir::new("cli");
    let path = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    match check(&["serve", "--web-config", path.to_str().unwrap()]) {
        Outcome::Invalid(2, msg) => assert!(
            msg.contains(&format!("cert_file {}/server.crt", dir.path().display())),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn vxlan_ports_are_checked() {
    refused("--vxlan-port", "0", &["--vxlan-port 0", "1 to 65535"]);
    let five: Vec<&str> = ["watch"]
        .into_iter()
        .chain(
            ["1", "2", "3", "4", "5"]
                .iter()
                .flat_map(|p| ["--vxlan-port", *p]),
        )
        .collect();
    match check(&five) {
        Outcome::Invalid(2, msg) => assert!(msg.contains("at most 4"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // The same port twice is one port.
    let repeated: Vec<&str> = ["watch"]
        .into_iter()
        .chain(
            ["1", "2", "3", "4", "4"]
                .iter()
                .flat_map(|p| ["--vxlan-port", *p]),
        )
        .collect();
    accepted(&repeated);
    match check(&["watch", "--vxlan-port", "65536"]) {
        Outcome::Parse(2, _) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn help_states_the_bounds() {
    let mut cli = Cli::command();
    for sub in ["watch", "serve", "record"] {
        let help = cli
            .find_subcommand_mut(sub)
            .expect(sub)
            .render_long_help()
            .to_string();
        for needle in ["0.1 to 86400 (1 day)", "at most 31536000 (365 days)"] {
            assert!(
                help.contains(needle),
                "{sub} --help lacks {needle}:\n{help}"
            );
        }
    }
    let serve = cli
        .find_subcommand_mut("serve")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(serve.contains("port 1 to 65535"), "{serve}");
    // The messages state the same ranges.
    assert!(INTERVAL.expected.contains("0.1 to 86400 (1 day)"));
    assert!(DURATION.expected.contains("at most 31536000 (365 days)"));
    assert_eq!(INTERVAL.max, 86_400.0);
    assert_eq!(DURATION.max, 365.0 * 86_400.0);
}

/// `record` and `serve` refuse bad flags before touching --out, checking
/// capabilities, listening or attaching.
#[test]
fn record_and_serve_refuse_before_doing_anything() {
    let out = std::env::temp_dir().join(format!("probe-cli-test-{}.json", std::process::id()));
    std::fs::write(&out, "an earlier recording").unwrap();
    let out_s = out.display().to_string();
    let cli = Cli::try_parse_from(["probe", "record", "--out", &out_s, "--duration=1e20"]).unwrap();
    let Command::Record(args) = cli.command else {
        unreachable!()
    };
    assert_eq!(record::run(args).unwrap_err().exit_code(), 2);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "an earlier recording"
    );
    let _ = std::fs::remove_file(&out);

    // Port 1 needs privilege to listen on: refused before that matters.
    let cli = Cli::try_parse_from([
        "probe",
        "serve",
        "--listen",
        "127.0.0.1:1",
        "--interval=inf",
    ])
    .unwrap();
    let Command::Serve(args) = cli.command else {
        unreachable!()
    };
    let e = serve::run(args).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("--interval inf"), "{e}");
}

#[test]
fn shown_values_read_as_typed() {
    for (x, s) in [
        (2.0, "2"),
        (0.5, "0.5"),
        (-0.0, "-0"),
        (1e20, "1e20"),
        (1e-9, "1e-9"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "NaN"),
        (86_400.0, "86400"),
    ] {
        assert_eq!(shown(x), s);
    }
}

// Properties.

/// Strings that look like numbers, in the spellings Rust's float parser and
/// users know, plus near misses.
fn numberish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-+]?[0-9]{0,25}(\\.[0-9]{0,8})?([eE][-+]?[0-9]{1,4})?",
        "[-+]?(inf|Inf|INF|infinity|Infinity|nan|NaN|NAN)",
        "[-+]?0x[0-9a-f]{1,8}",
        "[-+]?[0-9]{1,4}(s|ms|m|h|d| s)",
    ]
}

/// Any f64 (NaN, infinities, subnormals, -0 included) as it might be typed.
fn float_text() -> impl Strategy<Value = String> {
    (any::<f64>(), 0..3u8).prop_map(|(x, style)| match style {
        0 => format!("{x}"),
        1 => format!("{x:e}"),
        _ => format!("{x:?}"),
    })
}

fn any_value_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), numberish(), float_text()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn seconds_flags_never_panic(
        flag in prop::sample::select(vec!["--interval", "--duration"]),
        value in any_value_text(),
    ) {
        for argv in command_lines(flag, &value) {
            ok_or_usage_error(&argv, flag)?;
        }
    }

    #[test]
    fn port_flags_never_panic(
        flag in prop::sample::select(vec!["--listen", "--vxlan-port"]),
        value in prop_oneof![
            any::<String>(),
            numberish(),
            any::<i64>().prop_map(|p| p.to_string()),
            (any::<u16>(), any::<i32>()).prop_map(|(p, q)| format!("127.0.0.1:{p}{q}")),
        ],
    ) {
        for argv in command_lines(flag, &value) {
            ok_or_usage_error(&argv, flag)?;
        }
    }

    #[test]
    fn intervals_in_range_are_accepted(interval in 0.1f64..=86_400.0) {
        for argv in command_lines("--interval", &interval.to_string()) {
            let outcome = check(&argv);
            prop_assert!(matches!(outcome, Outcome::Ok(_)), "{:?}: {:?}", argv, outcome);
            if let Outcome::Ok(cli) = outcome {
                prop_assert_eq!(watch_args(&cli).unwrap().interval, interval);
                use_like_session(&cli);
            }
        }
    }

    #[test]
    fn durations_in_range_are_accepted(
        duration in prop_oneof![
            f64::MIN_POSITIVE..=31_536_000.0,
            (1u32..=31_536_000).prop_map(f64::from),
        ],
    ) {
        for argv in command_lines("--duration", &duration.to_string()) {
            let outcome = check(&argv);
            prop_assert!(matches!(outcome, Outcome::Ok(_)), "{:?}: {:?}", argv, outcome);
            if let Outcome::Ok(cli) = outcome {
                prop_assert_eq!(watch_args(&cli).unwrap().duration, Some(duration));
                use_like_session(&cli);
            }
        }
    }

    #[test]
    fn floats_are_accepted_exactly_in_range(x in any::<f64>()) {
        for (range, flag) in [(INTERVAL, "--interval"), (DURATION, "--duration")] {
            let ok = x >= range.min && x <= range.max && (range.min_inclusive || x > range.min);
            prop_assert_eq!(range.check(x).is_ok(), ok, "{} {}", flag, x);
            for argv in command_lines(flag, &format!("{x:e}")) {
                prop_assert_eq!(matches!(check(&argv), Outcome::Ok(_)), ok, "{:?}", argv);
            }
        }
    }

    #[test]
    fn listen_ports_other_than_0_are_accepted(port in any::<u16>(), v6 in any::<bool>()) {
        let addr = if v6 { format!("[::1]:{port}") } else { format!("127.0.0.1:{port}") };
        let outcome = check(&["serve", "--listen", &addr]);
        match outcome {
            Outcome::Ok(_) => prop_assert_ne!(port, 0),
            Outcome::Invalid(2, msg) => {
                prop_assert_eq!(port, 0);
                prop_assert!(msg.contains("--listen"), "{}", msg);
            }
            other => prop_assert!(false, "{}: {:?}", addr, other),
        }
    }

    #[test]
    fn vxlan_port_lists_are_checked(ports in prop::collection::vec(any::<u16>(), 0..8)) {
        let mut argv = vec!["watch".to_string()];
        for p in &ports {
            argv.extend(["--vxlan-port".to_string(), p.to_string()]);
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let ok = !ports.contains(&0) && distinct.len() <= probe_common::MAX_VXLAN_PORTS;
        match check(&argv) {
            Outcome::Ok(_) => prop_assert!(ok, "{:?}", ports),
            Outcome::Invalid(2, msg) => {
                prop_assert!(!ok, "{:?}: {}", ports, msg);
                prop_assert!(msg.contains("--vxlan-port"), "{}", msg);
            }
            other => prop_assert!(false, "{:?}: {:?}", ports, other),
        }
    }

    #[test]
    fn drop_netns_count_is_checked(n in 0usize..24) {
        let mut argv = vec!["watch".to_string()];
        for i in 0..n {
            argv.extend(["--drop-netns".to_string(), format!("ns{i}")]);
        }
        let ok = n <= probe_common::drops::MAX_SCOPE_NETNS;
        match check(&argv) {
            Outcome::Ok(_) => prop_assert!(ok),
            Outcome::Invalid(2, msg) => {
                prop_assert!(!ok, "{}", msg);
                prop_assert!(msg.contains("--drop-netns"), "{}", msg);
            }
            other => prop_assert!(false, "{}: {:?}", n, other),
        }
    }

    /// tune and diff take names and paths only: anything parses or is a
    /// usage error.
    #[test]
    fn tune_and_diff_never_panic(a in any::<String>(), b in any::<String>()) {
        for argv in [
            vec!["tune".to_string(), format!("--iface={a}"), format!("--netns={b}")],
            vec!["diff".to_string(), "--".to_string(), a.clone(), b.clone()],
            vec!["diff".to_string(), "--json".to_string(), "--".to_string(), a.clone(), b.clone()],
        ] {
            match check(&argv) {
                Outcome::Ok(_) => {}
                Outcome::Parse(code, msg) | Outcome::Invalid(code, msg) => {
                    prop_assert_eq!(code, 2, "{:?}: {}", argv, msg)
                }
            }
        }
    }
}

fn bad_signature(signature: &str) -> Vec<&str> {
    vec!["trace", "--to", "10.244.2.2:9000", "--signature", signature]
}

#[test]
fn trace_takes_a_pod_address_a_count_a_rate_and_a_wait() {
    let ok = check(&[
        "trace",
        "--to",
        "10.244.2.2:9000",
        "--count",
        "1000",
        "--rate",
        "500",
    ]);
    let Outcome::Ok(cli) = ok else {
        panic!("a good trace was refused")
    };
    let Command::Trace(t) = &cli.command else {
        panic!("not a trace")
    };
    assert_eq!((t.count, t.rate, t.wait), (1000, 500, 1.0));
    for (argv, flag) in [
        (vec!["trace", "--to", "10.244.2.2"], "--to"),
        (vec!["trace", "--to", "pod:9000"], "--to"),
        (
            vec!["trace", "--to", "10.244.2.2:9000", "--count", "0"],
            "--count",
        ),
        (
            vec!["trace", "--to", "10.244.2.2:9000", "--rate", "0"],
            "--rate",
        ),
        (vec!["trace"], "--to"),
        // The two halves of a two-node trace share a signature.
        (vec!["trace", "--listen", "30"], "--signature"),
        (
            vec!["trace", "--send-only", "--to", "10.244.2.2:9000"],
            "--signature",
        ),
        // Not 16 hex digits, or all zero (0 turns the kernel's check off).
        (bad_signature("0000000000000000"), "--signature"),
        (bad_signature("34e1a07c"), "--signature"),
        (
            vec![
                "trace",
                "--listen",
                "30",
                "--signature",
                "34e1a07c9d5b2f86",
                "--to",
                "10.244.2.2:9000",
            ],
            "--to",
        ),
    ] {
        match check(&argv) {
            Outcome::Parse(code, msg) => {
                assert_eq!(code, 2, "{argv:?}");
                assert!(msg.contains(flag), "{argv:?}: {msg}");
            }
            _ => panic!("{argv:?} accepted"),
        }
    }
    match check(&["trace", "--to", "10.244.2.2:9000", "--wait", "61"]) {
        Outcome::Invalid(code, msg) => {
            assert_eq!(code, 2);
            assert!(msg.contains("--wait"), "{msg}");
        }
        _ => panic!("--wait 61 accepted"),
    }
    let listen = [
        "trace",
        "--listen",
        "3601",
        "--signature",
        "34e1a07c9d5b2f86",
    ];
    match check(&listen) {
        Outcome::Invalid(code, msg) => {
            assert_eq!(code, 2);
            assert!(msg.contains("--listen"), "{msg}");
        }
        _ => panic!("--listen 3601 accepted"),
    }
    let Outcome::Ok(cli) = check(&listen.map(|a| if a == "3601" { "30" } else { a })) else {
        panic!("a receiving half was refused")
    };
    let Command::Trace(t) = &cli.command else {
        panic!("not a trace")
    };
    assert_eq!(
        (t.listen, t.signature, t.to),
        (Some(30.0), Some(0x34e1a07c9d5b2f86), None)
    );
}

#[test]
fn latency_is_auto_unless_told_on_or_off() {
    use crate::hooks::latency::LatencyMode;
    let mode = |argv: &[&str]| match check(argv) {
        Outcome::Ok(cli) => {
            let w = watch_args(&cli).expect("a watch");
            let cfg = w.config().expect("a config");
            (cfg.latency, cfg.latency_max_runs)
        }
        _ => panic!("{argv:?} refused"),
    };
    assert_eq!(mode(&["watch"]), (LatencyMode::Auto, 10_000));
    assert_eq!(mode(&["serve"]).0, LatencyMode::Auto);
    // `--latency` alone: always on, as before `auto` existed.
    assert_eq!(mode(&["watch", "--latency"]).0, LatencyMode::On);
    assert_eq!(mode(&["watch", "--latency", "--json"]).0, LatencyMode::On);
    assert_eq!(mode(&["watch", "--latency", "off"]).0, LatencyMode::Off);
    assert_eq!(mode(&["watch", "--no-latency"]).0, LatencyMode::Off);
    assert_eq!(
        mode(&["watch", "--latency-max-runs", "2000"]),
        (LatencyMode::Auto, 2000)
    );
    for argv in [
        &["watch", "--latency", "--no-latency"][..],
        &["watch", "--latency", "sometimes"],
        &["watch", "--latency-max-runs", "0"],
    ] {
        match check(argv) {
            Outcome::Parse(code, _) => assert_eq!(code, 2, "{argv:?}"),
            _ => panic!("{argv:?} accepted"),
        }
    }
}
