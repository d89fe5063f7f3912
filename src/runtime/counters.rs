//! Report counter names: one place that builds and parses them (docs/reports.md).
//!
//! `report.{day}.{flow}.{step}.{variant}.{metric}` where `day` is the UTC day (`YYYY-MM-DD`) of
//! the engine time of what is counted, `step` is the step id (`-` for flow-level figures such as
//! `entered`), `variant` the A/B arm (`-` when none) and `metric` one of [`Metric`]. Revenue is
//! `revenue_e4.{CURRENCY}`: the amount in ten-thousandths of the currency unit (fixed four
//! decimals, an integer: money is never a float). Flow and arm names are identifiers (no dots),
//! so the first five dots split the name. Counters hold no personal data: they survive erasure.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

pub const PREFIX: &str = "report.";

/// What is counted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    Entered,
    Sent,
    Segments,
    Delivered,
    Failed,
    Undelivered,
    Clicks,
    Replies,
    OptOuts,
    Conversions,
    /// Attributed revenue in 1/10 000 of the currency's unit.
    RevenueE4(String),
}

impl Metric {
    pub fn name(&self) -> String {
        match self {
            Metric::Entered => "entered".into(),
            Metric::Sent => "sent".into(),
            Metric::Segments => "segments".into(),
            Metric::Delivered => "delivered".into(),
            Metric::Failed => "failed".into(),
            Metric::Undelivered => "undelivered".into(),
            Metric::Clicks => "clicks".into(),
            Metric::Replies => "replies".into(),
            Metric::OptOuts => "opt_outs".into(),
            Metric::Conversions => "conversions".into(),
            Metric::RevenueE4(c) => format!("revenue_e4.{c}"),
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "entered" => Metric::Entered,
            "sent" => Metric::Sent,
            "segments" => Metric::Segments,
            "delivered" => Metric::Delivered,
            "failed" => Metric::Failed,
            "undelivered" => Metric::Undelivered,
            "clicks" => Metric::Clicks,
            "replies" => Metric::Replies,
            "opt_outs" => Metric::OptOuts,
            "conversions" => Metric::Conversions,
            _ => Metric::RevenueE4(s.strip_prefix("revenue_e4.")?.to_string()),
        })
    }
}

/// One report counter's coordinates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub day: NaiveDate,
    pub flow: String,
    /// `None`: the flow as a whole.
    pub step: Option<u32>,
    pub variant: Option<String>,
    pub metric: Metric,
}

impl Key {
    pub fn new(
        at: DateTime<Utc>,
        flow: &str,
        step: Option<u32>,
        variant: Option<&str>,
        metric: Metric,
    ) -> Key {
        Key {
            day: at.date_naive(),
            flow: flow.to_string(),
            step,
            variant: variant.map(String::from),
            metric,
        }
    }

    pub fn name(&self) -> String {
        format!(
            "{PREFIX}{}.{}.{}.{}.{}",
            self.day.format("%Y-%m-%d"),
            self.flow,
            self.step.map_or("-".to_string(), |s| s.to_string()),
            self.variant.as_deref().unwrap_or("-"),
            self.metric.name()
        )
    }

    /// The key of a counter name; `None` for other counters (and names this code did not make).
    pub fn parse(name: &str) -> Option<Key> {
        let rest = name.strip_prefix(PREFIX)?;
        let mut parts = rest.splitn(5, '.');
        let day = NaiveDate::parse_from_str(parts.next()?, "%Y-%m-%d").ok()?;
        let flow = parts.next()?.to_string();
        let step = match parts.next()? {
            "-" => None,
            s => Some(s.parse().ok()?),
        };
        let variant = match parts.next()? {
            "-" => None,
            v => Some(v.to_string()),
        };
        let metric = Metric::parse(parts.next()?)?;
        Some(Key {
            day,
            flow,
            step,
            variant,
            metric,
        })
    }
}

/// A decimal amount as ten-thousandths (rounded half away from zero); `None` when it does not
/// fit or does not parse.
pub fn to_e4(amount: &str) -> Option<i64> {
    let d: Decimal = amount.trim().parse().ok()?;
    let scaled = (d * Decimal::from(10_000))
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(scaled).ok()
}

/// Ten-thousandths back to a decimal.
pub fn from_e4(v: i64) -> Decimal {
    Decimal::new(v, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let at = DateTime::parse_from_rfc3339("2026-03-02T23:59:59-05:00")
            .unwrap()
            .with_timezone(&Utc);
        for k in [
            Key::new(
                at,
                "review_request",
                Some(3),
                Some("discount"),
                Metric::Sent,
            ),
            Key::new(at, "welcome", None, None, Metric::Entered),
            Key::new(at, "w", Some(0), None, Metric::RevenueE4("USD".into())),
        ] {
            assert_eq!(Key::parse(&k.name()), Some(k.clone()), "{}", k.name());
        }
        // The UTC day, not the local one.
        assert_eq!(
            Key::new(at, "f", None, None, Metric::Sent).name(),
            "report.2026-03-03.f.-.-.sent"
        );
        assert_eq!(Key::parse("sends.review_request"), None);
        assert_eq!(Key::parse("report.2026-13-01.f.-.-.sent"), None);
    }

    #[test]
    fn money_is_fixed_point() {
        assert_eq!(to_e4("29.99"), Some(299_900));
        assert_eq!(to_e4("0.00005"), Some(1));
        assert_eq!(to_e4("x"), None);
        assert_eq!(from_e4(299_900).to_string(), "29.9900");
    }
}
