//! Reading libtest's and cargo's output: one result per test binary, so a
//! run that fails in one binary still shows what every other one did.

/// The counts of libtest's `test result: ok. 5 passed; 0 failed; 1 ignored; ...`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    /// The counts of a `test result:` line (None for any other line).
    pub fn of_line(line: &str) -> Option<Counts> {
        let (_, rest) = line.split_once("test result:")?;
        let number_before = |word: &str| {
            rest.split(';')
                .find(|part| part.trim_end().ends_with(word))
                .and_then(|part| part.split_whitespace().rev().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Some(Counts {
            passed: number_before("passed"),
            failed: number_before("failed"),
            ignored: number_before("ignored"),
        })
    }

    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// One test binary of a `cargo test` run: its name, and its result, or None
/// if it ended without one (it crashed, or was killed).
#[derive(Debug, PartialEq, Eq)]
pub struct Binary {
    pub name: String,
    pub counts: Option<Counts>,
}

/// Follows `cargo test`'s output (stdout and stderr in one stream, in order)
/// line by line.
#[derive(Default)]
pub struct Run {
    pub binaries: Vec<Binary>,
}

impl Run {
    pub fn line(&mut self, line: &str) {
        let line = line.trim();
        // `Running unittests src/lib.rs (target/debug/deps/probe_user-0f3a...)`
        // `Running tests/lab_watch.rs (target/debug/deps/lab_watch-9c1e...)`
        // `Doc-tests probe_user`
        let started = if let Some(rest) = line.strip_prefix("Running ") {
            let (what, exe) = rest.split_once(" (").unwrap_or((rest, ""));
            let exe = exe.trim_end_matches(')').rsplit('/').next().unwrap_or("");
            let crate_or_test = exe.rsplit_once('-').map_or(exe, |(name, _)| name);
            Some(match what.strip_prefix("unittests ") {
                Some(src) => format!("{crate_or_test} ({src})"),
                None => crate_or_test.to_string(),
            })
        } else {
            line.strip_prefix("Doc-tests ")
                .map(|name| format!("{name} (doc tests)"))
        };
        if let Some(name) = started {
            self.binaries.push(Binary { name, counts: None });
        } else if let Some(counts) = Counts::of_line(line) {
            if let Some(b) = self.binaries.last_mut().filter(|b| b.counts.is_none()) {
                b.counts = Some(counts);
            }
        }
    }

    /// Whether every binary gave a result without a failure.
    pub fn passed(&self) -> bool {
        self.binaries
            .iter()
            .all(|b| b.counts.is_some_and(|c| c.failed == 0))
    }

    /// One line per binary, then the totals.
    pub fn summary(&self) -> String {
        let width = self
            .binaries
            .iter()
            .map(|b| b.name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let mut total = Counts::default();
        let mut bad = 0;
        for b in &self.binaries {
            let (verdict, counts) = match b.counts {
                Some(c) if c.failed == 0 => ("ok", format_counts(c)),
                Some(c) => ("FAILED", format_counts(c)),
                None => (
                    "FAILED",
                    "ended without a result (crashed or killed)".into(),
                ),
            };
            if verdict != "ok" {
                bad += 1;
            }
            total.add(b.counts.unwrap_or_default());
            out += &format!("  {verdict:<6}  {:<width$}  {counts}\n", b.name);
        }
        out += &format!(
            "  total: {} test binaries ({bad} failed): {}\n",
            self.binaries.len(),
            format_counts(total)
        );
        out
    }
}

fn format_counts(c: Counts) -> String {
    format!(
        "{} passed, {} failed, {} ignored",
        c.passed, c.failed, c.ignored
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_binary_and_the_totals() {
        let mut run = Run::default();
        for line in [
            "     Running unittests src/lib.rs (target/debug/deps/probe_user-0f3a9b)",
            "test reasons::tests::x ... ok",
            "test result: ok. 173 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 2.24s",
            "     Running tests/lab_watch.rs (target/debug/deps/lab_watch-9c1e)",
            "test result: FAILED. 40 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out",
            "error: test failed, to rerun pass `-p probe-tests --test lab_watch`",
            "     Running tests/lab_drops.rs (target/debug/deps/lab_drops-77aa)",
            "error: test failed, to rerun pass `-p probe-tests --test lab_drops`",
            "   Doc-tests probe_user",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
        ] {
            run.line(line);
        }
        assert!(!run.passed());
        assert_eq!(
            run.summary(),
            "  ok      probe_user (src/lib.rs)  173 passed, 0 failed, 0 ignored\n\
             \x20 FAILED  lab_watch                40 passed, 1 failed, 2 ignored\n\
             \x20 FAILED  lab_drops                ended without a result (crashed or killed)\n\
             \x20 ok      probe_user (doc tests)   0 passed, 0 failed, 0 ignored\n\
             \x20 total: 4 test binaries (2 failed): 213 passed, 1 failed, 2 ignored\n"
        );
    }

    #[test]
    fn counts_of_a_result_line() {
        assert_eq!(
            Counts::of_line("[x] test result: FAILED. 3 passed; 2 failed; 1 ignored"),
            Some(Counts {
                passed: 3,
                failed: 2,
                ignored: 1
            })
        );
        assert_eq!(Counts::of_line("test foo ... ok"), None);
    }
}
