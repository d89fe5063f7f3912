//! Tests of the typed event schemas (Shopify 2026-07) and of payload normalisation, driven by
//! the published sample payloads in tests/fixtures/shopify.

use aftercart::ir::Ty;
use aftercart::schema::{FieldError, Schemas};
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shopify")
}

fn raw(name: &str) -> String {
    std::fs::read_to_string(fixtures_dir().join(name)).unwrap()
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&raw(name)).unwrap()
}

/// `orders__create.variant_aud.json` -> `orders/create`; None for files that are no payload.
fn topic_of(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".json")?;
    let base = stem.split('.').next()?;
    base.contains("__").then(|| base.replace("__", "/"))
}

fn s() -> &'static Schemas {
    Schemas::builtin()
}

#[test]
fn builtin_parses_with_every_event() {
    let s = s();
    assert_eq!(s.api_version, "2026-07");
    let mut expected = vec![
        "order.created",
        "order.paid",
        "order.fulfilled",
        "order.cancelled",
        "order.updated",
        "fulfillment.created",
        "fulfillment.updated",
        "checkout.created",
        "checkout.updated",
        "customer.created",
        "customer.updated",
        "consent.updated",
        "sms.replied",
        "message.clicked",
        "message.delivered",
        "message.failed",
        "shipment.updated",
    ];
    let statuses = [
        "label_printed",
        "label_purchased",
        "confirmed",
        "in_transit",
        "out_for_delivery",
        "attempted_delivery",
        "delivered",
        "failure",
        "ready_for_pickup",
        "carrier_picked_up",
        "delayed",
        "picked_up",
    ];
    let shipment: Vec<String> = statuses.iter().map(|st| format!("shipment.{st}")).collect();
    expected.extend(shipment.iter().map(String::as_str));
    expected.sort();
    assert_eq!(s.all_event_names(), expected);

    for st in statuses {
        let e = s.event(&format!("shipment.{st}")).unwrap();
        assert_eq!(e.status.as_deref(), Some(st));
        assert_eq!(e.topic.as_deref(), Some("fulfillment_events/create"));
    }
    assert_eq!(s.event("shipment.updated").unwrap().status, None);
    assert_eq!(
        s.event("order.created").unwrap().topic.as_deref(),
        Some("orders/create")
    );
    assert_eq!(
        s.event("order.created").unwrap().key.as_deref(),
        Some("order_id")
    );
    assert_eq!(s.event("sms.replied").unwrap().topic, None);
    for e in s.events.values() {
        assert!(!e.doc.is_empty(), "{} has no doc", e.name);
        if e.topic.is_some() {
            assert!(e.fields.contains_key("phone"), "{} has no phone", e.name);
        }
    }
    for name in [
        "fulfillment.created",
        "shipment.delivered",
        "shipment.updated",
    ] {
        for f in [
            "tracking_url",
            "tracking_number",
            "tracking_company",
            "order_id",
        ] {
            assert_eq!(s.field_type(name, &[f]), Ok(Ty::Str), "{name}.{f}");
        }
    }
    for f in [
        "checkout_url",
        "sms_marketing_phone",
        "customer_id",
        "phone",
    ] {
        assert_eq!(s.field_type("checkout.created", &[f]), Ok(Ty::Str));
    }
    assert_eq!(
        s.field_type("checkout.created", &["buyer_accepts_sms_marketing"]),
        Ok(Ty::Bool)
    );
    assert_eq!(
        s.field_type("checkout.created", &["total_price"]),
        Ok(Ty::Money)
    );
}

#[test]
fn profile_and_flow_fields() {
    let p = s().profile_fields();
    let ty = |n: &str| p[n].ty.to_string();
    assert_eq!(ty("orders_count"), "int");
    assert_eq!(ty("total_spent"), "money");
    assert_eq!(ty("first_order_at"), "time");
    assert_eq!(ty("last_order_at"), "time");
    assert_eq!(ty("products_bought"), "list<str>");
    assert_eq!(ty("skus_bought"), "list<str>");
    for n in [
        "consent",
        "zone",
        "state",
        "first_name",
        "last_name",
        "phone",
        "email",
    ] {
        assert_eq!(ty(n), "str", "{n}");
    }
    assert_eq!(ty("tags"), "list<str>");
    assert!(p.values().all(|f| f.from.is_empty()));
    let f = s().flow_fields();
    assert_eq!(f["entry_at"].ty, Ty::Time);
    assert_eq!(f["name"].ty, Ty::Str);
    assert_eq!(f["version"].ty, Ty::Str);
    assert_eq!(s().path_type(p, &["orders_count"]), Ok(Ty::Int));
}

