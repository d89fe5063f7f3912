//! Engine behaviour on hand-built programs: entry rules, exits, waits across DST, replies,
//! keywords, quiet hours, the frequency cap, splits and determinism, plus a model-based
//! property test over random event streams and clocks.

use aftercart::engine::{self, Consent, Effect, Input, PersonState};
use aftercart::ir::*;
use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

// ------------------------------------------------------------------ building programs

fn ev(path: &str) -> Expr {
    Expr::Path(Root::Event, path.split('.').map(String::from).collect())
}
fn entry(path: &str) -> Expr {
    Expr::Path(Root::Entry, path.split('.').map(String::from).collect())
}
fn eq(a: Expr, b: Expr) -> Expr {
    Expr::Binary(BinOp::Eq, Box::new(a), Box::new(b))
}
fn text(s: &str) -> TemplatePart {
    TemplatePart::Text(s.into())
}
fn interp(e: Expr, filters: Vec<(&str, Vec<Expr>)>) -> TemplatePart {
    TemplatePart::Interp {
        expr: e,
        filters: filters
            .into_iter()
            .map(|(n, a)| FilterCall {
                name: n.into(),
                args: a,
            })
            .collect(),
    }
}
fn send(parts: Vec<TemplatePart>, next: StepId) -> Step {
    Step::Send {
        template: Template { parts },
        next,
    }
}
fn say(s: &str, next: StepId) -> Step {
    send(vec![text(s)], next)
}
fn same_customer_exit() -> Vec<EventMatch> {
    vec![EventMatch {
        event: "order.created".into(),
        filter: Some(eq(ev("customer_id"), entry("customer_id"))),
    }]
}

fn flow(name: &str, kind: FlowKind, trigger: &str, entry_rule: Entry, steps: Vec<Step>) -> Flow {
    let mut f = Flow {
        name: name.into(),
        description: String::new(),
        kind,
        version: String::new(),
        trigger: EventMatch {
            event: trigger.into(),
            filter: None,
        },
        entry: entry_rule,
        exits: vec![],
        goal: None,
        held: HeldPolicy::Defer,
        steps,
    };
    f.version = f.compute_version();
    f
}

fn revise(mut f: Flow) -> Flow {
    f.version = f.compute_version();
    f
}

fn program(flows: Vec<Flow>) -> Program {
    let mut values = BTreeMap::new();
    values.insert("url".to_string(), "https://juniper.example".to_string());
    values.insert(
        "review_url".to_string(),
        "https://juniper.example/reviews".to_string(),
    );
    let mut p = Program {
        ir_version: IR_VERSION,
        hash: String::new(),
        shopify_api_version: "2025-01".into(),
        plugins: Vec::new(),
        shop: Shop {
            name: "Juniper".into(),
            zone: "America/New_York".into(),
            sender: "+18005550199".into(),
            link_base: Some("https://jnpr.co/l".into()),
            help_reply: "Juniper: reply STOP to unsubscribe. Help: support@juniper.example".into(),
            values,
        },
        policy: Policy::default(),
        flows,
        catalog: Default::default(),
    };
    p.hash = p.compute_hash();
    p
}

fn review_request() -> Flow {
    let mut f = flow(
        "review_request",
        FlowKind::Marketing,
        "shipment.delivered",
        Entry::OncePer(ev("order_id")),
        vec![
            Step::Wait {
                secs: 2 * 86_400,
                next: 1,
            },
            Step::WaitUntil {
                hour: 10,
                minute: 0,
                days: vec![0, 1, 2, 3, 4],
                next: 2,
            },
            send(
                vec![
                    text("Hi "),
                    interp(
                        Expr::Path(Root::Profile, vec!["first_name".into()]),
                        vec![("default", vec![Expr::Lit(Lit::Str("there".into()))])],
                    ),
                    text("! Review: "),
                    interp(
                        Expr::Call(
                            "link".into(),
                            vec![Expr::Path(Root::Shop, vec!["review_url".into()])],
                        ),
                        vec![],
                    ),
                    text(" Reply STOP to opt out."),
                ],
                3,
            ),
            Step::End,
        ],
    );
    f.exits = same_customer_exit();
    f.goal = Some(Goal {
        event: "order.created".into(),
        filter: None,
        within_secs: 7 * 86_400,
    });
    revise(f)
}

fn quiz() -> Flow {
    flow(
        "skin_quiz",
        FlowKind::Marketing,
        "order.created",
        Entry::EveryTime,
        vec![
            say("Your skin goal? Reply 1 hydration, 2 clarity.", 1),
            Step::WaitReply {
                timeout_secs: 2 * 86_400,
                arms: vec![
                    ReplyArm {
                        answers: vec!["1".into(), "one".into(), "hydration".into()],
                        next: 2,
                    },
                    ReplyArm {
                        answers: vec!["2".into(), "two".into()],
                        next: 3,
                    },
                ],
                other: 4,
                on_timeout: 5,
            },
            say("Hydration it is.", 6),
            say("Clarity it is.", 6),
            say("Sorry, reply 1 or 2.", 6),
            Step::Exit,
            Step::End,
        ],
    )
}

