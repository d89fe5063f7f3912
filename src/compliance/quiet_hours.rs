//! Quiet hours: the embedded table of send windows (federal and by state), shop overrides,
//! combining rows for one recipient (stricter wins), and DST-correct window arithmetic.
//! Not here: which zone the recipient is in (the caller passes it) and what to do with a
//! message that falls in quiet hours (wait or drop is the flow's choice).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::Deserialize;

/// The table, format documented at its top.
const BUILTIN: &str = include_str!("quiet_hours.toml");

const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// A daily send window `[start, end)` in the recipient's local time; a send at `end` is quiet.
/// Windows never cross midnight (every rule we encode is a daytime window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Window {
    pub fn contains(&self, t: NaiveTime) -> bool {
        self.start <= t && t < self.end
    }

    /// The overlap of two windows; `None` when they do not overlap.
    pub fn intersect(&self, other: &Window) -> Option<Window> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(Window { start, end })
    }

    fn parse(text: &str) -> Result<Window, String> {
        let bad = || format!("expected \"HH:MM-HH:MM\" or \"none\", found {text:?}");
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let time = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
        let w = Window {
            start: time(a)?,
            end: time(b)?,
        };
        if w.start >= w.end {
            return Err(format!(
                "window {text:?} must start before it ends (windows cannot cross midnight)"
            ));
        }
        Ok(w)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// A date with no sends at all: every year on a month and day, or one calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoSendDate {
    Yearly { month: u32, day: u32 },
    Once(NaiveDate),
}

impl NoSendDate {
    pub fn matches(&self, date: NaiveDate) -> bool {
        match *self {
            NoSendDate::Yearly { month, day } => date.month() == month && date.day() == day,
            NoSendDate::Once(d) => d == date,
        }
    }

    fn parse(text: &str) -> Result<NoSendDate, String> {
        if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(NoSendDate::Once(d));
        }
        let bad = || format!("expected \"MM-DD\" or \"YYYY-MM-DD\", found {text:?}");
        let (m, d) = text.split_once('-').ok_or_else(bad)?;
        let (month, day): (u32, u32) =
            (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
        // Validate against a leap year so "02-29" is accepted.
        NaiveDate::from_ymd_opt(2024, month, day).ok_or_else(bad)?;
        Ok(NoSendDate::Yearly { month, day })
    }
}

/// One row as written in the TOML: unknown keys are errors so a typo cannot silently
/// widen a window.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowSpec {
    window: Option<String>,
    weekdays: Option<String>,
    weekends: Option<String>,
    mon: Option<String>,
    tue: Option<String>,
    wed: Option<String>,
    thu: Option<String>,
    fri: Option<String>,
    sat: Option<String>,
    sun: Option<String>,
    #[serde(default)]
    no_send_dates: Vec<String>,
    source: String,
}

/// One jurisdiction's rule: a window (or none) for each weekday, no-send dates, a source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    days: [Option<Window>; 7],
    no_send: Vec<NoSendDate>,
    source: String,
}

impl Row {
    fn from_value(name: &str, value: &toml::Value) -> Result<Row, String> {
        let spec: RowSpec = value
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("quiet hours row `{name}`: {}", e.message()))?;
        Row::from_spec(spec).map_err(|e| format!("quiet hours row `{name}`: {e}"))
    }

    fn from_spec(spec: RowSpec) -> Result<Row, String> {
        let window_or_none = |key: &str, text: &str| -> Result<Option<Window>, String> {
            if text.trim().eq_ignore_ascii_case("none") {
                Ok(None)
            } else {
                Window::parse(text)
                    .map(Some)
                    .map_err(|e| format!("`{key}`: {e}"))
            }
        };
        let per_day = [
            &spec.mon, &spec.tue, &spec.wed, &spec.thu, &spec.fri, &spec.sat, &spec.sun,
        ];
        let mut days = [None; 7];
        for (i, day) in WEEK.iter().enumerate() {
            let weekend = matches!(day, Weekday::Sat | Weekday::Sun);
            let group = if weekend {
                &spec.weekends
            } else {
                &spec.weekdays
            };
            // Most specific wins: the day's own key, then weekdays/weekends, then window.
            let (key, text) = match (per_day[i], group, &spec.window) {
                (Some(t), _, _) => (day_key(*day), t),
                (None, Some(t), _) => (if weekend { "weekends" } else { "weekdays" }, t),
                (None, None, Some(t)) => ("window", t),
                (None, None, None) => {
                    return Err(format!(
                        "no window for {day}: set `window`, `{}` or `{}` (\"none\" for no sends)",
                        if weekend { "weekends" } else { "weekdays" },
                        day_key(*day)
                    ))
                }
            };
            days[i] = window_or_none(key, text)?;
        }
        let no_send = spec
            .no_send_dates
            .iter()
            .map(|d| NoSendDate::parse(d).map_err(|e| format!("`no_send_dates`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if spec.source.trim().is_empty() {
            return Err("`source` must name the rule this row implements".into());
        }
        Ok(Row {
            days,
            no_send,
            source: spec.source,
        })
    }
}

fn day_key(day: Weekday) -> &'static str {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][day.num_days_from_monday() as usize]
}

