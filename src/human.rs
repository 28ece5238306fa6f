//! How people read numbers and times in the human output: times to the second in UTC, counts
//! with their noun in the right number, thousands grouped. JSON keeps the exact values.

use chrono::{DateTime, Utc};

/// `2026-12-01 10:32:22 UTC`: to the second, never nanoseconds.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An RFC 3339 time as stored in JSON, shown like [`time`]; anything else as it is.
pub fn time_text(s: &str) -> String {
    DateTime::parse_from_rfc3339(s)
        .map(|t| time(&t.with_timezone(&Utc)))
        .unwrap_or_else(|_| s.to_string())
}

/// `1 file`, `2 files`, `1,234 files`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", thousands(n))
    }
}

/// `24827` → `24,827`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_to_the_second_and_counts_in_the_right_number() {
        let t = DateTime::parse_from_rfc3339("2026-12-01T10:32:22.024647945Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time(&t), "2026-12-01 10:32:22 UTC");
        assert_eq!(
            time_text("2026-12-01T10:32:22.024647945Z"),
            "2026-12-01 10:32:22 UTC"
        );
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(24_827, "rule"), "24,827 rules");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
