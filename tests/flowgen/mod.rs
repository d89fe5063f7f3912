//! Random valid `.flow` sources for property tests: items built from token sequences shaped by
//! the grammar's levels (so every one parses), joined by random layout (blanks, line breaks,
//! comments). Used by tests/format.rs and tests/parse_diff.rs.

use proptest::prelude::*;

fn toks(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn cat(parts: Vec<Vec<String>>) -> Vec<String> {
    parts.into_iter().flatten().collect()
}

fn atom() -> BoxedStrategy<Vec<String>> {
    prop::sample::select(vec![
        "event.order_id",
        "profile.orders_count",
        "1",
        "2.50",
        "\"a#b\"",
        "'it\\'s'",
        "true",
        "vip",
        "3d",
        "10:00",
        "flow.entry.customer_id",
        "x",
    ])
    .prop_map(|s| vec![s.to_string()])
    .boxed()
}

/// Expressions shaped by the grammar's levels, so every token sequence parses: `or`/`and`
/// chains of `not`s over one optional comparison of arithmetic chains over primaries.
pub fn expr() -> BoxedStrategy<Vec<String>> {
    atom()
        .prop_recursive(3, 32, 3, |inner| {
            let primary = prop_oneof![
                3 => atom(),
                1 => inner.clone().prop_map(|e| cat(vec![toks(&["("]), e, toks(&[")"])])),
                1 => prop::collection::vec(inner.clone(), 0..3).prop_map(|args| {
                    let mut v = toks(&["link("]);
                    for (i, a) in args.into_iter().enumerate() {
                        if i > 0 {
                            v.push(",".into());
                        }
                        v.extend(a);
                    }
                    v.push(")".into());
                    v
                }),
                1 => prop::collection::vec(inner.clone(), 0..3).prop_map(|xs| {
                    let mut v = toks(&["["]);
                    for (i, a) in xs.into_iter().enumerate() {
                        if i > 0 {
                            v.push(",".into());
                        }
                        v.extend(a);
                    }
                    v.push("]".into());
                    v
                }),
                1 => (prop::sample::select(vec!["any(", "all(", "count("]), inner.clone()).prop_map(|(q, p)| {
                    cat(vec![toks(&[q, "item", "in", "event.line_items", ":"]), p, toks(&[")"])])
                }),
            ]
            .boxed();
            let unary = (any::<bool>(), primary)
                .prop_map(|(neg, p)| if neg { cat(vec![toks(&["-"]), p]) } else { p })
                .boxed();
            let arith = (unary.clone(), prop::collection::vec((prop::sample::select(vec!["+", "-", "*", "/"]), unary), 0..3))
                .prop_map(|(first, rest)| {
                    let mut v = first;
                    for (op, u) in rest {
                        v.push(op.to_string());
                        v.extend(u);
                    }
                    v
                })
                .boxed();
            let cmp_ops = vec!["==", "!=", "<", ">=", "in", "not in", "starts_with", "contains"];
            let cmp = (arith.clone(), prop::option::of((prop::sample::select(cmp_ops), arith))).prop_map(|(l, r)| match r {
                None => l,
                Some((op, r)) => cat(vec![l, toks(&[op]), r]),
            });
            let notx = (0..3usize, cmp).prop_map(|(n, c)| cat(vec![vec!["not".to_string(); n], c])).boxed();
            (notx.clone(), prop::collection::vec((prop::sample::select(vec!["and", "or"]), notx), 0..3)).prop_map(
                |(first, rest)| {
                    let mut v = first;
                    for (op, u) in rest {
                        v.push(op.to_string());
                        v.extend(u);
                    }
                    v
                },
            )
        })
        .boxed()
}

fn template() -> BoxedStrategy<String> {
    prop_oneof![
        Just("\"Hi {{ profile.first_name | default('there') }}! # not a comment\"".to_string()),
        Just("'It\\'s {{ shop.name }}'".to_string()),
        (0..7usize, 0..3usize).prop_map(|(ind, extra)| {
            let i = " ".repeat(ind);
            let e = " ".repeat(extra);
            format!(
                "\"\"\"\n{i}Hi {{{{ shop.name }}}},\n{i}{e}  indented # kept\n\n{i}bye\n{e}\"\"\""
            )
        }),
    ]
    .boxed()
}

fn simple_step() -> BoxedStrategy<Vec<String>> {
    prop_oneof![
        template().prop_map(|t| vec!["send".into(), "sms".into(), t]),
        prop::sample::select(vec!["1h", "30m", "2d"]).prop_map(|d| toks(&["wait", d])),
        prop::sample::select(vec![
            vec!["wait", "until", "10:00", "local"],
            vec!["wait", "until", "9:05", "local", "on", "weekdays", ",", "sat"]
        ])
        .prop_map(|v| toks(&v)),
        Just(toks(&["exit"])),
    ]
    .boxed()
}

fn block(steps: Vec<Vec<String>>) -> Vec<String> {
    cat(vec![
        toks(&["{"]),
        steps.into_iter().flatten().collect(),
        toks(&["}"]),
    ])
}

fn step() -> BoxedStrategy<Vec<String>> {
    simple_step()
        .prop_recursive(3, 24, 4, |inner| {
            let steps = prop::collection::vec(inner.clone(), 0..3);
            let body = prop_oneof![inner.clone(), steps.clone().prop_map(block)].boxed();
            let pattern = prop_oneof![
                Just(toks(&["received"])),
                Just(toks(&["timeout"])),
                Just(toks(&["other"])),
                Just(toks(&["\"1\"", "|", "'one'", "|", "\"hydration\""])),
                Just(toks(&["\"yes\""])),
            ];
            let arms = prop::collection::vec((pattern, body.clone()), 0..4).prop_map(|arms| {
                let mut v = toks(&["{"]);
                for (p, b) in arms {
                    v.extend(p);
                    v.push("=>".into());
                    v.extend(b);
                }
                v.push("}".into());
                v
            });
            let within = prop::option::of(prop::sample::select(vec!["2d", "12h"]));
            prop_oneof![
                (
                    expr(),
                    steps.clone(),
                    prop::collection::vec((expr(), steps.clone()), 0..2),
                    prop::option::of(steps)
                )
                    .prop_map(|(c, b, elifs, otherwise)| {
                        let mut v = cat(vec![toks(&["if"]), c, block(b)]);
                        for (c, b) in elifs {
                            v.extend(cat(vec![toks(&["else", "if"]), c, block(b)]));
                        }
                        if let Some(b) = otherwise {
                            v.extend(cat(vec![toks(&["else"]), block(b)]));
                        }
                        v
                    }),
                (prop::option::of(expr()), within.clone(), arms.clone()).prop_map(
                    |(f, w, arms)| {
                        let mut v = toks(&["wait", "for", "shipment.delivered"]);
                        if let Some(f) = f {
                            v.push("where".into());
                            v.extend(f);
                        }
                        if let Some(w) = w {
                            v.extend(toks(&["within", w]));
                        }
                        cat(vec![v, arms])
                    }
                ),
                (within, arms).prop_map(|(w, arms)| {
                    let mut v = toks(&["wait", "reply"]);
                    if let Some(w) = w {
                        v.extend(toks(&["within", w]));
                    }
                    cat(vec![v, arms])
                }),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["50%", "12.5%", "100%"]),
                        prop::sample::select(vec!["a", "long_name"]),
                        body
                    ),
                    0..3
                )
                .prop_map(|arms| {
                    let mut v = toks(&["split", "{"]);
                    for (w, n, b) in arms {
                        v.extend(toks(&[w, n, "=>"]));
                        v.extend(b);
                    }
                    v.push("}".into());
                    v
                }),
            ]
        })
        .boxed()
}