#[test]
fn every_fixture_normalises_for_its_topic() {
    // Topics aftercart does not subscribe to: no event, nothing to normalise.
    let ignored = [
        "app/uninstalled",
        "customers_email_marketing_consent/update",
        // Products webhooks feed the catalog (host.rs, catalog.rs), not a person's events.
        "products/create",
        "products/update",
        "products/delete",
    ];
    let mut normalised = 0;
    let mut files: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    for file in files {
        let Some(topic) = topic_of(&file) else {
            continue;
        };
        let payload = fixture(&file);
        let events = s().events_for_topic(&topic, &payload);
        if ignored.contains(&topic.as_str()) {
            assert!(events.is_empty(), "{file}");
            continue;
        }
        assert!(!events.is_empty(), "{file}: no event for topic {topic}");
        for e in events {
            let out = s()
                .normalize(&e.name, &payload)
                .unwrap_or_else(|err| panic!("{file} as {}: {err}", e.name));
            let obj = out.as_object().unwrap();
            assert_eq!(obj.len(), e.fields.len(), "{file}: one value per field");
            if let Some(key) = &e.key {
                assert!(obj[key].is_string(), "{file}: key {key} is {}", obj[key]);
            }
            normalised += 1;
        }
    }
    // 7 order payloads (create and its 4 variants, fulfilled, updated), 2 fulfillments,
    // 2 fulfillment events (2 events each), 2 checkouts, 2 customers, 1 consent.
    assert_eq!(normalised, 7 + 2 + 4 + 2 + 2 + 1);
}

