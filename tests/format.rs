//! The formatter's contract: idempotent, meaning-preserving (same AST up to spans and the
//! documented header order), comments never dropped; checked on the example flows, a golden
//! messy input, and random flows rendered with random layout.

use aftercart::diagnostic::{FileId, Span};
use aftercart::syntax::ast::*;
use aftercart::syntax::format_source;
use proptest::prelude::*;

// ---- AST comparison without spans ------------------------------------------------------------

fn z(s: &mut Span) {
    *s = Span::default();
}

fn norm_ident(i: &mut Ident) {
    z(&mut i.span);
}

fn norm_dur(d: &mut DurationLit) {
    z(&mut d.span);
}

fn norm_expr(e: &mut Expr) {
    z(&mut e.span);
    match &mut e.kind {
        ExprKind::Duration(d) => norm_dur(d),
        ExprKind::TimeOfDay(t) => z(&mut t.span),
        ExprKind::Name(i) | ExprKind::Plugin(i) => norm_ident(i),
        ExprKind::Field(b, f) => {
            norm_expr(b);
            norm_ident(f);
        }
        ExprKind::Call(n, args) => {
            norm_ident(n);
            args.iter_mut().for_each(norm_expr);
        }
        ExprKind::Unary(_, x) | ExprKind::Paren(x) => norm_expr(x),
        ExprKind::Binary(_, l, r) => {
            norm_expr(l);
            norm_expr(r);
        }
        ExprKind::Quant {
            var, list, pred, ..
        } => {
            norm_ident(var);
            norm_expr(list);
            norm_expr(pred);
        }
        ExprKind::List(xs) => xs.iter_mut().for_each(norm_expr),
        ExprKind::Int(_) | ExprKind::Decimal(_) | ExprKind::Str(_) | ExprKind::Bool(_) => {}
    }
}

fn norm_opt(e: &mut Option<Expr>) {
    if let Some(e) = e {
        norm_expr(e);
    }
}

fn norm_block(b: &mut Block) {
    z(&mut b.span);
    b.steps.iter_mut().for_each(norm_step);
}

fn norm_step(s: &mut Step) {
    z(&mut s.span);
    match &mut s.kind {
        StepKind::Send { template } => {
            z(&mut template.span);
            // A triple-quoted template is re-indented: its raw text changes, its value (the
            // dedented parts) must not.
            if template.triple {
                template.raw.clear();
            }
            for p in &mut template.parts {
                match p {
                    TemplatePart::Text { span, .. } => z(span),
                    TemplatePart::Interp {
                        expr,
                        filters,
                        span,
                    } => {
                        z(span);
                        norm_expr(expr);
                        for f in filters {
                            z(&mut f.span);
                            norm_ident(&mut f.name);
                            f.args.iter_mut().for_each(norm_expr);
                        }
                    }
                }
            }
        }
        StepKind::Wait { duration } => norm_dur(duration),
        StepKind::WaitUntil { time, days } => {
            z(&mut time.span);
            days.iter_mut().for_each(norm_ident);
        }
        StepKind::WaitFor {
            event,
            filter,
            within,
            arms,
        } => {
            z(&mut event.span);
            norm_opt(filter);
            within.iter_mut().for_each(norm_dur);
            arms.iter_mut().for_each(norm_arm);
        }
        StepKind::WaitReply { within, arms } => {
            within.iter_mut().for_each(norm_dur);
            arms.iter_mut().for_each(norm_arm);
        }
        StepKind::If {
            branches,
            otherwise,
        } => {
            for (c, b) in branches {
                norm_expr(c);
                norm_block(b);
            }
            otherwise.iter_mut().for_each(norm_block);
        }
        StepKind::Split { arms } => {
            for a in arms {
                z(&mut a.span);
                z(&mut a.weight_span);
                norm_ident(&mut a.name);
                norm_block(&mut a.body);
            }
        }
        StepKind::Exit => {}
    }
}

fn norm_arm(a: &mut Arm) {
    z(&mut a.span);
    z(&mut a.pattern_span);
    if let Pattern::Answers(xs) = &mut a.pattern {
        xs.iter_mut().for_each(|s| z(&mut s.span));
    }
    norm_block(&mut a.body);
}

fn header_rank(m: &MemberKind) -> u8 {
    match m {
        MemberKind::Description(_) => 0,
        MemberKind::Kind(_) => 1,
        MemberKind::Trigger { .. } => 2,
        MemberKind::Entry(_) => 3,
        MemberKind::Exit { .. } => 4,
        MemberKind::Goal { .. } => 5,
        MemberKind::Held(_) => 6,
        MemberKind::Step(_) => 7,
    }
}