fn welcome_split() -> Flow {
    let mut f = flow(
        "welcome_ab",
        FlowKind::Marketing,
        "order.paid",
        Entry::OnceEver,
        vec![
            Step::Split {
                arms: vec![
                    SplitArm {
                        name: "plain".into(),
                        weight: 3000,
                        next: 1,
                    },
                    SplitArm {
                        name: "discount".into(),
                        weight: 7000,
                        next: 2,
                    },
                ],
            },
            say("Thanks!", 3),
            say("Thanks! 10% off: WELCOME10", 3),
            Step::End,
        ],
    );
    f.goal = Some(Goal {
        event: "order.created".into(),
        filter: None,
        within_secs: 5 * 86_400,
    });
    revise(f)
}

fn late_night(held: HeldPolicy) -> Flow {
    let mut f = flow(
        "late_night",
        FlowKind::Marketing,
        "order.created",
        Entry::OncePer(ev("order_id")),
        vec![
            Step::WaitUntil {
                hour: 22,
                minute: 0,
                days: vec![],
                next: 1,
            },
            say("Night owl deal!", 2),
            Step::End,
        ],
    );
    f.held = held;
    revise(f)
}

fn confirmation() -> Flow {
    flow(
        "order_confirmation",
        FlowKind::Transactional,
        "order.created",
        Entry::OncePer(ev("order_id")),
        vec![
            send(
                vec![
                    text("Order "),
                    interp(ev("order_id"), vec![]),
                    text(" confirmed ("),
                    interp(ev("total_price"), vec![("money", vec![ev("currency")])]),
                    text(")"),
                ],
                1,
            ),
            Step::End,
        ],
    )
}

fn checkin() -> Flow {
    let mut f = flow(
        "checkin",
        FlowKind::Marketing,
        "order.fulfilled",
        Entry::OncePer(ev("order_id")),
        vec![
            Step::Wait {
                secs: 3600,
                next: 1,
            },
            Step::WaitEvent {
                event: "shipment.delivered".into(),
                filter: Some(eq(ev("order_id"), entry("order_id"))),
                timeout_secs: 21 * 86_400,
                on_event: 2,
                on_timeout: 3,
            },
            say("How is your order?", 4),
            Step::Exit,
            Step::End,
        ],
    );
    f.exits = same_customer_exit();
    revise(f)
}

fn abandoned() -> Flow {
    let mut f = flow(
        "abandoned_checkout",
        FlowKind::Marketing,
        "checkout.created",
        Entry::AtMostOncePer { secs: 7 * 86_400 },
        vec![
            Step::Wait {
                secs: 3600,
                next: 1,
            },
            say("You left something in your cart.", 2),
            Step::End,
        ],
    );
    f.held = HeldPolicy::Drop;
    revise(f)
}

fn once_ever() -> Flow {
    flow(
        "vip_once",
        FlowKind::Marketing,
        "order.created",
        Entry::OnceEver,
        vec![say("Welcome to VIP", 1), Step::End],
    )
}

// ------------------------------------------------------------------ a tiny host

const CT_PHONE: &str = "+12035550100"; // Connecticut area code, Eastern time
const CHI_PHONE: &str = "+13145550100"; // St. Louis, Missouri: Central time, no state row
const NY_PHONE: &str = "+12125550100";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn order(order_id: &str, phone: &str) -> Json {
    json!({
        "order_id": order_id, "customer_id": "c1", "phone": phone, "first_name": "Ada",
        "total_price": "29.99", "currency": "USD",
        "line_items": [{"sku": "SKIN-1", "title": "Night Cream", "quantity": 1, "price": "29.99", "product_id": "p1"}],
    })
}

/// Holds one person's state, fires due timers in order, keeps every effect.
struct Host {
    program: Program,
    state: PersonState,
    timers: BTreeMap<(DateTime<Utc>, String, StepId), ()>,
    log: Vec<(DateTime<Utc>, Effect)>,
    now: DateTime<Utc>,
    n: u64,
}

impl Host {
    fn new(program: Program, start: DateTime<Utc>) -> Host {
        Host {
            program,
            state: PersonState::new("customer:c1"),
            timers: BTreeMap::new(),
            log: vec![],
            now: start,
            n: 0,
        }
    }