/// The digits after the first `"<key>": ` in the raw JSON text.
fn raw_number_after(text: &str, key: &str) -> String {
    let needle = format!("\"{key}\": ");
    let start = text.find(&needle).unwrap() + needle.len();
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[test]
fn ids_stay_exact() {
    for file in [
        "orders__create.json",
        "orders__create.variant_aud.json",
        "orders__create.variant_hkd_zh_fixed_discount.json",
        "orders__create.variant_pln_pl.json",
    ] {
        let text = raw(file);
        let out = s()
            .normalize("order.created", &serde_json::from_str(&text).unwrap())
            .unwrap();
        assert_eq!(
            out["order_id"],
            Value::String(raw_number_after(&text, "id")),
            "{file}"
        );
    }
    let out = s()
        .normalize("order.created", &fixture("orders__create.json"))
        .unwrap();
    assert_eq!(out["order_id"], "820982911946154508");
    assert_eq!(out["customer_id"], "115310627314723954");
    assert_eq!(out["line_items"][0]["id"], "487817672276298554");
    assert_eq!(out["line_items"][0]["product_id"], "788032119674292922");
    assert_eq!(out["line_items"][1]["product_id"], Value::Null);

    // 18 digits above 2^53 (f64 would round them) and the largest 18-digit id.
    for id in ["9007199254740993", "999999999999999999"] {
        let payload: Value = serde_json::from_str(&format!("{{\"id\": {id}}}")).unwrap();
        assert_eq!(
            s().normalize("order.created", &payload).unwrap()["order_id"],
            id
        );
    }
    // A float id has already lost its digits: refuse it rather than store a wrong id.
    let err = s()
        .normalize("order.created", &json!({"id": 1.5}))
        .unwrap_err();
    assert_eq!(err.field, "order_id");
}

#[test]
fn money_stays_decimal_strings() {
    let out = s()
        .normalize("order.created", &fixture("orders__create.json"))
        .unwrap();
    assert_eq!(out["total_price"], "404.95");
    assert_eq!(out["total_tax"], "0.00");
    assert_eq!(out["total_discounts"], "20.00");
    assert_eq!(out["currency"], "USD");
    assert_eq!(out["line_items"][3]["price"], "159.99");
    assert_eq!(out["line_items"][3]["quantity"], 1);

    let pln = s()
        .normalize(
            "order.created",
            &fixture("orders__create.variant_pln_pl.json"),
        )
        .unwrap();
    assert_eq!(pln["total_price"], "2147.58");
    assert_eq!(pln["currency"], "PLN");

    let hkd = s()
        .normalize(
            "order.created",
            &fixture("orders__create.variant_hkd_zh_fixed_discount.json"),
        )
        .unwrap();
    assert_eq!(
        hkd["discount_codes"],
        json!([{"code": "0124C", "amount": "10.00", "type": "fixed_amount"}])
    );

    // A JSON number is read from its text: 12.5 stays 12.5, never 12.4999...
    let out = s()
        .normalize("order.created", &json!({"id": 1, "total_price": 12.5}))
        .unwrap();
    assert_eq!(out["total_price"], "12.5");
}

#[test]
fn times_tags_and_fallbacks() {
    let out = s()
        .normalize("order.created", &fixture("orders__create.json"))
        .unwrap();
    // 2021-12-31T19:00:00-05:00 in UTC.
    assert_eq!(out["created_at"], "2022-01-01T00:00:00Z");
    assert_eq!(out["closed_at"], Value::Null);
    assert_eq!(out["tags"], json!(["tag1", "tag2"]));
    // Order and customer phones are null in Shopify's sample: the shipping address's is next.
    assert_eq!(out["phone"], "555-555-SHIP");
    assert_eq!(out["order_number"], "#9999");
    assert_eq!(out["first_name"], "John");
    assert_eq!(out["shipping_address"]["province_code"], "KY");
    assert_eq!(out["customer"]["default_address"]["country_code"], "CA");

    let aud = s()
        .normalize("order.created", &fixture("orders__create.variant_aud.json"))
        .unwrap();
    assert_eq!(aud["tags"], json!([]));
    assert_eq!(aud["created_at"], "2020-12-26T21:23:58Z");

    // A guest order: no customer at all.
    let hkd = s()
        .normalize(
            "order.created",
            &fixture("orders__create.variant_hkd_zh_no_discount.json"),
        )
        .unwrap();
    assert_eq!(hkd["customer_id"], Value::Null);

    let pln = s()
        .normalize(
            "order.created",
            &fixture("orders__create.variant_pln_pl.json"),
        )
        .unwrap();
    assert_eq!(pln["phone"], "+15555550191");
    assert_eq!(
        pln["customer"]["sms_marketing_consent"]["state"],
        "not_subscribed"
    );
    assert!(pln["line_items"][0]["title"].as_str().is_some());
}

#[test]
fn fulfillments_checkouts_customers_consent() {
    let f = s()
        .normalize("fulfillment.created", &fixture("fulfillments__create.json"))
        .unwrap();
    assert_eq!(f["order_id"], "820982911946154508");
    assert_eq!(f["tracking_company"], "UPS");
    assert_eq!(f["tracking_number"], "1z827wk74630");
    assert_eq!(
        f["tracking_url"],
        "https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums=1z827wk74630"
    );
    assert_eq!(f["phone"], "555-555-SHIP");
    assert_eq!(f["status"], "pending");

    let c = s()
        .normalize("checkout.created", &fixture("checkouts__create.json"))
        .unwrap();
    assert_eq!(
        c["checkout_url"],
        "https://checkout.local/548380009/checkouts/123123123/recover?key=example-secret-token"
    );
    assert_eq!(c["checkout_token"], "123123123");
    assert_eq!(c["total_price"], "421.88");
    assert_eq!(c["buyer_accepts_sms_marketing"], false);
    assert_eq!(c["sms_marketing_phone"], Value::Null);
    assert_eq!(c["customer_id"], "603851970716743426");
    // Checkout line items have `key`, not `id`.
    assert_eq!(c["line_items"][0]["id"], "139cb5712fb4c8d9957dcfad9a3028da");
    assert_eq!(c["line_items"][0]["price"], "199.00");

    let cu = s()
        .normalize("customer.created", &fixture("customers__create.json"))
        .unwrap();
    assert_eq!(cu["customer_id"], "706405506930370084");
    // Phones are normalised to E.164 (the fixture writes "555-555-5555").
    assert_eq!(cu["phone"], "+15555555555");

    let consent = fixture("customers_marketing_consent__update.json");
    let names: Vec<_> = s()
        .events_for_topic("customers_marketing_consent/update", &consent)
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, ["consent.updated"]);
    let co = s().normalize("consent.updated", &consent).unwrap();
    assert_eq!(co["customer_id"], "706405506930370084");
    assert_eq!(co["sms_marketing_consent"]["state"], Value::Null);
    assert_eq!(
        co["sms_marketing_consent"]["consent_collected_from"],
        "other"
    );
    assert_eq!(
        s().field_type("consent.updated", &["sms_marketing_consent", "state"]),
        Ok(Ty::Str)
    );
}

fn names_for(topic: &str, payload: &Value) -> Vec<String> {
    s().events_for_topic(topic, payload)
        .iter()
        .map(|e| e.name.clone())
        .collect()
}

