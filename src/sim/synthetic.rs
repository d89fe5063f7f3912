//! Synthetic event streams for benchmarks and load tests: many people, each with a realistic
//! week (consent, an order, fulfillment, delivery, a quiz reply, for some a repeat order),
//! spread over 60 days. Deterministic: the same `people` gives the same text.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T14:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A day of one person's life as normalised events: consent, an order (skincare and refill
/// items for some), its fulfillment and delivery, a quiz answer, and for a third a repeat order.
/// Event ids are unique across the stream (`o{i}.repeat`: `o2{i}` would collide with `o{2i}`).
pub fn events(people: usize) -> String {
    let mut lines = Vec::with_capacity(people * 6);
    let start = t0();
    let area = ["212", "203", "305", "512", "415", "205", "617", "312"];
    let state = ["NY", "CT", "FL", "TX", "CA", "AL", "MA", "IL"];
    for i in 0..people {
        let a = i % area.len();
        let phone = format!("+1{}55{:05}", area[a], i % 100_000);
        let cid = format!("{}", 1_000_000 + i);
        let oid = format!("{}", 50_000_000 + i);
        // Spread arrivals over the first 60 days, at different hours.
        let t = start + Duration::minutes((i as i64 * 37) % (60 * 24 * 60));
        let sku = match i % 3 {
            0 => "SKIN-SERUM",
            1 => "REFILL-30",
            _ => "TEE-001",
        };
        let order = json!({"order_id": oid, "order_number": format!("#{}", i), "customer_id": cid, "phone": phone,
            "first_name": "Ada", "total_price": "42.50", "currency": "USD", "created_at": t.to_rfc3339(),
            "line_items": [{"sku": sku, "title": "Item", "quantity": 1, "price": "42.50", "product_id": "9001"}],
            "shipping_address": {"province_code": state[a], "country_code": "US", "phone": phone}});
        let ts = |d: Duration| (t + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        lines.push(json!({"type": "consent.updated", "at": ts(Duration::zero()), "id": format!("c{i}"),
            "data": {"customer_id": cid, "phone": phone, "sms_marketing_consent": {"state": "subscribed"}}}));
        lines.push(json!({"type": "order.created", "at": ts(Duration::minutes(1)), "id": format!("o{i}"), "data": order}));
        lines.push(json!({"type": "order.fulfilled", "at": ts(Duration::days(1)), "id": format!("f{i}"), "data": order}));
        lines.push(json!({"type": "shipment.delivered", "at": ts(Duration::days(3)), "id": format!("d{i}"),
            "data": {"order_id": oid, "customer_id": cid, "phone": phone, "status": "delivered", "fulfillment_id": oid, "fulfillment_event_id": oid}}));
        lines.push(
            json!({"type": "sms.replied", "at": ts(Duration::days(6)), "id": format!("r{i}"),
            "data": {"from": phone, "body": "1"}}),
        );
        if i % 3 == 2 {
            let mut o2 = order.clone();
            o2["order_id"] = json!(format!("{}", 90_000_000 + i));
            lines.push(json!({"type": "order.created", "at": ts(Duration::days(20)), "id": format!("o{i}.repeat"), "data": o2}));
        }
    }
    let mut v: Vec<(String, String)> = lines
        .into_iter()
        .map(|l| (l["at"].as_str().unwrap().to_string(), l.to_string()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, l)| l + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_unique() {
        let text = events(300);
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = v["id"].as_str().unwrap().to_string();
            assert!(seen.insert(id.clone()), "id {id} repeats");
        }
        assert_eq!(seen.len(), 300 * 5 + 100);
    }
}