    fn input(&mut self, input: Input) -> Vec<Effect> {
        let (next, effects) = engine::step(&self.program, &self.state, &input, self.now);
        self.state = next;
        for e in &effects {
            match e {
                Effect::ScheduleTimer { instance, step, at } => {
                    self.timers.insert((*at, instance.clone(), *step), ());
                }
                Effect::CancelTimer { instance, step, at } => {
                    self.timers.remove(&(*at, instance.clone(), *step));
                }
                _ => {}
            }
            self.log.push((self.now, e.clone()));
        }
        effects
    }

    fn event(&mut self, name: &str, data: Json) -> Vec<Effect> {
        self.n += 1;
        let id = format!("ev{}", self.n);
        self.input(Input::Event {
            name: name.into(),
            id,
            data,
        })
    }

    fn reply(&mut self, body: &str) -> Vec<Effect> {
        self.input(Input::Reply {
            body: body.into(),
            message_sid: None,
        })
    }

    /// Move the clock to `to`, firing every timer due on the way at its due time.
    fn run_until(&mut self, to: DateTime<Utc>) {
        while let Some(((at, inst, step), ())) =
            self.timers.iter().next().map(|(k, v)| (k.clone(), *v))
        {
            if at > to {
                break;
            }
            self.timers.remove(&(at, inst.clone(), step));
            self.now = self.now.max(at);
            self.input(Input::Timer {
                instance: inst,
                step,
                due: at,
            });
        }
        self.now = self.now.max(to);
    }

    fn sends(&self) -> Vec<(DateTime<Utc>, engine::Message)> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                Effect::Send(m) => Some((m.at, m.clone())),
                _ => None,
            })
            .collect()
    }
}

fn subscribed(h: &mut Host) {
    h.input(Input::Consent {
        state: Consent::Subscribed,
    });
}

// ------------------------------------------------------------------ entry rules

#[test]
fn once_per_order_enters_once() {
    let mut h = Host::new(program(vec![confirmation()]), t("2026-05-04T15:00:00Z"));
    h.event("order.created", order("o1", NY_PHONE));
    h.event("order.created", order("o1", NY_PHONE));
    h.event("order.created", order("o2", NY_PHONE));
    let sends = h.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].1.body, "Order o1 confirmed ($29.99)");
    assert!(h
        .log
        .iter()
        .any(|(_, e)| matches!(e, Effect::NotEntered { reason, .. } if reason.contains("o1"))));
}

#[test]
fn redelivered_event_is_a_duplicate() {
    let mut h = Host::new(program(vec![confirmation()]), t("2026-05-04T15:00:00Z"));
    let input = Input::Event {
        name: "order.created".into(),
        id: "shopify-1".into(),
        data: order("o1", NY_PHONE),
    };
    h.input(input.clone());
    let again = h.input(input);
    assert_eq!(
        again,
        vec![Effect::Duplicate {
            id: "shopify-1".into()
        }]
    );
    assert_eq!(h.state.profile.orders_count, 1);
}