/// The quiet-hours table: the federal row and one row per state that is stricter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietHours {
    federal: Row,
    states: BTreeMap<String, Row>,
}

impl QuietHours {
    /// The embedded table. It is checked by a unit test, so parsing cannot fail in a build
    /// that passed its tests; if it somehow does, fall back to the federal window alone
    /// rather than panic in a running system.
    pub fn builtin() -> QuietHours {
        // Parsed once per process: the checker asks for it per flow and parsing the TOML
        // table (times and dates) showed up in the check benchmark's profile.
        static TABLE: std::sync::OnceLock<QuietHours> = std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| {
                QuietHours::from_toml(BUILTIN).unwrap_or_else(|_| QuietHours {
                    federal: federal_fallback(),
                    states: BTreeMap::new(),
                })
            })
            .clone()
    }

    /// Parse a table in the format of `quiet_hours.toml`. Errors name the offending row.
    pub fn from_toml(text: &str) -> Result<QuietHours, String> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| format!("quiet hours table: {}", e.message()))?;
        let mut federal = None;
        let mut states = BTreeMap::new();
        for (key, value) in &doc {
            match key.as_str() {
                "federal" => federal = Some(Row::from_value("federal", value)?),
                "states" => {
                    let table = value
                        .as_table()
                        .ok_or("quiet hours table: `states` must be a table of rows")?;
                    for (name, row) in table {
                        let code = state_code(name)?;
                        states.insert(
                            code.clone(),
                            Row::from_value(&format!("states.{code}"), row)?,
                        );
                    }
                }
                other => return Err(format!("quiet hours table: unknown key `{other}`")),
            }
        }
        let federal = federal.ok_or("quiet hours table: missing the `[federal]` row")?;
        Ok(QuietHours { federal, states })
    }

    /// Shop overrides from the project file: the same row format as the table, each row
    /// replacing the built-in row of that name whole (fields are not merged, so an override
    /// says everything it means). Accepted shapes: `{ federal = {..}, states = { CT = {..} } }`
    /// as in the table, or rows keyed directly by state code (`{ CT = {..} }`).
    pub fn with_overrides(mut self, overrides: &toml::Table) -> Result<QuietHours, String> {
        for (key, value) in overrides {
            match key.as_str() {
                "federal" => self.federal = Row::from_value("federal", value)?,
                "states" => {
                    let table = value
                        .as_table()
                        .ok_or("quiet hours overrides: `states` must be a table of rows")?;
                    for (name, row) in table {
                        let code = state_code(name)?;
                        let row = Row::from_value(&format!("states.{code}"), row)?;
                        self.states.insert(code, row);
                    }
                }
                name => {
                    let code = state_code(name)?;
                    let row = Row::from_value(&code, value)?;
                    self.states.insert(code, row);
                }
            }
        }
        Ok(self)
    }

    /// The states that have their own row.
    pub fn states(&self) -> impl Iterator<Item = &str> {
        self.states.keys().map(String::as_str)
    }

    /// The effective rules for a recipient: federal ∩ address state ∩ area-code state.
    /// Both states apply because a number's area code is presumed to be the resident's
    /// state (Conn. Gen. Stat. 42-288a; Florida's 501.059 has the same presumption) while
    /// the address is where they actually are: stricter wins, so windows intersect and
    /// no-send days and dates unite. Unknown or absent states add nothing.
    pub fn rules_for(&self, address_state: Option<&str>, area_code_state: Option<&str>) -> Rules {
        let mut rules = Rules::from_row("federal", &self.federal);
        let mut seen: Vec<String> = Vec::new();
        for state in [address_state, area_code_state].into_iter().flatten() {
            let code = state.trim().to_ascii_uppercase();
            if seen.contains(&code) {
                continue;
            }
            if let Some(row) = self.states.get(&code) {
                rules = rules.intersect(&Rules::from_row(&code, row));
            }
            seen.push(code);
        }
        rules
    }
}

fn state_code(name: &str) -> Result<String, String> {
    let code = name.trim().to_ascii_uppercase();
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code)
    } else {
        Err(format!(
            "quiet hours row `{name}`: rows are named `federal` or by two-letter state code"
        ))
    }
}