#[test]
fn fulfillment_events_give_shipment_status_events() {
    let delivered = fixture("fulfillment_events__create.delivered.json");
    assert_eq!(
        names_for("fulfillment_events/create", &delivered),
        ["shipment.delivered", "shipment.updated"]
    );
    let out = s().normalize("shipment.delivered", &delivered).unwrap();
    assert_eq!(out["status"], "delivered");
    assert_eq!(out["order_id"], "820982911946154508");
    assert_eq!(out["fulfillment_id"], "123456");
    // The payload has no tracking: null unless the runtime attached the stored fulfillment.
    assert_eq!(out["tracking_url"], Value::Null);

    let mut enriched = delivered.clone();
    enriched["fulfillment"] = fixture("fulfillments__create.json");
    let out = s().normalize("shipment.delivered", &enriched).unwrap();
    assert_eq!(out["tracking_number"], "1z827wk74630");
    assert_eq!(out["phone"], "555-555-SHIP");

    let in_transit = fixture("fulfillment_events__create.json");
    assert_eq!(
        names_for("fulfillment_events/create", &in_transit),
        ["shipment.in_transit", "shipment.updated"]
    );

    // An open set: a status Shopify adds later still reaches `shipment.updated`, raw status kept.
    let mut unknown = in_transit.clone();
    unknown["status"] = json!("held_at_customs");
    assert_eq!(
        names_for("fulfillment_events/create", &unknown),
        ["shipment.updated"]
    );
    assert_eq!(
        s().normalize("shipment.updated", &unknown).unwrap()["status"],
        "held_at_customs"
    );

    assert_eq!(names_for("orders/paid", &json!({})), ["order.paid"]);
    assert!(names_for("no/such_topic", &json!({})).is_empty());
}

#[test]
fn field_types_and_removed_fields() {
    let s = s();
    assert_eq!(
        s.field_type("order.created", &["shipping_address", "province_code"]),
        Ok(Ty::Str)
    );
    assert_eq!(
        s.field_type("order.created", &["line_items"]),
        Ok(Ty::List(Box::new(Ty::Record("line_item".into()))))
    );
    assert_eq!(
        s.field_type("order.created", &["total_price"]),
        Ok(Ty::Money)
    );
    assert_eq!(s.field_type("order.created", &["created_at"]), Ok(Ty::Time));
    assert_eq!(
        s.field_type("order.created", &["line_items", "sku"]),
        Err(FieldError::NotARecord {
            at: 1,
            ty: Ty::List(Box::new(Ty::Record("line_item".into())))
        })
    );
    assert_eq!(
        s.field_type("order.created", &["total_price", "amount"]),
        Err(FieldError::NotARecord {
            at: 1,
            ty: Ty::Money
        })
    );
    assert_eq!(
        s.field_type("order.exploded", &["x"]),
        Err(FieldError::UnknownEvent)
    );
    match s.field_type("order.created", &["totl_price"]) {
        Err(FieldError::UnknownField { at: 0, known }) => {
            assert!(known.contains(&"total_price".to_string()))
        }
        other => panic!("{other:?}"),
    }

    // Removed in 2022-04: an error for the type, with a note saying what to use instead.
    match s.field_type("order.created", &["customer", "orders_count"]) {
        Err(FieldError::UnknownField { at: 1, known }) => {
            assert!(known.contains(&"first_name".to_string()))
        }
        other => panic!("{other:?}"),
    }
    let r = s
        .removed("order.created", &["customer", "orders_count"])
        .unwrap();
    assert_eq!(r.since, "2022-04");
    assert!(r.help.contains("profile.orders_count"));
    let r = s
        .removed("order.paid", &["customer", "total_spent"])
        .unwrap();
    assert!(r.help.contains("profile.total_spent"));
    assert!(s
        .removed("order.created", &["customer", "first_name"])
        .is_none());
    assert!(s
        .removed("sms.replied", &["customer", "orders_count"])
        .is_none());
}

