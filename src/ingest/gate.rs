//! The sanity gate: a bundle that makes a source shrink too much is held for approval.

/// `Some(reason)` when the bundle must be held: its item count (rules plus indicators) is zero, or
/// it fell by more than `max_drop_percent` from what the store holds.
pub fn check(before: u64, after: u64, max_drop_percent: f64) -> Option<String> {
    if after == 0 {
        return Some(format!(
            "the bundle holds no rules and no indicators (the store has {before}); \
             approve with `etferry ingest --approve BUNDLE` if that is right"
        ));
    }
    if before == 0 || after >= before {
        return None;
    }
    let drop = (before - after) as f64 * 100.0 / before as f64;
    (drop > max_drop_percent).then(|| {
        format!(
            "rule count falls from {before} to {after} ({drop:.1} % drop, limit {max_drop_percent} %); \
             approve with `etferry ingest --approve BUNDLE` if that is right"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn gate_table() {
        // (before, after, limit, held)
        let table = [
            (100, 100, 20.0, false),
            (100, 80, 20.0, false),
            (100, 79, 20.0, true),
            (100, 0, 20.0, true),
            (0, 0, 20.0, true),
            (0, 5, 20.0, false),
            (100, 150, 20.0, false),
            (100, 99, 0.0, true),
        ];
        for (b, a, l, held) in table {
            assert_eq!(check(b, a, l).is_some(), held, "{b} -> {a} at {l} %");
        }
    }
}