#[test]
fn at_most_once_per_seven_days() {
    let mut h = Host::new(program(vec![abandoned()]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    let co = json!({"checkout_id": "k1", "customer_id": "c1", "phone": NY_PHONE});
    h.event("checkout.created", co.clone());
    h.run_until(t("2026-05-06T15:00:00Z"));
    h.event("checkout.created", co.clone());
    h.run_until(t("2026-05-11T16:00:00Z"));
    h.event("checkout.created", co);
    h.run_until(t("2026-05-12T16:00:00Z"));
    let entered = h
        .log
        .iter()
        .filter(|(_, e)| matches!(e, Effect::Entered { .. }))
        .count();
    assert_eq!(entered, 2);
    assert_eq!(h.sends().len(), 2);
}

#[test]
fn once_ever_enters_once() {
    let mut h = Host::new(program(vec![once_ever()]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    h.event("order.created", order("o1", NY_PHONE));
    h.event("order.created", order("o2", NY_PHONE));
    assert_eq!(h.sends().len(), 1);
}

#[test]
fn checkout_opt_in_counts_as_consent() {
    let mut h = Host::new(program(vec![abandoned()]), t("2026-05-04T15:00:00Z"));
    h.event(
        "checkout.created",
        json!({"customer_id": "c1", "phone": NY_PHONE, "buyer_accepts_sms_marketing": true}),
    );
    assert_eq!(h.state.consent, Consent::Subscribed);
    h.run_until(t("2026-05-04T17:00:00Z"));
    assert_eq!(h.sends().len(), 1);
}

// ------------------------------------------------------------------ exits, waits

#[test]
fn new_order_exits_and_cancels_timer() {
    let mut h = Host::new(program(vec![review_request()]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    let fx = h.event(
        "shipment.delivered",
        json!({"order_id": "o1", "customer_id": "c1", "phone": NY_PHONE}),
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::ScheduleTimer { .. })));
    let fx = h.event("order.created", order("o2", NY_PHONE));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::CancelTimer { .. })),
        "{fx:?}"
    );
    assert!(fx.iter().any(
        |e| matches!(e, Effect::Exited { reason, .. } if reason == "exit when order.created")
    ));
    assert!(h.timers.is_empty());
    h.run_until(t("2026-05-20T15:00:00Z"));
    assert!(h.sends().is_empty());
}

#[test]
fn another_customers_order_does_not_exit() {
    let mut h = Host::new(program(vec![review_request()]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    h.event(
        "shipment.delivered",
        json!({"order_id": "o1", "customer_id": "c1", "phone": NY_PHONE}),
    );
    let mut other = order("o9", NY_PHONE);
    other["customer_id"] = json!("c2");
    h.event("order.created", other);
    h.run_until(t("2026-05-20T15:00:00Z"));
    let sends = h.sends();
    assert_eq!(sends.len(), 1);
    // Delivered Monday 11:00 EDT + 2 d = Wednesday; 10:00 EDT Thursday is the next weekday 10:00.
    assert_eq!(sends[0].0, t("2026-05-07T14:00:00Z"));
    assert!(sends[0]
        .1
        .body
        .starts_with("Hi Ada! Review: https://jnpr.co/l/"));
    assert_eq!(sends[0].1.links[0].url, "https://juniper.example/reviews");
}

fn wait_until_flow(hour: u32, minute: u32) -> Flow {
    flow(
        "wake",
        FlowKind::Transactional,
        "order.created",
        Entry::EveryTime,
        vec![
            Step::WaitUntil {
                hour,
                minute,
                days: vec![],
                next: 1,
            },
            say("Good morning", 2),
            Step::End,
        ],
    )
}

#[test]
fn wait_until_across_spring_forward() {
    // 2026-03-08: New York skips 02:00-03:00. A 02:30 wait fires at 03:00 EDT (07:00Z);
    // a 10:00 wait fires at 10:00 EDT (14:00Z), not 10:00 EST.
    let mut h = Host::new(
        program(vec![wait_until_flow(2, 30)]),
        t("2026-03-08T04:00:00Z"),
    );
    h.event("order.created", order("o1", NY_PHONE));
    h.run_until(t("2026-03-09T00:00:00Z"));
    assert_eq!(h.sends()[0].0, t("2026-03-08T07:00:00Z"));
    let mut h = Host::new(
        program(vec![wait_until_flow(10, 0)]),
        t("2026-03-08T04:00:00Z"),
    );
    h.event("order.created", order("o1", NY_PHONE));
    h.run_until(t("2026-03-09T00:00:00Z"));
    assert_eq!(h.sends()[0].0, t("2026-03-08T14:00:00Z"));
    assert!(h.sends()[0]
        .1
        .local_time
        .starts_with("2026-03-08T10:00:00-04:00"));
}

#[test]
fn wait_until_across_fall_back() {
    // 2026-11-01: 01:30 happens twice in New York; the earlier (EDT, 05:30Z) is taken once.
    let mut h = Host::new(
        program(vec![wait_until_flow(1, 30)]),
        t("2026-11-01T03:00:00Z"),
    );
    h.event("order.created", order("o1", NY_PHONE));
    h.run_until(t("2026-11-02T00:00:00Z"));
    let sends = h.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].0, t("2026-11-01T05:30:00Z"));
    let mut h = Host::new(
        program(vec![wait_until_flow(10, 0)]),
        t("2026-11-01T03:00:00Z"),
    );
    h.event("order.created", order("o1", NY_PHONE));
    h.run_until(t("2026-11-02T00:00:00Z"));
    assert_eq!(h.sends()[0].0, t("2026-11-01T15:00:00Z"));
}

#[test]
fn wait_for_sees_event_before_the_wait() {
    let mut h = Host::new(program(vec![checkin()]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    h.event(
        "order.fulfilled",
        json!({"order_id": "o1", "customer_id": "c1", "phone": NY_PHONE}),
    );
    // Delivered during the first hour, before the `wait for` starts.
    h.now = t("2026-05-04T15:30:00Z");
    h.event(
        "shipment.delivered",
        json!({"order_id": "o1", "customer_id": "c1"}),
    );
    h.run_until(t("2026-05-04T17:00:00Z"));
    let sends = h.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].0, t("2026-05-04T16:00:00Z"));
}

#[test]
fn wait_for_ignores_other_orders_and_times_out() {
    let mut h = Host::new(program(vec![checkin()]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    h.event(
        "order.fulfilled",
        json!({"order_id": "o1", "customer_id": "c1", "phone": NY_PHONE}),
    );
    h.run_until(t("2026-05-05T15:00:00Z"));
    h.event(
        "shipment.delivered",
        json!({"order_id": "o2", "customer_id": "c1"}),
    );
    h.run_until(t("2026-06-30T15:00:00Z"));
    assert!(h.sends().is_empty());
    assert!(h
        .log
        .iter()
        .any(|(_, e)| matches!(e, Effect::Exited { reason, .. } if reason == "exit")));
}

// ------------------------------------------------------------------ replies and keywords

fn quiz_host() -> Host {
    let mut h = Host::new(program(vec![quiz()]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    h.event("order.created", order("o1", NY_PHONE));
    assert_eq!(h.sends().len(), 1);
    h
}

#[test]
fn reply_branches() {
    let mut h = quiz_host();
    h.reply("  ONE ");
    assert_eq!(h.sends().last().unwrap().1.body, "Hydration it is.");
    let mut h = quiz_host();
    h.reply("two");
    assert_eq!(h.sends().last().unwrap().1.body, "Clarity it is.");
    let mut h = quiz_host();
    h.reply("what?");
    assert_eq!(h.sends().last().unwrap().1.body, "Sorry, reply 1 or 2.");
    assert!(h.timers.is_empty());
}

#[test]
fn reply_timeout_exits() {
    let mut h = quiz_host();
    h.run_until(t("2026-05-07T15:00:00Z"));
    assert_eq!(h.sends().len(), 1);
    assert!(h.state.instances.is_empty());
    // A reply when nothing waits is recorded only.
    let fx = h.reply("1");
    assert_eq!(
        fx,
        vec![Effect::ReplyRecorded {
            body: "1".into(),
            keyword: None,
            routed_to: vec![]
        }]
    );
}

#[test]
fn stop_cancels_pending_marketing_until_start() {
    let mut h = Host::new(
        program(vec![review_request(), confirmation()]),
        t("2026-05-04T15:00:00Z"),
    );
    subscribed(&mut h);
    h.event(
        "shipment.delivered",
        json!({"order_id": "o1", "customer_id": "c1", "phone": NY_PHONE}),
    );
    let fx = h.reply("Stop");
    assert!(fx.iter().any(|e| matches!(e, Effect::CancelTimer { .. })));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::ConsentChanged {
            to: Consent::Unsubscribed,
            ..
        }
    )));
    assert!(h.timers.is_empty());
    h.event(
        "shipment.delivered",
        json!({"order_id": "o2", "customer_id": "c1", "phone": NY_PHONE}),
    );
    h.run_until(t("2026-05-20T15:00:00Z"));
    assert!(h.sends().is_empty());
    // Transactional messages still go.
    h.event("order.created", order("o3", NY_PHONE));
    assert_eq!(h.sends().len(), 1);
    h.reply("START");
    assert_eq!(h.state.consent, Consent::Subscribed);
    h.event(
        "shipment.delivered",
        json!({"order_id": "o4", "customer_id": "c1", "phone": NY_PHONE}),
    );
    h.run_until(t("2026-06-20T15:00:00Z"));
    assert_eq!(
        h.sends()
            .iter()
            .filter(|(_, m)| m.flow == "review_request")
            .count(),
        1
    );
}

#[test]
fn stopwatch_is_not_stop() {
    let mut h = quiz_host();
    let fx = h.reply("stopwatch");
    assert_eq!(h.state.consent, Consent::Subscribed);
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::ConsentChanged { .. })));
    assert_eq!(h.sends().last().unwrap().1.body, "Sorry, reply 1 or 2.");
    let mut h = quiz_host();
    h.reply("opt out");
    assert_eq!(h.state.consent, Consent::Unsubscribed);
}

