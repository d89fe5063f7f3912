//! Compliance rules as pure data and arithmetic: quiet hours (federal and by state), the
//! recipient's state and zone from a phone number, and frequency caps. No I/O, no clock:
//! every function takes the instant it reasons about.
//!
//! The tables live beside this file and are embedded at compile time:
//! `compliance/quiet_hours.toml` (one row per jurisdiction, format documented at its top) and
//! `compliance/area_codes.csv` (NANPA area codes). Shops replace rows with
//! [`QuietHours::with_overrides`]. This module does not decide *which* zone a person is in
//! when sources conflict: the profile's explicit zone wins over [`state_zone`] and
//! [`area_code_zone`], which are fallbacks.

mod area_codes;
mod frequency;
mod quiet_hours;

pub use area_codes::{area_code, area_code_state, area_code_zone, state_zone};
pub use frequency::{FrequencyCap, FLORIDA_FTSA};
pub use quiet_hours::{NoSendDate, QuietHours, Rules, Window};
