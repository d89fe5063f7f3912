//! Rolling-window frequency caps ("at most N sends per D"). Pure: the caller passes the
//! send history and the instant; nothing here reads a clock or a store.

use chrono::{DateTime, Duration, Utc};

/// At most `max` sends in any rolling window of length `per`. A send at `s` counts against
/// an attempt at `at` when `at - per < s <= at` (so a send exactly `per` ago has left the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    pub max: u32,
    pub per: Duration,
}

/// Florida: no more than three commercial telephone solicitation calls, texts or voicemails to
/// a person in a 24-hour period on the same subject matter (Florida Telemarketing Act,
/// Fla. Stat. 501.616(6)(b), added in 2021 alongside the Florida Telephone Solicitation Act
/// amendments to 501.059). The subject-matter grouping is the caller's job: pass only the
/// sends on the same subject.
pub const FLORIDA_FTSA: FrequencyCap = FrequencyCap {
    max: 3,
    per: Duration::hours(24),
};

impl FrequencyCap {
    fn in_window(&self, previous_sends: &[DateTime<Utc>], at: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let from = at - self.per;
        let mut sends: Vec<_> = previous_sends
            .iter()
            .copied()
            .filter(|s| *s > from && *s <= at)
            .collect();
        sends.sort();
        sends
    }

    /// True if one more send at `at` keeps every rolling window within the cap. Sends after
    /// `at` are ignored: the history is of sends already made.
    pub fn allows(&self, previous_sends: &[DateTime<Utc>], at: DateTime<Utc>) -> bool {
        (self.in_window(previous_sends, at).len() as u64) < u64::from(self.max)
    }

    /// The earliest instant `>= at` at which [`allows`](Self::allows) holds, assuming no
    /// further sends; `None` when `max` is 0 (never).
    pub fn next_allowed(
        &self,
        previous_sends: &[DateTime<Utc>],
        at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if self.max == 0 {
            return None;
        }
        let sends = self.in_window(previous_sends, at);
        let max = self.max as usize;
        if sends.len() < max {
            return Some(at);
        }
        // Once the send `max` places from the newest leaves the window, `max - 1` remain.
        Some(sends[sends.len() - max] + self.per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, h, m, 0).unwrap()
    }

    #[test]
    fn florida_three_per_day() {
        let sends = [t(9, 0), t(12, 0), t(15, 0)];
        assert!(FLORIDA_FTSA.allows(&sends[..2], t(16, 0)));
        assert!(!FLORIDA_FTSA.allows(&sends, t(16, 0)));
        let next = FLORIDA_FTSA.next_allowed(&sends, t(16, 0)).unwrap();
        assert_eq!(next, t(9, 0) + Duration::hours(24));
        assert!(FLORIDA_FTSA.allows(&sends, next));
        assert!(!FLORIDA_FTSA.allows(&sends, next - Duration::seconds(1)));
    }

    #[test]
    fn zero_cap_never_allows() {
        let cap = FrequencyCap {
            max: 0,
            per: Duration::hours(1),
        };
        assert!(!cap.allows(&[], t(9, 0)));
        assert_eq!(cap.next_allowed(&[], t(9, 0)), None);
    }
}
