//! The one place the library writes a diagnostic line to stderr (`probe: `
//! first). Sessions produce typed events (probe_model::events) and leave it
//! to their caller to say them: the command line passes [`event`] or
//! [`event_quiet`]. Reports go to stdout.

use std::io::Write as _;

use probe_model::events::Event;

/// Says `line` on stderr.
pub fn line(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "probe: {line}");
}

/// Says a session's event.
pub fn event(e: &Event) {
    line(e);
}

/// With JSON output: says what went wrong only (no `attached` line).
pub fn event_quiet(e: &Event) {
    if !matches!(e, Event::Attached { .. }) {
        line(e);
    }
}
