//! The generated corpus of the `check` benchmark (`benches/check.rs`), in the library so that
//! tests can run the same input (`tests/parse_diff.rs` compares both parsers on it).

/// A realistic flow of about 25 lines, renamed per copy so names stay unique.
pub fn flow(i: usize) -> String {
    format!(
        r#"# generated flow {i}
flow review_{i} {{
  description "Delivered: ask for a review, variant {i}"
  kind marketing
  trigger shipment.delivered
  entry once per event.order_id
  exit when order.created where event.customer_id == flow.entry.customer_id
  goal order.created within 5d
  when held defer

  wait 2d
  wait until 10:00 local on weekdays
  if profile.orders_count == 1 and now - profile.first_order_at < 30d {{
    send sms "Hi {{{{ profile.first_name | default('there') }}}}! Review us: {{{{ link(shop.review_url) }}}} Reply STOP to opt out."
  }} else if any(item in flow.entry.line_items: item.sku starts_with "REFILL-") {{
    send sms "Time for a refill? {{{{ link(shop.url + '/reorder') }}}} Reply STOP to opt out."
  }} else {{
    send sms "Thanks for shopping with {{{{ shop.name }}}}! Reply STOP to opt out."
  }}
  wait reply within 2d {{
    "1" | "yes please" => send sms "Great, thank you!"
    other              => exit
    timeout            => exit
  }}
}}
"#
    )
}

/// Files of 40 such flows, `(name, text)`, until they hold at least `lines` lines.
pub fn corpus(lines: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while total < lines {
        let mut text = String::new();
        // 40 flows per file, like a large shop's repository.
        for _ in 0..40 {
            text.push_str(&flow(i));
            text.push('\n');
            i += 1;
        }
        total += text.lines().count();
        files.push((format!("gen/file_{}.flow", files.len()), text));
    }
    files
}
