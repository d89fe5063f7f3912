//! The cross-flow budget: the worst-case number of marketing messages one person can receive
//! in any 24 h across all flows, warned when above the project's frequency cap (Florida's
//! 3 per 24 h, Fla. Stat. 501.616(6)(b), is the default cap). The runtime enforces the cap
//! anyway; this tells the author, before deploying, which messages the cap will hold back.

use super::flows::{human_secs, FlowSummary};
use crate::diagnostic::Diagnostic;
use crate::project::Project;

pub fn check(flows: &[FlowSummary], project: &Project, diags: &mut Vec<Diagnostic>) {
    let cap = project.policy.frequency_cap;
    let mut marketing: Vec<&FlowSummary> = flows
        .iter()
        .filter(|f| f.marketing && f.max_per_24h > 0)
        .collect();
    marketing.sort_by(|a, b| a.name.cmp(&b.name));
    let total: usize = marketing.iter().map(|f| f.max_per_24h).sum();
    if total <= cap.max as usize {
        return;
    }
    // Point at the flow whose messages take the running total over the cap.
    let mut running = 0;
    let mut tipping = marketing[0];
    for f in &marketing {
        running += f.max_per_24h;
        if running > cap.max as usize {
            tipping = f;
            break;
        }
    }
    let mut d = Diagnostic::new(
        "AC0405",
        format!(
            "one person can receive up to {total} marketing messages in 24 h across all flows, above the cap of {} per {}",
            cap.max,
            human_secs(cap.per_secs)
        ),
    )
    .primary(
        project.frequency_cap_span.unwrap_or(tipping.span),
        format!("the cap is {} per {}", cap.max, human_secs(cap.per_secs)),
    );
    if project.frequency_cap_span.is_some() {
        d = d.secondary(
            tipping.span,
            format!("`{}` takes the total over {}", tipping.name, cap.max),
        );
    }
    let parts: Vec<String> = marketing
        .iter()
        .map(|f| format!("{} {}", f.name, f.max_per_24h))
        .collect();
    d = d
        .note(format!("worst case per flow: {}", parts.join(", ")))
        .help("the runtime holds messages above the cap (deferred or dropped as each flow says); space the flows out or narrow their triggers");
    diags.push(d);
}