#[test]
fn help_gets_the_shop_help_text() {
    let mut h = quiz_host();
    let fx = h.reply("help");
    assert!(fx.iter().any(
        |e| matches!(e, Effect::HelpReply { body, .. } if body.starts_with("Juniper: reply STOP"))
    ));
    assert_eq!(h.state.instances.len(), 1, "HELP is not a quiz answer");
}

// ------------------------------------------------------------------ compliance gate

#[test]
fn unknown_consent_is_not_consent() {
    let mut h = Host::new(program(vec![quiz()]), t("2026-05-04T15:00:00Z"));
    h.event("order.created", order("o1", NY_PHONE));
    assert!(h.sends().is_empty());
    assert!(h.log.iter().any(|(_, e)| matches!(e, Effect::Dropped { reason, .. } if reason.contains("consent is unknown"))));
}

#[test]
fn quiet_hours_defer_to_local_morning() {
    // 22:00 in Chicago is in quiet hours; the TCPA window opens at 08:00 Central.
    let mut h = Host::new(
        program(vec![late_night(HeldPolicy::Defer)]),
        t("2026-05-04T15:00:00Z"),
    );
    subscribed(&mut h);
    h.event("order.created", order("o1", CHI_PHONE));
    h.run_until(t("2026-05-06T00:00:00Z"));
    let sends = h.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].0, t("2026-05-05T13:00:00Z"), "08:00 CDT");
    assert!(h
        .log
        .iter()
        .any(|(_, e)| matches!(e, Effect::Held { reason, .. } if reason.contains("quiet hours"))));
    // Connecticut (Conn. Gen. Stat. 42-288a): 09:00-20:00.
    let mut h = Host::new(
        program(vec![late_night(HeldPolicy::Defer)]),
        t("2026-05-04T15:00:00Z"),
    );
    subscribed(&mut h);
    h.event("order.created", order("o1", CT_PHONE));
    h.run_until(t("2026-05-06T00:00:00Z"));
    assert_eq!(h.sends()[0].0, t("2026-05-05T13:00:00Z"), "09:00 EDT");
}