/// TCPA, 47 CFR 64.1200(c)(1): no solicitation before 08:00 or after 21:00 local time.
fn federal_fallback() -> Row {
    let w = Window {
        start: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN),
        end: NaiveTime::from_hms_opt(21, 0, 0).unwrap_or(NaiveTime::MIN),
    };
    Row {
        days: [Some(w); 7],
        no_send: Vec::new(),
        source: "TCPA, 47 CFR 64.1200(c)(1)".into(),
    }
}

/// The effective rules for one recipient: a window (or none) per weekday, no-send dates,
/// and which rows contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Indexed by `Weekday::num_days_from_monday`.
    days: [Option<Window>; 7],
    no_send: Vec<NoSendDate>,
    /// Row names ("federal", "CT", ...) and their sources, in the order applied.
    rows: Vec<(String, String)>,
}

impl Rules {
    fn from_row(name: &str, row: &Row) -> Rules {
        Rules {
            days: row.days,
            no_send: row.no_send.clone(),
            rows: vec![(name.to_string(), row.source.clone())],
        }
    }

    /// Stricter of two rule sets: per-day window intersection, union of no-send dates.
    pub fn intersect(&self, other: &Rules) -> Rules {
        let mut days = [None; 7];
        for (i, d) in days.iter_mut().enumerate() {
            *d = match (&self.days[i], &other.days[i]) {
                (Some(a), Some(b)) => a.intersect(b),
                _ => None,
            };
        }
        let mut no_send = self.no_send.clone();
        no_send.extend(other.no_send.iter().copied());
        no_send.sort();
        no_send.dedup();
        let mut rows = self.rows.clone();
        for r in &other.rows {
            if !rows.contains(r) {
                rows.push(r.clone());
            }
        }
        Rules {
            days,
            no_send,
            rows,
        }
    }

    /// The window for a weekday, ignoring no-send dates.
    pub fn window(&self, day: Weekday) -> Option<Window> {
        self.days[day.num_days_from_monday() as usize]
    }

    /// The window on a calendar date: none on a no-send date.
    pub fn window_on(&self, date: NaiveDate) -> Option<Window> {
        if self.no_send.iter().any(|d| d.matches(date)) {
            return None;
        }
        self.window(date.weekday())
    }

    pub fn no_send_dates(&self) -> &[NoSendDate] {
        &self.no_send
    }

    /// True if no day of the week has a window: nothing can ever be sent.
    pub fn never(&self) -> bool {
        self.days.iter().all(Option::is_none)
    }

    /// Whether a send at this local (recipient's wall clock) date and time is allowed.
    pub fn allows(&self, local: NaiveDateTime) -> bool {
        self.window_on(local.date())
            .is_some_and(|w| w.contains(local.time()))
    }

    /// The earliest instant `>= at` when sending is allowed in zone `tz`, or `None` if the
    /// rules allow no day of the week. DST: a window opening at a local time that does not
    /// exist that day (spring forward) opens at the first valid instant after it; one
    /// opening at an ambiguous time (fall back) opens at the earlier of the two instants.
    pub fn next_allowed_checked(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if self.never() {
            return None;
        }
        let first = at.with_timezone(&tz).date_naive();
        // A week plus a year of no-send dates is the longest a valid table can block.
        for date in first.iter_days().take(7 + 366) {
            let Some(w) = self.window_on(date) else {
                continue;
            };
            let open = resolve_local(tz, date.and_time(w.start));
            let close = resolve_local(tz, date.and_time(w.end));
            let candidate = open.max(at);
            if candidate < close {
                return Some(candidate);
            }
        }
        None
    }

    /// As [`next_allowed_checked`](Self::next_allowed_checked); when the rules allow no day
    /// at all, returns `DateTime::<Utc>::MAX_UTC` ("never"): check [`never`](Self::never) first
    /// where that matters.
    pub fn next_allowed(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        self.next_allowed_checked(at, tz)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// True if a send at this local time of day is forbidden on every day of the week (the
    /// checker's "`wait until 22:00` in a marketing flow always lands in quiet hours").
    pub fn always_quiet_at(&self, t: NaiveTime) -> bool {
        self.quiet_on_all(t, &WEEK)
    }

    /// True if a send at this local time of day is forbidden on each of the given weekdays
    /// (vacuously true for an empty list). No-send dates are not considered: they make
    /// some days quieter but never change the answer for a weekday in general.
    pub fn quiet_on_all(&self, t: NaiveTime, days: &[Weekday]) -> bool {
        days.iter()
            .all(|d| !self.window(*d).is_some_and(|w| w.contains(t)))
    }

    /// The sources of every row that contributed, federal first.
    pub fn sources(&self) -> Vec<String> {
        self.rows.iter().map(|(_, s)| s.clone()).collect()
    }

    /// One line for people, e.g. `09:00-20:00 Mon-Sat, 12:00-20:00 Sun (CT, TX)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut i = 0;
        while i < 7 {
            let mut j = i;
            while j + 1 < 7 && self.days[j + 1] == self.days[i] {
                j += 1;
            }
            let what = match self.days[i] {
                Some(w) => w.to_string(),
                None => "no sends".to_string(),
            };
            let span = match (i, j) {
                (0, 6) => "daily".to_string(),
                _ if i == j => short(WEEK[i]).to_string(),
                _ => format!("{}-{}", short(WEEK[i]), short(WEEK[j])),
            };
            parts.push(format!("{what} {span}"));
            i = j + 1;
        }
        let mut text = parts.join(", ");
        if !self.no_send.is_empty() {
            text.push_str(&format!(
                ", no sends on {} listed dates",
                self.no_send.len()
            ));
        }
        let names: Vec<&str> = self
            .rows
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != "federal")
            .collect();
        let names = if names.is_empty() {
            "federal".to_string()
        } else {
            names.join(", ")
        };
        format!("{text} ({names})")
    }
}

