//! SMS segment counting: encoding choice (GSM-7 or UCS-2), unit counts and the split into parts.
//!
//! This is the single implementation used by the checker (segment budgets, `AC0402`/`AC0403`),
//! the engine and the `aftercart sms-count` CLI, so that all three always agree.
//!
//! Rules, and where they come from:
//! - GSM 03.38 / 3GPP TS 23.038 §6.2.1 defines the GSM 7-bit default alphabet (one septet per
//!   character) and its extension table (§6.2.1.1), reached through the escape septet 0x1B, so
//!   an extension character costs two septets.
//! - A message that uses any character outside those two tables is sent as UCS-2 (TS 23.038
//!   §5, data coding scheme "UCS2"); handsets and aggregators actually send UTF-16, so a
//!   character outside the Basic Multilingual Plane costs two 16-bit units (a surrogate pair).
//! - One segment carries 140 octets of user data (3GPP TS 23.040 §9.2.3.24): 160 septets or 70
//!   UCS-2 units. A longer message is concatenated: each part carries a 6-octet User Data
//!   Header (information element 0x00, TS 23.040 §9.2.3.24.1), which leaves 153 septets or 67
//!   UCS-2 units per part.
//! - A part never ends between an escape septet and its character, nor between the two halves
//!   of a surrogate pair: the receiver decodes each part on its own, so a split pair would be
//!   garbled. The part is closed one unit early instead.

use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The character set a message is sent in (TS 23.038 data coding scheme).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Encoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// The name used in JSON output and diagnostics: `GSM-7` or `UCS-2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One part (segment) of a message as it would go over the air.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part {
    /// 1-based, like the sequence number in the concatenation UDH (TS 23.040 §9.2.3.24.1).
    pub index: usize,
    /// Byte offset in the text where this part starts (inclusive).
    pub start: usize,
    /// Byte offset in the text where this part ends (exclusive).
    pub end: usize,
    /// 0-based char (Unicode scalar) index where this part starts (inclusive).
    pub char_start: usize,
    /// 0-based char index where this part ends (exclusive).
    pub char_end: usize,
    /// Septets (GSM-7) or UTF-16 units (UCS-2) in this part.
    pub units: usize,
    /// The part's text (`text[start..end]`), so JSON output and previews need nothing else.
    pub text: String,
}

/// The result of [`count`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmsCount {
    pub encoding: Encoding,
    /// Total septets (GSM-7) or UTF-16 units (UCS-2), without UDH overhead.
    pub units: usize,
    /// Segments billed; equals `parts.len()`.
    pub segments: usize,
    /// Unicode scalar values in the text.
    pub chars: usize,
    pub parts: Vec<Part>,
    /// the first character that forced UCS-2: (byte offset, char)
    pub ucs2_trigger: Option<(usize, char)>,
    /// 0-based char index of `ucs2_trigger`, for messages that point at it.
    pub ucs2_trigger_char: Option<usize>,
}

/// GSM-7 units of one char: Some(1) basic table, Some(2) extension table, None if not in GSM-7.
///
/// Tables are GSM 03.38 / 3GPP TS 23.038 §6.2.1 (default alphabet) and §6.2.1.1 (extension
/// table, each entry preceded by the escape septet 0x1B). Position 0x09 is U+00C7 (capital C
/// cedilla) as in the current standard; lowercase `ç` is not in the alphabet.
pub fn gsm7_units(c: char) -> Option<usize> {
    match c {
        // ASCII printable range, minus the characters the default alphabet lacks or moved to
        // the extension table.
        '^' | '{' | '}' | '\\' | '[' | ']' | '~' | '|' => Some(2),
        '`' => None,
        ' '..='~' => Some(1),
        // Control characters in the basic table: LF (0x0A) and CR (0x0D).
        '\n' | '\r' => Some(1),
        // Form feed is extension-table 0x0A (TS 23.038 §6.2.1.1, "page break").
        '\u{000C}' => Some(2),
        '€' => Some(2),
        // Non-ASCII letters and symbols of the basic table.
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        _ => None,
    }
}

/// UTF-16 units (1 or 2): characters outside the BMP need a surrogate pair.
pub fn ucs2_units(c: char) -> usize {
    c.len_utf16()
}

/// (units in a single segment, units per part of a concatenated message).
///
/// 140 octets of user data per SMS (TS 23.040 §9.2.3.24); a concatenated part gives 6 octets
/// to the UDH, leaving 134 octets: 153 septets or 67 UCS-2 units.
pub fn limits(enc: Encoding) -> (usize, usize) {
    match enc {
        Encoding::Gsm7 => (160, 153),
        Encoding::Ucs2 => (70, 67),
    }
}