#[test]
fn quiet_hours_drop_policy_drops_with_reason() {
    let mut h = Host::new(
        program(vec![late_night(HeldPolicy::Drop)]),
        t("2026-05-04T15:00:00Z"),
    );
    subscribed(&mut h);
    h.event("order.created", order("o1", NY_PHONE));
    h.run_until(t("2026-05-06T00:00:00Z"));
    assert!(h.sends().is_empty());
    assert!(h.log.iter().any(|(_, e)| matches!(e, Effect::Dropped { reason, .. } if reason.contains("quiet hours") && reason.contains("drop"))));
    assert!(h.state.instances.is_empty());
}

#[test]
fn frequency_cap_holds_the_fourth_message() {
    let mut h = Host::new(
        program(vec![once_ever(), quiz(), review_request(), abandoned()]),
        t("2026-05-04T15:00:00Z"),
    );
    subscribed(&mut h);
    h.event("order.created", order("o1", NY_PHONE)); // vip_once + quiz: 2 sends
    h.reply("1"); // 3rd
    assert_eq!(h.sends().len(), 3);
    h.event(
        "checkout.created",
        json!({"customer_id": "c1", "phone": NY_PHONE}),
    );
    h.run_until(t("2026-05-04T17:00:00Z"));
    assert_eq!(
        h.sends().len(),
        3,
        "the cart reminder is over the cap of 3 per 24 h"
    );
    assert!(h.log.iter().any(
        |(_, e)| matches!(e, Effect::Dropped { reason, .. } if reason.contains("frequency cap"))
    ));
}

