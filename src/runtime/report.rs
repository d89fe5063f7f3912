//! `aftercart report`: per flow, step and A/B arm, what the report counters say (entered, sent,
//! segments, estimated cost, delivered, failed, clicks, replies, opt-outs, conversions and
//! attributed revenue per currency), and per split which arm leads on conversion rate and
//! whether the lead is statistically significant yet. Reads only counters (no personal data),
//! so erasure does not change it. Renders as text, JSON or CSV; `cli` prints. docs/reports.md.

use super::counters::{self, Key, Metric};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// The report's options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only counters of this UTC day and later (counters are bucketed by day).
    pub since: Option<NaiveDate>,
    /// USD per SMS segment for the cost estimate.
    pub price_per_segment: Decimal,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            since: None,
            price_per_segment: default_price(),
        }
    }
}

/// Twilio's US list price per outbound segment (`twilio::US_PRICE_PER_SEGMENT`).
pub fn default_price() -> Decimal {
    super::twilio::US_PRICE_PER_SEGMENT
        .parse()
        .expect("a decimal literal")
}

/// One line of the report: a flow as a whole (`step` `None`) or one send step and arm.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    pub flow: String,
    pub step: Option<u32>,
    pub variant: Option<String>,
    pub entered: u64,
    pub sent: u64,
    pub segments: u64,
    /// `segments x price_per_segment`, USD.
    pub cost_usd: Decimal,
    pub delivered: u64,
    /// Failed at the provider or reported failed / undelivered by the carrier.
    pub failed: u64,
    pub clicks: u64,
    pub replies: u64,
    pub opt_outs: u64,
    pub conversions: u64,
    /// Currency -> attributed revenue (four decimals).
    pub revenue: BTreeMap<String, Decimal>,
}

impl Row {
    /// Conversions per sent message, as a percentage with one decimal ("-" when none sent).
    pub fn conversion_rate(&self) -> String {
        rate(self.conversions, self.sent)
    }
}

fn rate(k: u64, n: u64) -> String {
    if n == 0 {
        return "-".into();
    }
    let pct = Decimal::from(k) * Decimal::from(100) / Decimal::from(n);
    format!("{}%", pct.round_dp(1))
}

/// One arm of a split, summed over the flow's steps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arm {
    pub variant: String,
    pub sent: u64,
    pub conversions: u64,
    pub conversion_rate: String,
}

/// The A/B comparison of one flow's arms.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Split {
    pub flow: String,
    pub arms: Vec<Arm>,
    /// The arm with the highest conversion rate (`None` while nothing was sent or rates tie).
    pub leader: Option<String>,
    /// Two-proportion z statistic of the leader against the runner-up.
    pub z: Option<f64>,
    pub significant: bool,
    /// A plain sentence: who leads and whether it is significant yet.
    pub verdict: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub since: Option<NaiveDate>,
    pub price_per_segment: Decimal,
    pub rows: Vec<Row>,
    pub splits: Vec<Split>,
}

