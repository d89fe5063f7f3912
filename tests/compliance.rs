//! Compliance rules seen from outside: the built-in quiet-hours table by state, combining
//! address and area-code states, DST-correct `next_allowed`, overrides, area codes.

use aftercart::compliance::{
    area_code_state, area_code_zone, state_zone, QuietHours, Rules, FLORIDA_FTSA,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::America::{Chicago, New_York};

fn local(date: &str, time: &str) -> NaiveDateTime {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_time(hm(time))
}

fn hm(time: &str) -> NaiveTime {
    NaiveTime::parse_from_str(time, "%H:%M").unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn state(s: &str) -> Rules {
    QuietHours::builtin().rules_for(Some(s), None)
}

#[test]
fn builtin_table_parses_and_has_the_listed_states() {
    let q = QuietHours::builtin();
    let states: Vec<&str> = q.states().collect();
    for s in [
        "AL", "CA", "CT", "FL", "KY", "LA", "MA", "MD", "MI", "MN", "MS", "NJ", "NM", "NV", "OK",
        "RI", "TX", "WA",
    ] {
        assert!(states.contains(&s), "missing row for {s}");
    }
}

#[test]
fn connecticut_window_is_nine_to_eight_end_exclusive() {
    let ct = state("CT");
    // 2026-06-01 is a Monday.
    assert!(!ct.allows(local("2026-06-01", "08:30")));
    assert!(ct.allows(local("2026-06-01", "09:00")));
    assert!(ct.allows(local("2026-06-01", "19:59")));
    assert!(!ct.allows(local("2026-06-01", "20:00")));
    assert_eq!(ct.describe(), "09:00-20:00 daily (CT)");
    assert!(ct.sources().iter().any(|s| s.contains("42-288a")));
    assert!(ct.sources()[0].contains("64.1200(c)(1)"));
}

#[test]
fn texas_sunday_opens_at_noon() {
    let tx = state("TX");
    // 2026-06-07 is a Sunday.
    assert!(!tx.allows(local("2026-06-07", "11:00")));
    assert!(tx.allows(local("2026-06-07", "12:00")));
    assert!(tx.allows(local("2026-06-06", "11:00")));
    assert!(!tx.allows(local("2026-06-07", "21:00")));
}

#[test]
fn alabama_sunday_and_holidays_are_quiet_all_day() {
    let al = state("AL");
    for t in ["00:00", "08:00", "12:00", "19:59", "23:59"] {
        assert!(!al.allows(local("2026-06-07", t)), "Sunday {t}");
    }
    assert!(al.quiet_on_all(hm("12:00"), &[Weekday::Sun]));
    assert!(!al.quiet_on_all(hm("12:00"), &[Weekday::Sat, Weekday::Sun]));
    // Christmas (a Friday in 2026) and Thanksgiving 2026.
    assert!(!al.allows(local("2026-12-25", "12:00")));
    assert!(!al.allows(local("2026-11-26", "12:00")));
    assert!(al.allows(local("2026-11-27", "12:00")));
}

#[test]
fn connecticut_address_with_texas_area_code_takes_the_intersection() {
    let q = QuietHours::builtin();
    let r = q.rules_for(Some("CT"), area_code_state("+12145550100"));
    assert_eq!(
        r.describe(),
        "09:00-20:00 Mon-Sat, 12:00-20:00 Sun (CT, TX)"
    );
    assert!(!r.allows(local("2026-06-07", "11:30")));
    assert!(!r.allows(local("2026-06-06", "20:30")));
    assert!(r.allows(local("2026-06-07", "12:00")));
    assert_eq!(r.sources().len(), 3);
    // Order and case do not matter; the same state twice counts once.
    let swapped = q.rules_for(Some("tx"), Some("ct"));
    assert_eq!(swapped.window(Weekday::Sun), r.window(Weekday::Sun));
    assert_eq!(q.rules_for(Some("CT"), Some("CT")).sources().len(), 2);
}

#[test]
fn no_send_days_and_dates_unite() {
    let r = QuietHours::builtin().rules_for(Some("TX"), Some("AL"));
    assert_eq!(r.window(Weekday::Sun), None);
    assert_eq!(r.window(Weekday::Mon).unwrap().to_string(), "09:00-20:00");
    assert!(!r.allows(local("2026-12-25", "12:00")));
}

#[test]
fn unknown_state_is_federal() {
    let q = QuietHours::builtin();
    let r = q.rules_for(Some("ZZ"), None);
    assert_eq!(r, q.rules_for(None, None));
    assert_eq!(r.describe(), "08:00-21:00 daily (federal)");
}

#[test]
fn next_allowed_across_spring_forward() {
    let federal = QuietHours::builtin().rules_for(None, None);
    // Saturday 2026-03-07 22:00 EST (UTC-5) -> Sunday 08:00 EDT (UTC-4), not 08:00 EST.
    let at = utc(2026, 3, 8, 3, 0);
    assert_eq!(federal.next_allowed(at, New_York), utc(2026, 3, 8, 12, 0));
    // Inside the window the answer is `at` itself.
    let at = utc(2026, 3, 8, 15, 17);
    assert_eq!(federal.next_allowed(at, New_York), at);
    // A window opening inside the gap (02:30 does not exist) opens at 03:00 EDT.
    let q =
        QuietHours::from_toml("[federal]\nwindow = \"02:30-05:00\"\nsource = \"test\"\n").unwrap();
    let r = q.rules_for(None, None);
    assert_eq!(
        r.next_allowed(utc(2026, 3, 8, 5, 0), New_York),
        utc(2026, 3, 8, 7, 0)
    );
}

#[test]
fn next_allowed_across_fall_back() {
    let federal = QuietHours::builtin().rules_for(None, None);
    // Saturday 2026-10-31 21:30 EDT -> Sunday 08:00 EST (UTC-5) = 13:00 UTC.
    let at = utc(2026, 11, 1, 1, 30);
    assert_eq!(federal.next_allowed(at, New_York), utc(2026, 11, 1, 13, 0));
    // A window opening at an ambiguous time (01:30 happens twice) opens at the earlier one.
    let q =
        QuietHours::from_toml("[federal]\nwindow = \"01:30-05:00\"\nsource = \"test\"\n").unwrap();
    let r = q.rules_for(None, None);
    assert_eq!(
        r.next_allowed(utc(2026, 11, 1, 4, 0), New_York),
        utc(2026, 11, 1, 5, 30)
    );
}

#[test]
fn next_allowed_from_saturday_evening_in_alabama_is_monday_morning() {
    let al = state("AL");
    // Saturday 2026-05-02 20:30 CDT (UTC-5).
    let at = utc(2026, 5, 3, 1, 30);
    let next = al.next_allowed(at, Chicago);
    assert_eq!(next, utc(2026, 5, 4, 13, 0));
    assert!(al.allows(next.with_timezone(&Chicago).naive_local()));
}

#[test]
fn next_allowed_never_when_no_day_has_a_window() {
    let q = QuietHours::builtin()
        .with_overrides(
            &"federal = { window = \"06:00-07:00\", source = \"test\" }"
                .parse()
                .unwrap(),
        )
        .unwrap();
    let r = q.rules_for(Some("CT"), None);
    assert!(r.never());
    assert_eq!(
        r.next_allowed_checked(utc(2026, 5, 1, 0, 0), New_York),
        None
    );
    assert_eq!(
        r.next_allowed(utc(2026, 5, 1, 0, 0), New_York),
        DateTime::<Utc>::MAX_UTC
    );
}

#[test]
fn overrides_replace_whole_rows() {
    let overrides: toml::Table = r#"
        CT = { window = "10:00-19:00", source = "shop policy" }
        [states.TX]
        window = "09:00-21:00"
        source = "shop: Texas without the Sunday rule"
    "#
    .parse()
    .unwrap();
    let q = QuietHours::builtin().with_overrides(&overrides).unwrap();
    let ct = q.rules_for(Some("CT"), None);
    assert_eq!(ct.describe(), "10:00-19:00 daily (CT)");
    assert!(ct.sources().contains(&"shop policy".to_string()));
    assert!(q
        .rules_for(Some("TX"), None)
        .allows(local("2026-06-07", "10:00")));
    // Untouched rows stay.
    assert!(!q
        .rules_for(Some("AL"), None)
        .allows(local("2026-06-07", "12:00")));
}

#[test]
fn malformed_rows_name_the_row() {
    let overrides: toml::Table = r#"
        [states.TX]
        window = "9am-9pm"
        source = "x"
    "#
    .parse()
    .unwrap();
    let e = QuietHours::builtin()
        .with_overrides(&overrides)
        .unwrap_err();
    assert!(e.contains("states.TX") && e.contains("9am-9pm"), "{e}");

    let table = "[federal]\nwindow = \"08:00-21:00\"\nsource = \"f\"\n\
                 [states.NV]\nwindow = \"09:00-20:00\"\n";
    let e = QuietHours::from_toml(table).unwrap_err();
    assert!(e.contains("states.NV") && e.contains("source"), "{e}");
}

#[test]
fn always_quiet_at() {
    let federal = QuietHours::builtin().rules_for(None, None);
    assert!(federal.always_quiet_at(hm("22:00")));
    assert!(federal.always_quiet_at(hm("21:00")));
    assert!(federal.always_quiet_at(hm("07:59")));
    assert!(!federal.always_quiet_at(hm("10:00")));
    // Texas: 11:00 is quiet on Sunday only.
    let tx = state("TX");
    assert!(!tx.always_quiet_at(hm("11:00")));
    assert!(tx.quiet_on_all(hm("11:00"), &[Weekday::Sun]));
}

#[test]
fn area_codes() {
    assert_eq!(area_code_state("+12035551234"), Some("CT"));
    assert_eq!(area_code_state("+12125550100"), Some("NY"));
    assert_eq!(area_code_state("+14155550100"), Some("CA"));
    assert_eq!(area_code_state("+14165550100"), Some("ON"));
    assert_eq!(area_code_state("+15145550100"), Some("QC"));
    assert_eq!(area_code_state("+447700900000"), None);
    assert_eq!(area_code_state("+18005550100"), None); // toll-free: no state
    assert_eq!(area_code_zone("+12035551234"), Some(New_York));
    assert_eq!(
        area_code_zone("+19155550100"),
        Some(chrono_tz::America::Denver)
    );
    assert_eq!(state_zone("tx"), Some(Chicago));
    assert_eq!(state_zone("AZ"), Some(chrono_tz::America::Phoenix));
    assert_eq!(state_zone("XX"), None);
}

#[test]
fn florida_frequency_cap() {
    let sends = [
        utc(2026, 5, 1, 13, 0),
        utc(2026, 5, 1, 15, 0),
        utc(2026, 5, 1, 17, 0),
    ];
    let at = utc(2026, 5, 1, 18, 0);
    assert!(!FLORIDA_FTSA.allows(&sends, at));
    assert_eq!(
        FLORIDA_FTSA.next_allowed(&sends, at),
        Some(utc(2026, 5, 2, 13, 0))
    );
}