/// The file with every span zeroed, triple-quoted raw text dropped, and each flow's members
/// in the canonical order (the one reordering the formatter makes; stable, so steps and
/// repeated `exit when` keep their order).
fn normalise(mut f: File) -> File {
    for item in &mut f.items {
        match item {
            Item::Segment(s) => {
                z(&mut s.span);
                norm_ident(&mut s.name);
                norm_expr(&mut s.expr);
            }
            Item::Plugin(p) => {
                z(&mut p.span);
                norm_ident(&mut p.name);
                z(&mut p.path.span);
            }
            Item::Flow(fl) => {
                z(&mut fl.span);
                norm_ident(&mut fl.name);
                fl.members.sort_by_key(|m| header_rank(&m.kind));
                for m in &mut fl.members {
                    z(&mut m.span);
                    match &mut m.kind {
                        MemberKind::Description(d) => z(&mut d.span),
                        MemberKind::Trigger { event, filter }
                        | MemberKind::Exit { event, filter } => {
                            z(&mut event.span);
                            norm_opt(filter);
                        }
                        MemberKind::Goal {
                            event,
                            filter,
                            within,
                        } => {
                            z(&mut event.span);
                            norm_opt(filter);
                            norm_dur(within);
                        }
                        MemberKind::Entry(EntryRule::OncePer(e)) => norm_expr(e),
                        MemberKind::Entry(EntryRule::AtMostOncePer(d)) => norm_dur(d),
                        MemberKind::Step(s) => norm_step(s),
                        MemberKind::Entry(_) | MemberKind::Kind(_) | MemberKind::Held(_) => {}
                    }
                }
            }
        }
    }
    f
}

fn parse_ok(text: &str) -> File {
    let (f, d) = aftercart::syntax::parse(FileId(0), text);
    assert!(d.is_empty(), "parse errors {d:?} in:\n{text}");
    f
}

/// The comments of a text, by the same rules as the language (strings skipped).
fn comments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['#', '"', '\'']) {
        let tail = &rest[i..];
        if tail.starts_with('#') {
            let end = tail.find('\n').unwrap_or(tail.len());
            out.push(tail[..end].trim_end().to_string());
            rest = &tail[end..];
        } else if let Some(body) = tail.strip_prefix("\"\"\"") {
            rest = body.find("\"\"\"").map_or("", |e| &body[e + 3..]);
        } else {
            let q = tail.as_bytes()[0];
            let mut j = 1;
            while j < tail.len() && tail.as_bytes()[j] != q && tail.as_bytes()[j] != b'\n' {
                j += if tail.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            rest = &tail[(j + 1).min(tail.len())..];
        }
    }
    out
}

/// The three properties: idempotent, same AST, every comment kept (as often as it occurs).
fn check(src: &str) -> String {
    let out = format_source(src).unwrap_or_else(|d| panic!("format refused {d:?}:\n{src}"));
    let again =
        format_source(&out).unwrap_or_else(|d| panic!("output does not parse {d:?}:\n{out}"));
    assert_eq!(again, out, "not idempotent; input:\n{src}");
    assert_eq!(
        normalise(parse_ok(&out)),
        normalise(parse_ok(src)),
        "AST changed; input:\n{src}\noutput:\n{out}"
    );
    let mut before = comments(src);
    let mut after = comments(&out);
    before.sort();
    after.sort();
    assert_eq!(
        after, before,
        "comments changed; input:\n{src}\noutput:\n{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.ends_with(' ') && !l.trim().is_empty()),
        "trailing spaces:\n{out}"
    );
    out
}

// ---- the example flows -----------------------------------------------------------------------

fn example_flows() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn example_flows_are_stable() {
    for (_, src) in example_flows() {
        check(&src);
    }
}

#[test]
fn example_flows_are_canonical() {
    let known_off: [&str; 0] = [];
    for (name, src) in example_flows() {
        let out = format_source(&src).unwrap();
        if known_off.contains(&name.as_str()) {
            assert_ne!(out, src, "{name} is canonical now: drop it from known_off");
        } else {
            assert_eq!(out, src, "{name} is not in canonical form");
        }
    }
}

// ---- fixed inputs ----------------------------------------------------------------------------

const MESSY: &str = r#"# Shared segments.
segment  big_spender=profile.total_spent>=500.00 or(profile.orders_count>5)   # money is decimal
segment   picky = not  profile.tags contains "vip"and any( item in event.line_items :item.sku starts_with 'SKIN-' )
# between items


flow   demo{   # the demo flow
  wait 1h
  kind marketing
  # why it is here
  description "Demo: \"quoted\" text"
  when held drop
  trigger order.created where   big_spender  # only big ones
  goal order.created
       within 7d
  exit when order.cancelled
  entry once per event.order_id
  exit when refund.created where event.amount > (1 + 2) * 3



  # a lone thought before the reply

  wait reply within 2d {
    "yes"|'y' => send sms 'Great, {{ profile.first_name | default("you") }}!'
    other => {
      send sms "Sorry?"   # trailing
      exit
    }
        timeout=>exit
  }
  wait for shipment.delivered where event.order_id == flow.entry.order_id # odd place
    within 21d { received => wait until 9:30 local on mon,fri
      timeout => if vip { exit } else if picky {   send sms """
            Hi {{ profile.first_name }},
              a two-line message.
            """ } else { }
  }
  split { 50% a => exit 12.5% bb => { wait 1d   exit } 37.5% c => send sms "c" }
  # last words
}
# the end
"#;