fn header() -> BoxedStrategy<Vec<Vec<String>>> {
    let members = vec![
        toks(&["description", "\"A \\\"demo\\\" flow\""]),
        toks(&["kind", "marketing"]),
        toks(&["trigger", "order.created", "where", "vip"]),
        toks(&["entry", "at", "most", "once", "per", "7d"]),
        toks(&["exit", "when", "order.cancelled"]),
        toks(&[
            "exit",
            "when",
            "refund.created",
            "where",
            "event.amount",
            ">",
            "1",
        ]),
        toks(&["goal", "order.created", "within", "3d"]),
        toks(&["when", "held", "defer"]),
    ];
    prop::sample::subsequence(members, 0..=8)
        .prop_shuffle()
        .boxed()
}

fn item() -> BoxedStrategy<Vec<String>> {
    prop_oneof![
        expr().prop_map(|e| cat(vec![toks(&["segment", "seg", "="]), e])),
        (header(), prop::collection::vec(step(), 0..4), any::<bool>()).prop_map(
            |(h, steps, late)| {
                let mut v = toks(&["flow", "f", "{"]);
                let mut h = h.into_iter();
                // Sometimes a header member comes after the steps: the formatter moves it up. Not
                // `when held`: after an `exit` step the grammar reads `exit when held` as an exit
                // declaration for an event named `held` (a grammar ambiguity, see the report).
                let last = if late {
                    h.next().filter(|m| m[0] != "when")
                } else {
                    None
                };
                v.extend(h.flatten());
                v.extend(steps.into_iter().flatten());
                v.extend(last.into_iter().flatten());
                v.push("}".into());
                v
            }
        ),
    ]
    .boxed()
}

/// Tokens joined by random layout: spaces, tabs, newlines, blank lines, comments.
pub fn render(tokens: &[String], seps: &[u8]) -> String {
    let mut s = String::new();
    for (n, (t, &k)) in tokens.iter().zip(seps).enumerate() {
        if n > 0 {
            s.push_str(match k % 10 {
                0..=3 => " ",
                4 => "   ",
                5 => "\n    ",
                6 => "\n\n\n  ",
                7 => "\t",
                _ => "",
            });
            if k % 10 >= 8 {
                // A comment (unique text) on its own line or after the previous token.
                let lead = if k % 20 >= 18 { "\n  " } else { "  " };
                s.push_str(&format!("{lead}# c{n}\n  "));
            }
        } else if t == "flow" || t == "segment" {
            s.push_str(if k % 3 == 0 { "# head\n" } else { "" });
        }
        s.push_str(t);
    }
    s.push('\n');
    s
}

pub fn source() -> impl Strategy<Value = String> {
    prop::collection::vec(item(), 1..3)
        .prop_map(|items| items.into_iter().flatten().collect::<Vec<_>>())
        .prop_flat_map(|tokens| {
            let n = tokens.len();
            (Just(tokens), prop::collection::vec(any::<u8>(), n))
        })
        .prop_map(|(tokens, seps)| render(&tokens, &seps))
}
