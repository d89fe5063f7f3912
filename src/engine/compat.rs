//! Temporary stand-ins for `crate::compliance` and `crate::sms` (written on other branches),
//! with the promised signatures and only the rows the engine tests need. Deleted on merge.

pub mod compliance {
    use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, TimeZone, Utc};
    use chrono_tz::Tz;

    #[derive(Clone, Debug)]
    pub struct QuietHours;

    /// Per weekday (Mon=0) an allowed window `[start, end)`, in minutes of the local day.
    #[derive(Clone, Debug)]
    pub struct Rules {
        days: [Option<(u32, u32)>; 7],
        names: Vec<&'static str>,
    }

    fn row(state: &str) -> Option<[Option<(u32, u32)>; 7]> {
        let all = |s: u32, e: u32| [Some((s * 60, e * 60)); 7];
        Some(match state {
            // Conn. Gen. Stat. 42-288a (2023): 09:00-20:00.
            "CT" => all(9, 20),
            "FL" | "MD" | "OK" | "WA" | "NJ" | "MA" => all(8, 20),
            "TX" => {
                let mut d = all(9, 21);
                d[6] = Some((12 * 60, 21 * 60));
                d
            }
            _ => return None,
        })
    }

    impl QuietHours {
        pub fn builtin() -> QuietHours {
            QuietHours
        }
        pub fn with_overrides(self, _o: &toml::Table) -> Result<QuietHours, String> {
            Ok(self)
        }
        pub fn rules_for(
            &self,
            address_state: Option<&str>,
            area_code_state: Option<&str>,
        ) -> Rules {
            // TCPA, 47 CFR 64.1200(c)(1): 08:00-21:00 local.
            let mut r = Rules {
                days: [Some((8 * 60, 21 * 60)); 7],
                names: vec!["federal"],
            };
            for s in [address_state, area_code_state].into_iter().flatten() {
                if let Some(d) = row(s) {
                    for (i, w) in d.iter().enumerate() {
                        r.days[i] = match (r.days[i], w) {
                            (Some(a), Some(b)) if a.0.max(b.0) < a.1.min(b.1) => {
                                Some((a.0.max(b.0), a.1.min(b.1)))
                            }
                            _ => None,
                        };
                    }
                    r.names.push(if s == "CT" { "CT" } else { "state" });
                }
            }
            r
        }
    }

    impl Rules {
        pub fn allows(&self, local: NaiveDateTime) -> bool {
            let m = local.time().hour_min();
            self.days[local.weekday().num_days_from_monday() as usize]
                .is_some_and(|(s, e)| m >= s && m < e)
        }
        pub fn next_allowed(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
            let mut t = at;
            for _ in 0..(8 * 24 * 4) {
                if self.allows(t.with_timezone(&tz).naive_local()) {
                    return t;
                }
                // Step to the next quarter hour boundary (windows open on whole hours).
                let local = t.with_timezone(&tz);
                let m = local.time().hour_min() % 15;
                let step = Duration::minutes(i64::from(15 - m))
                    - Duration::seconds(i64::from(local.second()));
                t += step;
                let _ = tz.from_utc_datetime(&t.naive_utc());
            }
            t
        }
        pub fn describe(&self) -> String {
            self.names.join("+")
        }
    }

    trait HourMin {
        fn hour_min(&self) -> u32;
    }
    impl HourMin for NaiveTime {
        fn hour_min(&self) -> u32 {
            use chrono::Timelike;
            self.hour() * 60 + self.minute()
        }
    }
    use chrono::Timelike;

    pub fn area_code_state(phone: &str) -> Option<&'static str> {
        let d = phone.strip_prefix("+1")?;
        Some(match d.get(..3)? {
            "203" | "860" | "475" | "959" => "CT",
            "212" | "646" | "718" | "917" => "NY",
            "312" | "773" => "IL",
            "305" | "786" => "FL",
            "214" | "512" | "713" => "TX",
            "415" | "213" | "310" => "CA",
            _ => return None,
        })
    }

    pub fn state_zone(state: &str) -> Option<Tz> {
        Some(match state {
            "CT" | "NY" | "FL" | "MA" | "NJ" => chrono_tz::America::New_York,
            "IL" | "TX" => chrono_tz::America::Chicago,
            "CA" | "WA" => chrono_tz::America::Los_Angeles,
            _ => return None,
        })
    }

    pub fn area_code_zone(phone: &str) -> Option<Tz> {
        state_zone(area_code_state(phone)?)
    }

    #[derive(Clone, Copy, Debug)]
    pub struct FrequencyCap {
        pub max: u32,
        pub per: Duration,
    }
    impl FrequencyCap {
        pub fn allows(&self, previous: &[DateTime<Utc>], at: DateTime<Utc>) -> bool {
            let n = previous
                .iter()
                .filter(|s| **s > at - self.per && **s <= at)
                .count();
            (n as u64) < u64::from(self.max)
        }
        pub fn next_allowed(
            &self,
            previous: &[DateTime<Utc>],
            at: DateTime<Utc>,
        ) -> Option<DateTime<Utc>> {
            if self.max == 0 {
                return None;
            }
            let mut s: Vec<_> = previous
                .iter()
                .copied()
                .filter(|s| *s > at - self.per && *s <= at)
                .collect();
            s.sort();
            let max = self.max as usize;
            if s.len() < max {
                return Some(at);
            }
            Some(s[s.len() - max] + self.per)
        }
    }
}

pub mod sms {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Encoding {
        Gsm7,
        Ucs2,
    }
    impl Encoding {
        pub fn as_str(self) -> &'static str {
            match self {
                Encoding::Gsm7 => "GSM-7",
                Encoding::Ucs2 => "UCS-2",
            }
        }
    }
    #[allow(dead_code)]
    pub struct SmsCount {
        pub encoding: Encoding,
        pub units: usize,
        pub segments: usize,
    }
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXT: &str = "^{}\\[]~|€\u{c}";
    pub fn count(text: &str) -> SmsCount {
        let mut units = 0;
        let mut gsm = true;
        for c in text.chars() {
            if BASIC.contains(c) {
                units += 1;
            } else if EXT.contains(c) {
                units += 2;
            } else {
                gsm = false;
            }
        }
        let (encoding, units, single, multi) = if gsm {
            (Encoding::Gsm7, units, 160, 153)
        } else {
            (Encoding::Ucs2, text.encode_utf16().count(), 70, 67)
        };
        let segments = if units <= single {
            1
        } else {
            units.div_ceil(multi)
        };
        SmsCount {
            encoding,
            units,
            segments,
        }
    }
}