/// Segments for a given unit count and encoding (160/153, 70/67 rule), assuming no unit is
/// lost at a part boundary. `0` units is `0` segments (see [`count`]).
///
/// [`count`] can need one segment more than this when an escape pair or surrogate pair would
/// straddle a boundary; use [`max_segments_for`] for an upper bound that holds regardless.
pub fn segments_for(units: usize, enc: Encoding) -> usize {
    let (single, per_part) = limits(enc);
    match units {
        0 => 0,
        u if u <= single => 1,
        u => u.div_ceil(per_part),
    }
}

/// An upper bound on the segments [`count`] can report for `units` units in `enc`, whatever
/// the text: a pair is never split, so each part except the last holds at least
/// `per_part - 1` units (one unit short when a two-unit pair did not fit).
pub fn max_segments_for(units: usize, enc: Encoding) -> usize {
    let (single, per_part) = limits(enc);
    match units {
        0 => 0,
        u if u <= single => 1,
        u => u.div_ceil(per_part - 1),
    }
}

/// Count the SMS segments of `text`.
///
/// Empty text is 0 units and 0 segments with no parts: no fixture vector covers it, and an
/// empty body is not sent at all (Twilio rejects it with error 21602), so nothing is billed.
pub fn count(text: &str) -> SmsCount {
    // GSM-7 unless some character is outside both GSM 03.38 tables; then the whole message
    // switches to UCS-2 (the data coding scheme applies to the whole user data, TS 23.038 §4).
    let ucs2_trigger = text.char_indices().find(|&(_, c)| gsm7_units(c).is_none());
    let ucs2_trigger_char = ucs2_trigger.map(|(byte, _)| text[..byte].chars().count());
    let encoding = if ucs2_trigger.is_some() {
        Encoding::Ucs2
    } else {
        Encoding::Gsm7
    };
    let units_of = |c: char| match encoding {
        // Unwrap is safe: in GSM-7 mode every char has been checked above.
        Encoding::Gsm7 => gsm7_units(c).unwrap_or(1),
        // In UCS-2 the extension characters are ordinary 1-unit BMP characters.
        Encoding::Ucs2 => ucs2_units(c),
    };

    let units: usize = text.chars().map(units_of).sum();
    let chars = text.chars().count();
    let (single, per_part) = limits(encoding);

    let mut parts = Vec::new();
    if units == 0 {
        // Nothing to send.
    } else if units <= single {
        parts.push(Part {
            index: 1,
            start: 0,
            end: text.len(),
            char_start: 0,
            char_end: chars,
            units,
            text: text.to_string(),
        });
    } else {
        // Greedy packing into parts of `per_part` units; a char (escape pair or surrogate pair)
        // that does not fit whole starts the next part (TS 23.038 §6.2.1.1 / TS 23.040
        // §9.2.3.24.1: each part is decoded on its own).
        let mut cur = Part {
            index: 1,
            start: 0,
            end: 0,
            char_start: 0,
            char_end: 0,
            units: 0,
            text: String::new(),
        };
        for (ci, (bi, c)) in text.char_indices().enumerate() {
            let u = units_of(c);
            if cur.units + u > per_part {
                let next = Part {
                    index: cur.index + 1,
                    start: bi,
                    end: bi,
                    char_start: ci,
                    char_end: ci,
                    units: 0,
                    text: String::new(),
                };
                parts.push(std::mem::replace(&mut cur, next));
            }
            cur.units += u;
            cur.text.push(c);
            cur.end = bi + c.len_utf8();
            cur.char_end = ci + 1;
        }
        parts.push(cur);
    }

    SmsCount {
        encoding,
        units,
        segments: parts.len(),
        chars,
        parts,
        ucs2_trigger,
        ucs2_trigger_char,
    }
}

impl SmsCount {
    /// Machine-readable form, for `aftercart sms-count --json` and tooling. Char positions
    /// are 0-based, `char_end`/`byte_end` exclusive.
    pub fn to_json(&self) -> Value {
        let (single, per_part) = limits(self.encoding);
        let parts: Vec<Value> = self
            .parts
            .iter()
            .map(|p| {
                json!({
                    "index": p.index,
                    "char_start": p.char_start,
                    "char_end": p.char_end,
                    "byte_start": p.start,
                    "byte_end": p.end,
                    "units": p.units,
                    "text": p.text,
                })
            })
            .collect();
        let trigger = match self.ucs2_trigger {
            None => Value::Null,
            Some((byte, c)) => json!({
                "char": c.to_string(),
                "codepoint": codepoint(c),
                "char_index": self.ucs2_trigger_char,
                "byte_offset": byte,
            }),
        };
        json!({
            "encoding": self.encoding.as_str(),
            "segments": self.segments,
            "units": self.units,
            "chars": self.chars,
            "limit_single": single,
            "limit_per_part": per_part,
            "parts": parts,
            "ucs2_trigger": trigger,
        })
    }

