//! Local wall-clock arithmetic for `wait until HH:MM local`, DST-correct via chrono-tz.
//! Nothing here reads a clock: `now` is always an argument.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

/// The instant of a local date and time in `tz`. A time that does not exist (spring forward)
/// moves forward to the first valid instant after the gap; an ambiguous time (fall back)
/// takes the earlier instant, so a message is never a day late or sent twice.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are at most a few hours (1 h in every US zone): step minute by minute to
            // the first local minute that exists.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                match tz.from_local_datetime(&probe) {
                    LocalResult::Single(t) => return t.with_timezone(&Utc),
                    LocalResult::Ambiguous(a, b) => return a.min(b).with_timezone(&Utc),
                    LocalResult::None => {}
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// The first instant at or after `now` that reads `hour:minute` in `tz` on one of `days`
/// (0 = Monday ... 6 = Sunday; empty = any day).
pub fn next_local_time(
    now: DateTime<Utc>,
    tz: Tz,
    hour: u32,
    minute: u32,
    days: &[u8],
) -> DateTime<Utc> {
    let Some(at) = NaiveTime::from_hms_opt(hour.min(23), minute.min(59), 0) else {
        return now;
    };
    let today: NaiveDate = now.with_timezone(&tz).date_naive();
    for d in today.iter_days().take(9) {
        let wd = d.weekday().num_days_from_monday() as u8;
        if !days.is_empty() && !days.contains(&wd) {
            continue;
        }
        let t = resolve_local(tz, d.and_time(at));
        if t >= now {
            return t;
        }
    }
    now
}

/// `2026-03-09T10:00:00-04:00 America/New_York`: what the recipient's clock read.
pub fn local_label(t: DateTime<Utc>, tz: Tz) -> String {
    use chrono::{Offset, Timelike};
    use std::fmt::Write;
    let local = t.with_timezone(&tz);
    let off = local.offset().fix().local_minus_utc();
    if !(0..=9999).contains(&local.year()) || off % 60 != 0 {
        // What the fast path below does not write the same way as chrono's `format`.
        return format!("{} {}", local.format("%Y-%m-%dT%H:%M:%S%:z"), tz.name());
    }
    // One label per send: written directly, as chrono's format (which parses its pattern on
    // every call) would write it.
    let (sign, off) = if off < 0 { ('-', -off) } else { ('+', off) };
    let mut s = String::with_capacity(26 + tz.name().len());
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02} {}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second(),
        off / 3600,
        off / 60 % 60,
        tz.name()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn local_label_is_chrono_format() {
        let zones = [
            chrono_tz::America::New_York,
            chrono_tz::Asia::Kolkata,
            chrono_tz::America::St_Johns,
            chrono_tz::UTC,
            chrono_tz::Pacific::Chatham,
        ];
        let mut t = utc("2026-01-01T00:00:00Z");
        while t < utc("2027-01-01T00:00:00Z") {
            for tz in zones {
                let want = format!(
                    "{} {}",
                    t.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%:z"),
                    tz.name()
                );
                assert_eq!(local_label(t, tz), want);
            }
            t += Duration::seconds(86_400 * 3 + 3_607);
        }
    }

    #[test]
    fn spring_gap_moves_forward() {
        let ny = chrono_tz::America::New_York;
        // 2026-03-08 02:30 does not exist in New York: the first valid instant is 03:00 EDT.
        let t = next_local_time(utc("2026-03-08T05:00:00Z"), ny, 2, 30, &[]);
        assert_eq!(t, utc("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn fall_back_takes_earlier() {
        let ny = chrono_tz::America::New_York;
        let t = next_local_time(utc("2026-11-01T04:00:00Z"), ny, 1, 30, &[]);
        assert_eq!(t, utc("2026-11-01T05:30:00Z"));
    }

    #[test]
    fn weekdays_skip_weekend() {
        let ny = chrono_tz::America::New_York;
        // Saturday 2026-03-07 noon -> Monday 10:00 EDT.
        let t = next_local_time(utc("2026-03-07T17:00:00Z"), ny, 10, 0, &[0, 1, 2, 3, 4]);
        assert_eq!(t, utc("2026-03-09T14:00:00Z"));
    }
}
