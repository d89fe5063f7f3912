//! Phone number -> state/province and state -> representative time zone. Fallbacks only:
//! a zone stored on the person's profile always wins over anything guessed here, and a
//! ported or travelling number can be anywhere.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;

/// NANPA area codes (see the header of the file for source and what is left out).
const AREA_CODES: &str = include_str!("area_codes.csv");

struct Entry {
    region: &'static str,
    zone: Option<Tz>,
}

fn table() -> &'static HashMap<u16, Entry> {
    static TABLE: OnceLock<HashMap<u16, Entry>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = HashMap::new();
        for line in AREA_CODES.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut cols = line.split(',');
            // The file is embedded and covered by a unit test, so a bad line is a bug in the
            // data file; skip it rather than panic at run time.
            let (Some(code), Some(region)) = (cols.next(), cols.next()) else {
                continue;
            };
            let Ok(code) = code.parse::<u16>() else {
                continue;
            };
            let zone = cols
                .next()
                .filter(|z| !z.is_empty())
                .and_then(|z| z.parse().ok());
            map.insert(code, Entry { region, zone });
        }
        map
    })
}

/// The NPA (area code) of a NANP number in E.164 form, `+1NXXNXXXXXX`: N is 2-9, so a
/// number whose area code or exchange starts with 0 or 1 is not a valid NANP number.
pub fn area_code(phone_e164: &str) -> Option<u16> {
    let digits = phone_e164.strip_prefix("+1")?.as_bytes();
    if digits.len() != 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] < b'2' || digits[3] < b'2' {
        return None;
    }
    let npa = digits[..3]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    Some(npa)
}

/// NANP area code of an E.164 US/CA number (`+1NXXNXXXXXX`) -> two-letter state, territory
/// or province code. `None` for non-NANP numbers and codes not in the table (including
/// codes shared by several provinces, such as 902 and 867).
pub fn area_code_state(phone_e164: &str) -> Option<&'static str> {
    table().get(&area_code(phone_e164)?).map(|e| e.region)
}

/// A zone for the number's area code: the code's own zone where its state spans zones and
/// the whole code lies in one (915 El Paso is Mountain though Texas is mostly Central),
/// else [`state_zone`] of its state. The profile's explicit zone wins over this.
pub fn area_code_zone(phone_e164: &str) -> Option<Tz> {
    let entry = table().get(&area_code(phone_e164)?)?;
    entry.zone.or_else(|| state_zone(entry.region))
}

/// A representative IANA zone for a US state, territory or Canadian province (two-letter
/// code, case-insensitive). For states spanning zones this is the zone where most of the
/// population lives (Tennessee: Central; Kentucky, Michigan, Florida: Eastern; Idaho:
/// Mountain), so it is wrong for part of the state: the profile's explicit zone, or
/// [`area_code_zone`], wins where known.
pub fn state_zone(state: &str) -> Option<Tz> {
    use chrono_tz::America as Am;
    let tz = match state.trim().to_ascii_uppercase().as_str() {
        "CT" | "DE" | "DC" | "FL" | "GA" | "KY" | "ME" | "MD" | "MA" | "NH" | "NJ" | "NY"
        | "NC" | "OH" | "PA" | "RI" | "SC" | "VT" | "VA" | "WV" => Am::New_York,
        "MI" => Am::Detroit,
        "IN" => Am::Indiana::Indianapolis,
        "AL" | "AR" | "IL" | "IA" | "KS" | "LA" | "MN" | "MS" | "MO" | "NE" | "ND" | "OK"
        | "SD" | "TN" | "TX" | "WI" => Am::Chicago,
        "CO" | "MT" | "NM" | "UT" | "WY" => Am::Denver,
        "ID" => Am::Boise,
        // Arizona does not observe DST (the Navajo Nation does: profile zone wins).
        "AZ" => Am::Phoenix,
        "CA" | "NV" | "OR" | "WA" => Am::Los_Angeles,
        "AK" => Am::Anchorage,
        "HI" => Tz::Pacific__Honolulu,
        "PR" => Am::Puerto_Rico,
        "VI" => Am::St_Thomas,
        "GU" => Tz::Pacific__Guam,
        "MP" => Tz::Pacific__Saipan,
        "AS" => Tz::Pacific__Pago_Pago,
        // Canada
        "BC" => Am::Vancouver,
        "AB" | "NT" => Am::Edmonton,
        "YT" => Am::Whitehorse,
        // Most of Saskatchewan stays on Central Standard Time all year.
        "SK" => Am::Regina,
        "MB" => Am::Winnipeg,
        "ON" | "QC" => Am::Toronto,
        "NB" => Am::Moncton,
        "NS" | "PE" => Am::Halifax,
        "NL" => Am::St_Johns,
        "NU" => Am::Iqaluit,
        _ => return None,
    };
    Some(tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_table_parses() {
        let mut n = 0;
        for line in AREA_CODES.lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), 3, "line {line:?}");
            let code: u16 = cols[0].parse().expect(line);
            assert!((200..=999).contains(&code), "line {line:?}");
            assert!(
                state_zone(cols[1]).is_some(),
                "no zone for region in {line:?}"
            );
            if !cols[2].is_empty() {
                assert!(cols[2].parse::<Tz>().is_ok(), "bad zone in {line:?}");
            }
            n += 1;
        }
        assert_eq!(n, table().len(), "duplicate area code in the table");
        assert!(n > 300);
    }

    #[test]
    fn rejects_non_nanp_numbers() {
        assert_eq!(area_code("+442071234567"), None);
        assert_eq!(area_code("+1203555123"), None);
        assert_eq!(area_code("+11035551234"), None);
        assert_eq!(area_code("+12031551234"), None);
        assert_eq!(area_code("2035551234"), None);
        assert_eq!(area_code("+12035551234"), Some(203));
    }

    #[test]
    fn zone_refinements() {
        assert_eq!(
            area_code_zone("+19155550100"),
            Some(chrono_tz::America::Denver)
        );
        assert_eq!(
            area_code_zone("+12145550100"),
            Some(chrono_tz::America::Chicago)
        );
        assert_eq!(
            area_code_zone("+14165550100"),
            Some(chrono_tz::America::Toronto)
        );
        assert_eq!(area_code_zone("+19025550100"), None);
    }
}