#[test]
fn custom_events_merge_and_clash() {
    let project: toml::Table = toml::from_str(
        r#"
        [events.review_submitted]
        doc = "A review from the reviews app"
        key = "review_id"
        fields = { review_id = "str", rating = "int", text = "str", product = { type = "str", from = "product.id" } }
        "#,
    )
    .unwrap();
    let merged = s().with_custom(&project).unwrap();
    assert_eq!(
        merged.field_type("review_submitted", &["rating"]),
        Ok(Ty::Int)
    );
    assert_eq!(
        merged.field_type("order.created", &["total_price"]),
        Ok(Ty::Money)
    );
    let e = merged.event("review_submitted").unwrap();
    assert_eq!(e.topic, None);
    assert_eq!(e.key.as_deref(), Some("review_id"));
    let out = merged
        .normalize(
            "review_submitted",
            &json!({"review_id": 77, "rating": 5, "text": "great", "product": {"id": 9}}),
        )
        .unwrap();
    assert_eq!(
        out,
        json!({"review_id": "77", "rating": 5, "text": "great", "product": "9"})
    );
    // The builtin set is untouched; the `events` table alone is accepted too.
    assert!(s().event("review_submitted").is_none());
    let events_only = project["events"].as_table().unwrap();
    assert!(s()
        .with_custom(events_only)
        .unwrap()
        .event("review_submitted")
        .is_some());

    let clash: toml::Table =
        toml::from_str("[events.\"order.created\"]\nfields = { x = \"int\" }").unwrap();
    let err = s().with_custom(&clash).unwrap_err();
    assert!(
        err.contains("order.created") && err.contains("builtin"),
        "{err}"
    );

    let status: toml::Table =
        toml::from_str("[events.\"shipment.lost\"]\nfields = { x = \"int\" }").unwrap();
    assert!(s().with_custom(&status).unwrap_err().contains("reserved"));

    let bad_type: toml::Table =
        toml::from_str("[events.survey]\nfields = { score = \"float\" }").unwrap();
    assert!(s().with_custom(&bad_type).unwrap_err().contains("float"));
    let bad_record: toml::Table =
        toml::from_str("[events.survey]\nfields = { who = \"person\" }").unwrap();
    assert!(s().with_custom(&bad_record).unwrap_err().contains("person"));
}

#[test]
fn invalid_values_name_the_field() {
    let mut order = fixture("orders__create.json");
    order["total_price"] = json!("12.x");
    let err = s().normalize("order.created", &order).unwrap_err();
    assert_eq!(err.field, "total_price");
    let shown = err.to_string();
    assert!(
        shown.contains("total_price") && shown.contains("12.x"),
        "{shown}"
    );

    for bad in ["", "1_000.00", "1e3", "12.", ".5", "--1", "NaN"] {
        let err = s()
            .normalize("order.created", &json!({"id": 1, "total_tax": bad}))
            .unwrap_err();
        assert_eq!(err.field, "total_tax", "{bad:?}");
    }
    let ok = s()
        .normalize("order.created", &json!({"id": 1, "total_tax": " -0.50 "}))
        .unwrap();
    assert_eq!(ok["total_tax"], "-0.50");

    let mut order = fixture("orders__create.json");
    order["line_items"][2]["price"] = json!("twenty");
    assert_eq!(
        s().normalize("order.created", &order).unwrap_err().field,
        "line_items[2].price"
    );

    let mut order = fixture("orders__create.json");
    order["created_at"] = json!("31/12/2021 19:00");
    assert_eq!(
        s().normalize("order.created", &order).unwrap_err().field,
        "created_at"
    );

    let mut order = fixture("orders__create.json");
    order["line_items"][0]["quantity"] = json!("one");
    assert_eq!(
        s().normalize("order.created", &order).unwrap_err().field,
        "line_items[0].quantity"
    );

    // A topic's required field: orders always carry `id`.
    let mut order = fixture("orders__create.json");
    order.as_object_mut().unwrap().remove("id");
    let err = s().normalize("order.created", &order).unwrap_err();
    assert_eq!(err.field, "order_id");
    assert!(
        err.message.contains("`id`") && err.message.contains("orders/create"),
        "{err}"
    );

    let err = s()
        .normalize(
            "shipment.delivered",
            &json!({"id": 1, "fulfillment_id": 2, "order_id": 3}),
        )
        .unwrap_err();
    assert_eq!(err.field, "status");

    assert!(s().normalize("order.created", &json!([1])).is_err());
    assert!(s().normalize("no.such_event", &json!({})).is_err());
}

#[test]
fn schema_files_are_validated() {
    let ok = "api_version = \"x\"\n[events.ping]\ndoc = \"d\"\nfields.at = \"time\"\n";
    assert!(Schemas::from_toml(ok).is_ok());
    let typo =
        "api_version = \"x\"\n[events.ping]\nfields.at = { type = \"time\", form = \"at\" }\n";
    assert!(Schemas::from_toml(typo).unwrap_err().contains("form"));
    let no_record = "api_version = \"x\"\n[events.ping]\nfields.at = \"where\"\n";
    assert!(Schemas::from_toml(no_record).unwrap_err().contains("where"));
    let bad_key = "api_version = \"x\"\n[events.ping]\nkey = \"id\"\nfields.at = \"time\"\n";
    assert!(Schemas::from_toml(bad_key).unwrap_err().contains("id"));
    let removed_nothing =
        "api_version = \"x\"\n[removed.\"nope.*\"]\n\"a\" = { since = \"1\", help = \"h\" }\n";
    assert!(Schemas::from_toml(removed_nothing).is_err());
    assert!(Schemas::from_toml("[events]").is_err());
}