fn short(day: Weekday) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][day.num_days_from_monday() as usize]
}

/// A local wall-clock time as an instant. Ambiguous (fall back): the earlier instant.
/// Nonexistent (spring forward): the first instant after the gap, found by stepping whole
/// minutes (every transition in the IANA data for current years is on a minute boundary;
/// gaps are at most a few hours, a day bounds the search).
fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut t = local;
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(x) => return x.with_timezone(&Utc),
            LocalResult::Ambiguous(a, b) => return a.min(b).with_timezone(&Utc),
            LocalResult::None => t += Duration::minutes(1),
        }
    }
    // Unreachable with real zone data; treat the wall time as UTC rather than panic.
    local.and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses() {
        let q = QuietHours::from_toml(BUILTIN).expect("embedded quiet_hours.toml");
        assert_eq!(
            q.federal.days[0].map(|w| w.to_string()),
            Some("08:00-21:00".into())
        );
        assert!(q.states().count() >= 20);
        // Every state row is at least as strict as federal, so rules_for(state) == the row.
        for s in q.states() {
            let r = q.rules_for(Some(s), None);
            assert_eq!(
                r.days, q.states[s].days,
                "{s} is looser than federal somewhere"
            );
        }
    }

    #[test]
    fn day_keys_take_precedence() {
        let row = r#"
            [federal]
            window = "08:00-21:00"
            weekends = "10:00-17:00"
            sun = "none"
            source = "t"
        "#;
        let q = QuietHours::from_toml(row).unwrap();
        let r = q.rules_for(None, None);
        assert_eq!(r.window(Weekday::Fri).unwrap().to_string(), "08:00-21:00");
        assert_eq!(r.window(Weekday::Sat).unwrap().to_string(), "10:00-17:00");
        assert_eq!(r.window(Weekday::Sun), None);
        assert_eq!(
            r.describe(),
            "08:00-21:00 Mon-Fri, 10:00-17:00 Sat, no sends Sun (federal)"
        );
    }

    #[test]
    fn row_errors() {
        let missing = "[federal]\nweekdays = \"08:00-21:00\"\nsource = \"t\"\n";
        let e = QuietHours::from_toml(missing).unwrap_err();
        assert!(e.contains("`federal`") && e.contains("Sat"), "{e}");
        let backwards = "[federal]\nwindow = \"21:00-08:00\"\nsource = \"t\"\n";
        assert!(QuietHours::from_toml(backwards)
            .unwrap_err()
            .contains("cross midnight"));
        let typo = "[federal]\nwindow = \"08:00-21:00\"\nsorce = \"t\"\n";
        let e = QuietHours::from_toml(typo).unwrap_err();
        assert!(e.contains("sorce"), "{e}");
        let date =
            "[federal]\nwindow = \"08:00-21:00\"\nno_send_dates = [\"13-01\"]\nsource = \"t\"\n";
        assert!(QuietHours::from_toml(date)
            .unwrap_err()
            .contains("no_send_dates"));
    }

    #[test]
    fn no_send_dates() {
        assert_eq!(
            NoSendDate::parse("12-25"),
            Ok(NoSendDate::Yearly { month: 12, day: 25 })
        );
        assert!(NoSendDate::parse("02-29").is_ok());
        assert!(NoSendDate::parse("2026-02-29").is_err());
        let d = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert!(NoSendDate::parse("2026-11-26").unwrap().matches(d));
    }

    #[test]
    fn gap_resolves_to_end_of_gap() {
        let tz = chrono_tz::America::New_York;
        let gap = NaiveDate::from_ymd_opt(2026, 3, 8)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        // 03:00 EDT = 07:00 UTC
        assert_eq!(
            resolve_local(tz, gap),
            Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0).unwrap()
        );
    }
}
