//! What every privileged test starts with: the root check, a lab of its own
//! (removed on drop, also when the test panics), and the `probe` binary.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::Lab;

/// True when the test may run. Not root: in CI (CI=true) the test fails;
/// elsewhere it says loudly that it did not run and returns false.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let msg =
        format!("{test}: needs root (network namespaces, BPF); run `cargo xtask test` as root");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    eprintln!("\n*** NOT RUN: {msg} ***\n");
    false
}

/// A lab with a name unique to this test.
pub fn lab() -> Lab {
    lab_with(probe_lab::Backend::Vxlan)
}

/// A lab with a name unique to this test, on the given backend.
pub fn lab_with(backend: probe_lab::Backend) -> Lab {
    Lab::up_with(&probe_lab::unique_prefix("plt"), backend).expect("lab up")
}

/// The `probe` binary: $PROBE_BIN (set by `cargo xtask test`) or target/debug/probe.
pub fn probe_bin() -> PathBuf {
    let path = std::env::var_os("PROBE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/debug/probe"
            ))
        });
    assert!(
        path.exists(),
        "{} missing: run the suite with `cargo xtask test`",
        path.display()
    );
    path
}

/// `probe` run to completion: exit code, stdout, stderr.
pub fn probe_output(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(probe_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run probe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