    /// Human summary for the CLI (`text` must be the string this count was made from).
    /// Char positions are 1-based, as a person counts them.
    pub fn render_text(&self, text: &str) -> String {
        let (single, per_part) = limits(self.encoding);
        let mut out = String::new();
        let _ = writeln!(out, "encoding: {}", self.encoding);
        if let Some((byte, c)) = self.ucs2_trigger {
            // Position counted in `text` (the string the user typed); the stored index is
            // the fallback if `text` is not the counted string.
            let ci = text
                .get(..byte)
                .map_or(self.ucs2_trigger_char.unwrap_or(0), |s| s.chars().count());
            let _ = writeln!(
                out,
                "UCS-2 because of '{}' ({}) at char {}",
                c.escape_debug(),
                codepoint(c),
                ci + 1
            );
        }
        let _ = writeln!(
            out,
            "units:    {} (limit {} for one segment, {} per part)",
            self.units, single, per_part
        );
        if self.segments == 0 {
            let _ = writeln!(out, "segments: 0 (empty text)");
        } else {
            let _ = writeln!(out, "segments: {}", self.segments);
        }
        for p in &self.parts {
            let label = format!("part {}:", p.index);
            let _ = writeln!(
                out,
                "{label:<10}units {}, chars {}-{}  \"{}\"",
                p.units,
                p.char_start + 1,
                p.char_end,
                preview(&p.text)
            );
        }
        out
    }
}

