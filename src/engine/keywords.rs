//! Inbound keywords. CTIA Messaging Principles and Best Practices (2023): opt-out, opt-in and
//! help keywords match as the whole message after trimming and case folding, never as a
//! substring ("stopwatch" is not STOP). The FCC's revocation rule (47 CFR 64.1200(a)(10),
//! in force since 2025-04-11) adds "opt out" and treats any of these words as revocation.

/// What an inbound message means before any flow sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

/// Trim, case fold and collapse inner whitespace: the form reply arms are matched in.
pub fn normalize(body: &str) -> String {
    body.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The keyword a whole message is, if any. `yes` is an opt-in only when `yes_is_keyword`
/// (the person is not subscribed); a subscribed person's "yes" is an ordinary reply.
pub fn classify(body: &str, yes_is_keyword: bool) -> Option<Keyword> {
    match normalize(body).as_str() {
        "stop" | "stopall" | "unsubscribe" | "cancel" | "end" | "quit" | "revoke" | "optout"
        | "opt out" => Some(Keyword::OptOut),
        "start" | "unstop" => Some(Keyword::OptIn),
        "yes" if yes_is_keyword => Some(Keyword::OptIn),
        "help" | "info" => Some(Keyword::Help),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_word_only() {
        assert_eq!(classify("  Stop ", false), Some(Keyword::OptOut));
        assert_eq!(classify("OPT   OUT", false), Some(Keyword::OptOut));
        assert_eq!(classify("stopwatch", false), None);
        assert_eq!(classify("please stop", false), None);
        assert_eq!(classify("yes", false), None);
        assert_eq!(classify("YES", true), Some(Keyword::OptIn));
        assert_eq!(classify("Info", false), Some(Keyword::Help));
    }
}