#[test]
fn frequency_cap_defers_past_the_window() {
    let mut f = quiz();
    f.steps = vec![
        say("one", 1),
        say("two", 2),
        say("three", 3),
        say("four", 4),
        Step::End,
    ];
    let f = revise(f);
    let mut h = Host::new(program(vec![f]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    h.event("order.created", order("o1", NY_PHONE));
    h.run_until(t("2026-05-07T00:00:00Z"));
    let sends = h.sends();
    assert_eq!(sends.len(), 4);
    assert_eq!(sends[3].0, t("2026-05-05T15:00:00Z"));
}

// ------------------------------------------------------------------ splits, attribution

#[test]
fn split_is_deterministic_and_matches_weights() {
    let p = program(vec![welcome_split()]);
    let mut discount = 0;
    for i in 0..10_000 {
        let mut s = PersonState::new(format!("customer:{i}"));
        s.consent = Consent::Subscribed;
        let input = Input::Event {
            name: "order.paid".into(),
            id: format!("e{i}"),
            data: order(&format!("o{i}"), NY_PHONE),
        };
        let (_, a) = engine::step(&p, &s, &input, t("2026-05-04T15:00:00Z"));
        let (_, b) = engine::step(&p, &s, &input, t("2026-05-04T15:00:00Z"));
        assert_eq!(a, b);
        let v = a.iter().find_map(|e| match e {
            Effect::Send(m) => m.variant.clone(),
            _ => None,
        });
        discount += usize::from(v.as_deref() == Some("discount"));
    }
    assert!(
        (6800..7200).contains(&discount),
        "{discount} of 10000 in the 70% arm"
    );
}

#[test]
fn conversion_credits_the_last_message() {
    let mut h = Host::new(program(vec![welcome_split()]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    h.event("order.paid", order("o1", NY_PHONE));
    let variant = h.sends()[0].1.variant.clone();
    h.now = t("2026-05-06T15:00:00Z");
    let mut o = order("o2", NY_PHONE);
    o["total_price"] = json!("120.50");
    let fx = h.event("order.created", o);
    let conv = fx.iter().find_map(|e| match e {
        Effect::Conversion {
            flow,
            variant,
            revenue,
            order_id,
            ..
        } => Some((
            flow.clone(),
            variant.clone(),
            revenue.clone(),
            order_id.clone(),
        )),
        _ => None,
    });
    assert_eq!(
        conv,
        Some((
            "welcome_ab".into(),
            variant,
            Some("120.50".into()),
            Some("o2".into())
        ))
    );
    h.now = t("2026-05-20T15:00:00Z");
    let fx = h.event("order.created", order("o3", NY_PHONE));
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::Conversion { .. })),
        "outside the 5 d window"
    );
}

#[test]
fn first_order_trigger_sees_orders_count_one() {
    let mut f = once_ever();
    f.trigger.filter = Some(eq(
        Expr::Path(Root::Profile, vec!["orders_count".into()]),
        Expr::Lit(Lit::Int(1)),
    ));
    f.entry = Entry::EveryTime;
    let mut h = Host::new(program(vec![revise(f)]), t("2026-05-04T15:00:00Z"));
    subscribed(&mut h);
    h.event("order.created", order("o1", NY_PHONE));
    h.event("order.paid", order("o1", NY_PHONE));
    h.event("order.created", order("o2", NY_PHONE));
    assert_eq!(h.sends().len(), 1);
    assert_eq!(h.state.profile.orders_count, 2);
    assert_eq!(h.state.profile.total_spent.to_string(), "59.98");
}

// ------------------------------------------------------------------ determinism

fn scenario() -> Vec<(DateTime<Utc>, Effect)> {
    let mut h = Host::new(
        program(vec![
            review_request(),
            quiz(),
            welcome_split(),
            confirmation(),
            checkin(),
        ]),
        t("2026-03-06T15:00:00Z"),
    );
    subscribed(&mut h);
    h.event("order.created", order("o1", CT_PHONE));
    h.event("order.paid", order("o1", CT_PHONE));
    h.event("order.fulfilled", order("o1", CT_PHONE));
    h.reply("clarity");
    h.run_until(t("2026-03-07T15:00:00Z"));
    h.event("shipment.delivered", order("o1", CT_PHONE));
    h.run_until(t("2026-03-20T15:00:00Z"));
    h.log
}

#[test]
fn same_inputs_same_bytes() {
    let a = serde_json::to_string(&scenario()).unwrap();
    let b = serde_json::to_string(&scenario()).unwrap();
    assert_eq!(a, b);
    assert!(a.contains("\"effect\":\"send\""));
}

// ------------------------------------------------------------------ model-based property test

mod model {
    use super::*;
    use aftercart::compliance::{area_code_state, area_code_zone, QuietHours};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    pub enum Op {
        Event {
            kind: usize,
            order: u8,
            opt_in: bool,
        },
        Redeliver,
        Reply(usize),
        Consent(bool),
        Advance(i64),
        Restart,
    }

    const KINDS: [&str; 6] = [
        "order.created",
        "order.paid",
        "order.fulfilled",
        "shipment.delivered",
        "checkout.created",
        "consent.updated",
    ];
    const REPLIES: [&str; 11] = [
        "1",
        "two",
        "STOP",
        " stop ",
        "start",
        "stopwatch",
        "help",
        "yes",
        "why",
        "opt out",
        "Unstop",
    ];
    const PHONES: [&str; 5] = [
        NY_PHONE,
        CT_PHONE,
        CHI_PHONE,
        "+12145550100",
        "+14155550100",
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..KINDS.len(), 0u8..4, any::<bool>()).prop_map(|(kind, order, opt_in)| Op::Event { kind, order, opt_in }),
            1 => Just(Op::Redeliver),
            3 => (0..REPLIES.len()).prop_map(Op::Reply),
            1 => any::<bool>().prop_map(Op::Consent),
            4 => (60i64..4 * 86_400).prop_map(Op::Advance),
            1 => Just(Op::Restart),
        ]
    }

    fn all_flows() -> Program {
        program(vec![
            review_request(),
            quiz(),
            welcome_split(),
            late_night(HeldPolicy::Defer),
            abandoned(),
            confirmation(),
            checkin(),
        ])
    }

    /// Run the ops; return the serialised log, checking the invariants on the way.
    fn run(start: DateTime<Utc>, phone: &str, ops: &[Op]) -> String {
        let mut h = Host::new(all_flows(), start);
        let mut consent = Consent::Unknown;
        let mut last: Option<Input> = None;
        let mut marketing_sends: Vec<DateTime<Utc>> = vec![];
        let mut ids = BTreeSet::new();
        let mut steps = BTreeSet::new();
        let rules = QuietHours::builtin().rules_for(None, area_code_state(phone));
        let tz: chrono_tz::Tz = area_code_zone(phone).unwrap_or(chrono_tz::America::New_York);
        let mut checked = 0;
        for op in ops {
            match op {
                Op::Event {
                    kind,
                    order: o,
                    opt_in,
                } => {
                    let name = KINDS[*kind];
                    let mut data = order(&format!("o{o}"), phone);
                    if name == "checkout.created" {
                        data["buyer_accepts_sms_marketing"] = json!(*opt_in);
                        if *opt_in && consent == Consent::Unknown {
                            consent = Consent::Subscribed;
                        }
                    }
                    if name == "consent.updated" {
                        let st = if *opt_in {
                            "subscribed"
                        } else {
                            "unsubscribed"
                        };
                        data["sms_marketing_consent"] = json!({ "state": st });
                        consent = if *opt_in {
                            Consent::Subscribed
                        } else {
                            Consent::Unsubscribed
                        };
                    }
                    h.n += 1;
                    let input = Input::Event {
                        name: name.into(),
                        id: format!("ev{}", h.n),
                        data,
                    };
                    last = Some(input.clone());
                    h.input(input);
                }
                Op::Redeliver => {
                    if let Some(i) = last.clone() {
                        h.input(i);
                    }
                }
                Op::Reply(i) => {
                    let body = REPLIES[*i];
                    match engine::normalize_reply(body).as_str() {
                        "stop" | "opt out" => consent = Consent::Unsubscribed,
                        "start" | "unstop" => consent = Consent::Subscribed,
                        "yes" if consent != Consent::Subscribed => consent = Consent::Subscribed,
                        _ => {}
                    }
                    h.reply(body);
                }
                Op::Consent(on) => {
                    consent = if *on {
                        Consent::Subscribed
                    } else {
                        Consent::Unsubscribed
                    };
                    h.input(Input::Consent { state: consent });
                }
                Op::Advance(secs) => {
                    let to = h.now + chrono::Duration::seconds(*secs);
                    // Timers fire one input at a time; check after each.
                    while let Some((at, inst, step)) = h.timers.keys().next().cloned() {
                        if at > to {
                            break;
                        }
                        h.timers.remove(&(at, inst.clone(), step));
                        h.now = h.now.max(at);
                        h.input(Input::Timer {
                            instance: inst,
                            step,
                            due: at,
                        });
                        check(
                            &h.log[checked..],
                            consent,
                            &rules,
                            tz,
                            &mut marketing_sends,
                            &mut ids,
                            &mut steps,
                            &h.program,
                        );
                        checked = h.log.len();
                    }
                    h.now = to;
                }
                Op::Restart => {
                    // The state survives a store round trip unchanged.
                    let text = serde_json::to_string(&h.state).unwrap();
                    let back: PersonState = serde_json::from_str(&text).unwrap();
                    assert_eq!(back, h.state);
                    h.state = back;
                }
            }
            let log = h.log[checked..].to_vec();
            checked = h.log.len();
            check(
                &log,
                consent,
                &rules,
                tz,
                &mut marketing_sends,
                &mut ids,
                &mut steps,
                &h.program,
            );
            assert_eq!(h.state.consent, consent, "consent model after {op:?}");
        }
        if std::env::var("ENGINE_MODEL_STATS").is_ok() {
            eprintln!(
                "ops {} marketing sends {} all sends {}",
                ops.len(),
                marketing_sends.len(),
                ids.len()
            );
        }
        serde_json::to_string(&h.log).unwrap()
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        log: &[(DateTime<Utc>, Effect)],
        consent: Consent,
        rules: &aftercart::compliance::Rules,
        tz: chrono_tz::Tz,
        marketing: &mut Vec<DateTime<Utc>>,
        ids: &mut BTreeSet<String>,
        steps: &mut BTreeSet<(String, StepId)>,
        p: &Program,
    ) {
        for (_, e) in log {
            let Effect::Send(m) = e else { continue };
            assert!(
                ids.insert(m.message_id.clone()),
                "message id {} twice",
                m.message_id
            );
            assert!(
                steps.insert((m.instance.clone(), m.step)),
                "two messages for one (instance, step)"
            );
            if m.kind != FlowKind::Marketing {
                continue;
            }
            assert_eq!(
                consent,
                Consent::Subscribed,
                "marketing send without consent: {m:?}"
            );
            let local = m.at.with_timezone(&tz).naive_local();
            assert!(
                rules.allows(local),
                "send inside quiet hours at {local} ({})",
                rules.describe()
            );
            marketing.push(m.at);
            let cap = p.policy.frequency_cap;
            let inside = marketing
                .iter()
                .filter(|t| m.at - **t < chrono::Duration::seconds(cap.per_secs))
                .count();
            assert!(
                inside as u32 <= cap.max,
                "{inside} marketing sends within the cap window"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn invariants_hold(
            start in 1_767_225_600i64..1_798_761_600, // 2026
            phone in 0..PHONES.len(),
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let start = DateTime::from_timestamp(start, 0).unwrap();
            let a = run(start, PHONES[phone], &ops);
            let b = run(start, PHONES[phone], &ops);
            prop_assert_eq!(a, b);
        }
    }
}