/// Build the report from the store's counters (other counters are ignored).
pub fn build(all: &BTreeMap<String, u64>, opts: &Options) -> Report {
    let mut rows: BTreeMap<(String, Option<u32>, Option<String>), Row> = BTreeMap::new();
    for (name, &n) in all {
        let Some(k) = Key::parse(name) else { continue };
        if opts.since.is_some_and(|s| k.day < s) {
            continue;
        }
        let Key {
            flow,
            step,
            variant,
            metric,
            ..
        } = k;
        let row = rows
            .entry((flow.clone(), step, variant.clone()))
            .or_insert_with(|| Row {
                flow,
                step,
                variant,
                ..Row::default()
            });
        match metric {
            Metric::Entered => row.entered += n,
            Metric::Sent => row.sent += n,
            Metric::Segments => row.segments += n,
            Metric::Delivered => row.delivered += n,
            Metric::Failed | Metric::Undelivered => row.failed += n,
            Metric::Clicks => row.clicks += n,
            Metric::Replies => row.replies += n,
            Metric::OptOuts => row.opt_outs += n,
            Metric::Conversions => row.conversions += n,
            Metric::RevenueE4(cur) => {
                *row.revenue.entry(cur).or_default() +=
                    counters::from_e4(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    for r in &mut rows {
        r.cost_usd = Decimal::from(r.segments) * opts.price_per_segment;
    }
    let splits = splits(&rows);
    Report {
        since: opts.since,
        price_per_segment: opts.price_per_segment,
        rows,
        splits,
    }
}

/// Per flow with arms: leader on conversions / sent, and a two-proportion z-test (95%,
/// |z| >= 1.96) of the leader against the runner-up. The normal approximation needs about five
/// successes and five failures per arm (pooled rate x n >= 5 both ways); below that the honest
/// answer is "not yet significant (n too small)".
fn splits(rows: &[Row]) -> Vec<Split> {
    let mut by_flow: BTreeMap<&str, BTreeMap<&str, (u64, u64)>> = BTreeMap::new();
    for r in rows {
        if let (Some(v), Some(_)) = (&r.variant, r.step) {
            let e = by_flow
                .entry(&r.flow)
                .or_default()
                .entry(v.as_str())
                .or_default();
            e.0 += r.sent;
            e.1 += r.conversions;
        }
    }
    let mut out = Vec::new();
    for (flow, arms) in by_flow {
        let arms: Vec<Arm> = arms
            .into_iter()
            .map(|(v, (sent, conversions))| Arm {
                variant: v.to_string(),
                sent,
                conversions,
                conversion_rate: rate(conversions, sent),
            })
            .collect();
        let p = |a: &Arm| {
            if a.sent == 0 {
                0.0
            } else {
                a.conversions as f64 / a.sent as f64
            }
        };
        let mut ranked: Vec<&Arm> = arms.iter().filter(|a| a.sent > 0).collect();
        ranked.sort_by(|a, b| p(b).total_cmp(&p(a)).then(a.variant.cmp(&b.variant)));
        let (leader, z, significant, verdict) = match ranked.as_slice() {
            [] => (None, None, false, "nothing sent yet".to_string()),
            [only] => (
                None,
                None,
                false,
                format!("only `{}` has sends so far", only.variant),
            ),
            [a, b, ..] => {
                let (n1, n2) = (a.sent as f64, b.sent as f64);
                let pooled = (a.conversions + b.conversions) as f64 / (n1 + n2);
                let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
                let z = if se > 0.0 {
                    Some((p(a) - p(b)) / se)
                } else {
                    None
                };
                let enough = [n1, n2]
                    .iter()
                    .all(|n| pooled * n >= 5.0 && (1.0 - pooled) * n >= 5.0);
                let tie = p(a) == p(b);
                let leader = (!tie).then(|| a.variant.clone());
                let head = if tie {
                    format!(
                        "`{}` and `{}` tie at {}",
                        a.variant, b.variant, a.conversion_rate
                    )
                } else {
                    format!(
                        "`{}` leads ({} of {} = {} vs `{}` {} of {} = {})",
                        a.variant,
                        a.conversions,
                        a.sent,
                        a.conversion_rate,
                        b.variant,
                        b.conversions,
                        b.sent,
                        b.conversion_rate
                    )
                };
                let significant = enough && !tie && z.is_some_and(|z| z.abs() >= 1.96);
                let tail = match z {
                    _ if !enough => "not yet significant (n too small)".to_string(),
                    Some(z) if significant => format!("significant at 95% (z = {z:.2})"),
                    Some(z) => format!("not significant at 95% yet (z = {z:.2})"),
                    None => "not yet significant (no variation)".to_string(),
                };
                (leader, z, significant, format!("{head}; {tail}"))
            }
        };
        out.push(Split {
            flow: flow.to_string(),
            arms,
            leader,
            z,
            significant,
            verdict,
        });
    }
    out
}

fn revenue_text(r: &BTreeMap<String, Decimal>) -> String {
    if r.is_empty() {
        return "-".into();
    }
    r.iter()
        .map(|(c, v)| format!("{} {c}", v.round_dp(2)))
        .collect::<Vec<_>>()
        .join(", ")
}

const COLUMNS: [&str; 15] = [
    "flow",
    "step",
    "variant",
    "entered",
    "sent",
    "segments",
    "cost_usd",
    "delivered",
    "failed",
    "clicks",
    "replies",
    "opt_outs",
    "conversions",
    "conv_rate",
    "revenue",
];

fn cells(r: &Row) -> Vec<String> {
    vec![
        r.flow.clone(),
        r.step.map_or("*".into(), |s| s.to_string()),
        r.variant.clone().unwrap_or_else(|| "-".into()),
        r.entered.to_string(),
        r.sent.to_string(),
        r.segments.to_string(),
        r.cost_usd.round_dp(4).to_string(),
        r.delivered.to_string(),
        r.failed.to_string(),
        r.clicks.to_string(),
        r.replies.to_string(),
        r.opt_outs.to_string(),
        r.conversions.to_string(),
        r.conversion_rate(),
        revenue_text(&r.revenue),
    ]
}

/// Aligned text: the table, then one line per split.
pub fn render_table(rep: &Report) -> String {
    let mut table: Vec<Vec<String>> = vec![COLUMNS.iter().map(|c| c.to_string()).collect()];
    table.extend(rep.rows.iter().map(cells));
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    out += &format!(
        "report{} (cost at {} USD per segment; step `*` = the flow as a whole)\n",
        rep.since.map(|d| format!(" since {d}")).unwrap_or_default(),
        rep.price_per_segment
    );
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Names left, numbers right.
                if i < 3 || i == COLUMNS.len() - 1 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    if rep.rows.is_empty() {
        out += "(no report counters yet: run the flows first)\n";
    }
    if !rep.splits.is_empty() {
        out += "\nA/B splits (conversion rate = conversions / sent):\n";
        for s in &rep.splits {
            out += &format!("  {}: {}\n", s.flow, s.verdict);
        }
    }
    out
}

pub fn render_json(rep: &Report) -> String {
    let rows: Vec<serde_json::Value> = rep
        .rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).expect("rows serialise");
            v["conversion_rate"] = serde_json::Value::String(r.conversion_rate());
            v
        })
        .collect();
    let v = serde_json::json!({
        "since": rep.since,
        "price_per_segment_usd": rep.price_per_segment,
        "rows": rows,
        "splits": rep.splits,
    });
    format!("{v:#}\n")
}

fn csv_field(s: &str) -> String {
    // RFC 4180: quote fields with a comma, quote or line break; double inner quotes.
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per line; revenue gets one column per currency (`revenue_USD`, ...).
pub fn render_csv(rep: &Report) -> String {
    let currencies: std::collections::BTreeSet<&String> =
        rep.rows.iter().flat_map(|r| r.revenue.keys()).collect();
    let mut head: Vec<String> = COLUMNS[..COLUMNS.len() - 1]
        .iter()
        .map(|c| c.to_string())
        .collect();
    head.extend(currencies.iter().map(|c| format!("revenue_{c}")));
    let mut out = head.join(",") + "\n";
    for r in &rep.rows {
        let mut c = cells(r);
        c.pop();
        if c[1] == "*" {
            c[1] = String::new();
        }
        if c[2] == "-" {
            c[2] = String::new();
        }
        if c[13] == "-" {
            c[13] = String::new();
        }
        c.extend(currencies.iter().map(|cur| {
            r.revenue
                .get(*cur)
                .map(|v| v.round_dp(4).to_string())
                .unwrap_or_default()
        }));
        let line: Vec<String> = c.iter().map(|f| csv_field(f)).collect();
        out += &line.join(",");
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn z_test_says_when_n_is_too_small_and_when_a_lead_is_real() {
        let small = build(
            &counters(&[
                ("report.2026-03-01.w.2.a.sent", 10),
                ("report.2026-03-01.w.2.a.conversions", 3),
                ("report.2026-03-01.w.3.b.sent", 10),
                ("report.2026-03-01.w.3.b.conversions", 1),
            ]),
            &Options::default(),
        );
        let s = &small.splits[0];
        assert_eq!(s.leader.as_deref(), Some("a"));
        assert!(!s.significant);
        assert!(
            s.verdict.ends_with("not yet significant (n too small)"),
            "{}",
            s.verdict
        );
        // 200/1000 vs 150/1000: z = 2.94 (pooled p = 0.175).
        let big = build(
            &counters(&[
                ("report.2026-03-01.w.2.a.sent", 1000),
                ("report.2026-03-01.w.2.a.conversions", 150),
                ("report.2026-03-01.w.3.b.sent", 1000),
                ("report.2026-03-01.w.3.b.conversions", 200),
            ]),
            &Options::default(),
        );
        let s = &big.splits[0];
        assert_eq!(s.leader.as_deref(), Some("b"));
        assert!(s.significant, "{}", s.verdict);
        assert!((s.z.unwrap() - 2.94).abs() < 0.01, "{:?}", s.z);
        // 105/1000 vs 100/1000: not significant, and says so.
        let close = build(
            &counters(&[
                ("report.2026-03-01.w.2.a.sent", 1000),
                ("report.2026-03-01.w.2.a.conversions", 105),
                ("report.2026-03-01.w.3.b.sent", 1000),
                ("report.2026-03-01.w.3.b.conversions", 100),
            ]),
            &Options::default(),
        );
        assert!(!close.splits[0].significant);
        assert!(close.splits[0]
            .verdict
            .contains("not significant at 95% yet"));
    }

    #[test]
    fn since_drops_earlier_days_and_cost_is_decimal() {
        let c = counters(&[
            ("report.2026-03-01.w.2.-.segments", 3),
            ("report.2026-03-02.w.2.-.segments", 4),
            ("report.2026-03-02.w.2.-.revenue_e4.USD", 299_900),
            ("sends.w", 9),
        ]);
        let all = build(&c, &Options::default());
        assert_eq!(all.rows.len(), 1);
        assert_eq!(all.rows[0].segments, 7);
        assert_eq!(all.rows[0].cost_usd.to_string(), "0.0581");
        let later = build(
            &c,
            &Options {
                since: NaiveDate::from_ymd_opt(2026, 3, 2),
                ..Options::default()
            },
        );
        assert_eq!(later.rows[0].segments, 4);
        assert_eq!(later.rows[0].revenue["USD"].to_string(), "29.9900");
    }
}