/// `U+2019` style code point label.
fn codepoint(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// First few chars of a part, escaped so newlines stay on one line.
fn preview(s: &str) -> String {
    const MAX: usize = 24;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part_units(c: &SmsCount) -> Vec<usize> {
        c.parts.iter().map(|p| p.units).collect()
    }

    #[test]
    fn empty_text_is_zero_segments() {
        let c = count("");
        assert_eq!(c.encoding, Encoding::Gsm7);
        assert_eq!((c.units, c.segments, c.chars), (0, 0, 0));
        assert!(c.parts.is_empty());
        assert_eq!(segments_for(0, Encoding::Gsm7), 0);
    }

    #[test]
    fn exactly_160_is_one_segment() {
        let t = "a".repeat(160);
        let c = count(&t);
        assert_eq!((c.encoding, c.units, c.segments), (Encoding::Gsm7, 160, 1));
        assert_eq!(c.parts[0].char_end, 160);
        assert_eq!(c.parts[0].end, 160);
    }

    #[test]
    fn gsm_161_is_two_parts_of_153_and_8() {
        let c = count(&"a".repeat(161));
        assert_eq!((c.units, c.segments), (161, 2));
        assert_eq!(part_units(&c), vec![153, 8]);
        assert_eq!(c.parts[1].char_start, 153);
        assert_eq!(c.parts[1].index, 2);
    }

    #[test]
    fn extension_char_is_two_septets() {
        for c in ['^', '{', '}', '\\', '[', ']', '~', '|', '€', '\u{000C}'] {
            assert_eq!(gsm7_units(c), Some(2), "{c:?}");
        }
        assert_eq!(gsm7_units('`'), None);
        assert_eq!(gsm7_units('ç'), None);
        assert_eq!(gsm7_units('Ç'), Some(1));
        // 1 + 158 + '|' at the end: 161 septets, so 2 segments although 160 chars.
        let t = format!("{}|", "a".repeat(158));
        let c = count(&t);
        assert_eq!((c.encoding, c.units, c.segments), (Encoding::Gsm7, 160, 1));
        let c = count(&format!("{}|", "a".repeat(159)));
        assert_eq!((c.units, c.segments), (161, 2));
    }

    #[test]
    fn extension_char_at_part_boundary_is_not_split() {
        // 152 'a' then '{' (septets 153-154) would straddle the 153 boundary.
        let t = format!("{}{{{}", "a".repeat(152), "b".repeat(10));
        let c = count(&t);
        assert_eq!(c.units, 164);
        assert_eq!(part_units(&c), vec![152, 12]);
        assert_eq!(c.parts[0].char_end, 152);
        assert_eq!(&t[c.parts[1].start..c.parts[1].start + 1], "{");
        // Lost unit makes 306 septets need 3 parts, not 2.
        let t = format!("{}{{{}", "a".repeat(152), "b".repeat(152));
        let c = count(&t);
        assert_eq!(c.units, 306);
        assert_eq!(segments_for(306, Encoding::Gsm7), 2);
        assert_eq!(c.segments, 3);
        assert!(c.segments <= max_segments_for(c.units, c.encoding));
    }

    #[test]
    fn euro_sign() {
        let c = count("€");
        assert_eq!((c.encoding, c.units, c.segments), (Encoding::Gsm7, 2, 1));
        let c = count(&"€".repeat(80));
        assert_eq!((c.units, c.segments), (160, 1));
        // 81 € = 162 septets: 76 € (152 septets) fit in part 1, the 77th would straddle.
        let c = count(&"€".repeat(81));
        assert_eq!(part_units(&c), vec![152, 10]);
        assert_eq!(c.parts[0].char_end, 76);
        assert_eq!(c.parts[0].end, 76 * '€'.len_utf8());
    }

    #[test]
    fn one_curly_quote_forces_ucs2() {
        let t = "Hi Ada, your order’s on its way";
        let c = count(t);
        assert_eq!(c.encoding, Encoding::Ucs2);
        assert_eq!(c.units, t.chars().count());
        assert_eq!(c.ucs2_trigger, Some((t.find('’').unwrap(), '’')));
        let r = c.render_text(t);
        assert!(
            r.contains("UCS-2 because of '’' (U+2019) at char 19"),
            "{r}"
        );
        let j = c.to_json();
        assert_eq!(j["ucs2_trigger"]["char_index"], 18);
        assert_eq!(j["encoding"], "UCS-2");
    }

    #[test]
    fn extension_chars_are_one_unit_in_ucs2() {
        let c = count("’[]{}€");
        assert_eq!((c.encoding, c.units), (Encoding::Ucs2, 6));
    }

    #[test]
    fn ucs2_70_and_71() {
        assert_eq!(count(&"ú".repeat(70)).segments, 1);
        let c = count(&"ú".repeat(71));
        assert_eq!(part_units(&c), vec![67, 4]);
    }

    #[test]
    fn emoji_surrogate_pair_at_67_boundary_is_not_split() {
        // 66 BMP chars, then an emoji whose pair would be units 67-68.
        let t = format!("{}😀{}", "ú".repeat(66), "x".repeat(5));
        let c = count(&t);
        assert_eq!(c.encoding, Encoding::Ucs2);
        assert_eq!(c.units, 73);
        assert_eq!(part_units(&c), vec![66, 7]);
        assert_eq!(c.parts[1].char_start, 66);
        assert_eq!(c.parts[1].text, format!("😀{}", "x".repeat(5)));
        // 65 BMP + emoji ends exactly at 67: fits.
        let t = format!("{}😀{}", "ú".repeat(65), "x".repeat(5));
        assert_eq!(part_units(&count(&t)), vec![67, 5]);
    }

    #[test]
    fn segments_for_rule() {
        use Encoding::*;
        assert_eq!(segments_for(1, Gsm7), 1);
        assert_eq!(segments_for(160, Gsm7), 1);
        assert_eq!(segments_for(161, Gsm7), 2);
        assert_eq!(segments_for(306, Gsm7), 2);
        assert_eq!(segments_for(307, Gsm7), 3);
        assert_eq!(segments_for(70, Ucs2), 1);
        assert_eq!(segments_for(71, Ucs2), 2);
        assert_eq!(segments_for(134, Ucs2), 2);
        assert_eq!(segments_for(135, Ucs2), 3);
        assert_eq!(max_segments_for(306, Gsm7), 3);
        assert_eq!(max_segments_for(160, Gsm7), 1);
        assert_eq!(limits(Gsm7), (160, 153));
        assert_eq!(limits(Ucs2), (70, 67));
    }

    #[test]
    fn parts_cover_the_text() {
        let t = format!("{}~{}😀{}", "a".repeat(200), "€".repeat(90), "b".repeat(30));
        for t in [t.as_str(), "x", "a\r\nb"] {
            let c = count(t);
            let joined: String = c.parts.iter().map(|p| &t[p.start..p.end]).collect();
            assert_eq!(joined, t);
            assert!(c.parts.iter().all(|p| p.text == t[p.start..p.end]));
            assert_eq!(c.parts.iter().map(|p| p.units).sum::<usize>(), c.units);
            assert_eq!(c.segments, c.parts.len());
        }
    }

    #[test]
    fn render_text_summary() {
        let t = format!("Hi Ada! {}", "a".repeat(164));
        let c = count(&t);
        let r = c.render_text(&t);
        assert!(r.starts_with("encoding: GSM-7\n"), "{r}");
        assert!(r.contains("units:    172 (limit 160 for one segment, 153 per part)"));
        assert!(r.contains("segments: 2\n"));
        assert!(
            r.contains("part 1:   units 153, chars 1-153  \"Hi Ada! "),
            "{r}"
        );
        assert!(r.contains("part 2:   units 19, chars 154-172"), "{r}");
        let j = c.to_json();
        assert_eq!(j["parts"][1]["text"], "a".repeat(19));
        assert_eq!(j["ucs2_trigger"], Value::Null);
        assert_eq!(c.to_json()["segments"], 2);
    }
}