const MESSY_FORMATTED: &str = r#"# Shared segments.
segment big_spender = profile.total_spent >= 500.00 or (profile.orders_count > 5)  # money is decimal

segment picky = not profile.tags contains "vip" and any(item in event.line_items: item.sku starts_with 'SKIN-')

# between items

flow demo {  # the demo flow
  # why it is here
  description "Demo: \"quoted\" text"
  kind marketing
  trigger order.created where big_spender  # only big ones
  entry once per event.order_id
  exit when order.cancelled
  exit when refund.created where event.amount > (1 + 2) * 3
  goal order.created within 7d
  when held drop

  wait 1h

  # a lone thought before the reply

  wait reply within 2d {
    "yes" | 'y' => send sms 'Great, {{ profile.first_name | default("you") }}!'
    other       => {
      send sms "Sorry?"  # trailing
      exit
    }
    timeout     => exit
  }
  # odd place
  wait for shipment.delivered where event.order_id == flow.entry.order_id within 21d {
    received => wait until 9:30 local on mon, fri
    timeout  => if vip {
      exit
    } else if picky {
      send sms """
        Hi {{ profile.first_name }},
          a two-line message.
      """
    } else {}
  }
  split {
    50% a    => exit
    12.5% bb => {
      wait 1d
      exit
    }
    37.5% c  => send sms "c"
  }
  # last words
}
# the end
"#;

#[test]
fn golden_messy_input() {
    let out = check(MESSY);
    assert_eq!(out, MESSY_FORMATTED, "got:\n{out}");
}

#[test]
fn every_comment_survives() {
    let src = "# top\nflow f { # open\n  trigger a.b where # in expr\n    x == 1 # after\n  if x { # brace\n    exit # t\n    # end of block\n  } # between\n  else { # else brace\n  }\n  wait for a.b { # arms\n    received # mid\n      => exit\n    # end of arms\n  }\n  # end of flow\n} # after flow\n# eof\n";
    let out = check(src);
    for c in comments(src) {
        assert!(out.contains(&c), "lost {c:?}:\n{out}");
    }
}

#[test]
fn refuses_broken_input() {
    assert!(format_source("flow f { wait }").is_err());
    assert!(format_source("flow f { send sms \"{{ x + }}\" }").is_err());
}

#[test]
fn blank_lines_between_steps_collapse_to_one() {
    let out = check("flow f {\n  wait 1h\n\n\n\n  wait 2h\n  wait 3h\n}\n");
    assert_eq!(out, "flow f {\n  wait 1h\n\n  wait 2h\n  wait 3h\n}\n");
}

#[test]
fn operators_get_single_spaces_and_user_parens_stay() {
    let out = check("segment s = -(a+b)*c-d/ -e == ((f)) or not not g");
    assert_eq!(
        out,
        "segment s = -(a + b) * c - d / -e == ((f)) or not not g\n"
    );
}

#[test]
fn empty_and_comment_only_files() {
    assert_eq!(check(""), "");
    assert_eq!(check("\n\n"), "");
    assert_eq!(
        check("# just a note\n\n\n# and another"),
        "# just a note\n\n# and another\n"
    );
}

#[test]
fn header_members_move_with_their_comments() {
    let src = "flow f {\n  wait 1h\n  # about the goal\n  goal a.b within 1d  # soon\n  # about the kind\n  kind marketing\n  send sms \"x\"\n}\n";
    let out = check(src);
    assert_eq!(
        out,
        "flow f {\n  # about the kind\n  kind marketing\n  # about the goal\n  goal a.b within 1d  # soon\n\n  wait 1h\n  send sms \"x\"\n}\n"
    );
}

#[test]
fn triple_quoted_text_is_reindented_without_changing_its_value() {
    let src = "flow f {\n  description \"\"\"\nTwo\n  lines\n\"\"\"\n  wait reply {\n    other => send sms \"\"\"\n\t\tHi {{ shop.name }},\n\t\t  tabbed\n\n\t\tbye\n\t\"\"\"\n  }\n}\n";
    let out = check(src);
    assert_eq!(
        out,
        "flow f {\n  description \"\"\"\n    Two\n      lines\n  \"\"\"\n\n  wait reply {\n    other => send sms \"\"\"\n      Hi {{ shop.name }},\n        tabbed\n\n      bye\n    \"\"\"\n  }\n}\n"
    );
}

#[test]
fn crlf_input_gives_lf_output() {
    let src = "# a\r\nflow f {\r\n  kind marketing  # b\r\n\r\n  wait 1h\r\n}\r\n";
    let out = check(src);
    assert_eq!(
        out,
        "# a\nflow f {\n  kind marketing  # b\n\n  wait 1h\n}\n"
    );
}

// ---- random flows: generated by `flowgen` (shared with tests/parse_diff.rs) ----------------

mod flowgen;
use flowgen::source;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_flows_format_stably(src in source()) {
        check(&src);
    }
}
