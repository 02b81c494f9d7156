//! The verdict: the stage that lost the most, with its own total and its top
//! reason's own count.

use super::{LedgerRow, Verdict};

/// `part` of `whole` in percent: one decimal, or three significant digits
/// below 1% (500 of 1.8 M reads 0.0282%, not 0%).
pub(super) fn share_percent(part: u64, whole: u64) -> f64 {
    let p = part as f64 * 100.0 / whole as f64;
    if p >= 1.0 || p == 0.0 {
        return (p * 10.0).round() / 10.0;
    }
    let scale = 10f64.powi(2 - p.log10().floor() as i32);
    (p * scale).round() / scale
}

/// The stage that lost the most segments, its top reason with that reason's
/// own count, and the share of the stage's input.
pub fn verdict(rows: &[LedgerRow]) -> Verdict {
    let worst = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.drops > 0)
        // Earliest stage on a tie: it is upstream of the others.
        .max_by_key(|(i, r)| (r.drops, std::cmp::Reverse(*i)));
    let Some((_, worst)) = worst else {
        return Verdict {
            stage: None,
            segments: 0,
            reason: None,
            reason_segments: 0,
            input: rows.iter().find_map(|r| r.segments_in),
            percent: None,
            text: "no loss".into(),
        };
    };
    let (reason, reason_segments) = worst
        .reasons
        .iter()
        .max_by_key(|(name, c)| (c.segments, std::cmp::Reverse(name.as_str())))
        .map(|(name, c)| (name.clone(), c.segments))
        .unwrap_or_default();
    let input = super::input_at(rows, worst.stage);
    // Drops above the input mean the input was counted elsewhere (e.g. the
    // drops happened on another node of the scope): no share then.
    let percent = input
        .filter(|n| *n > 0 && *n >= worst.drops)
        .map(|n| share_percent(worst.drops, n));
    let share = percent.map_or_else(String::new, |p| format!(" ({p}% of its input)"));
    Verdict {
        stage: Some(worst.stage),
        text: format!(
            "largest loss: stage {}, {} segments{share}; top reason {reason}: {reason_segments} segments",
            worst.stage, worst.drops
        ),
        segments: worst.drops,
        reason: Some(reason),
        reason_segments,
        input,
        percent,
    }
}
