//! From source text to the AST: runs the pest grammar item by item (so one syntax error does
//! not hide the rest of the file), maps pest's errors to our own messages, and parses the
//! `{{ }}` interpolations inside templates. Parsing never panics and always terminates:
//! nesting depth and pest's call count are bounded. Each chunk is first given to the
//! hand-written parser in `fast` (same AST, much faster); pest runs on the chunks it does not
//! fully accept, so every syntax error still comes from here.

use super::ast::*;
use super::fast;
use super::format::TokenEnds;
use crate::diagnostic::{Diagnostic, FileId, Span};
use pest::iterators::Pair;
use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/aftercart.pest"]
struct Grammar;

type P<'a> = Pair<'a, Rule>;

/// Deeper nesting than this is refused up front: it is never needed by a real flow, and it
/// keeps the recursive descent from exhausting the stack on hostile input.
const MAX_DEPTH: usize = 64;
/// Longer operator chains (or more prefix operators) than this are refused: the tree would be
/// deep enough to overflow the stack when walked or dropped.
pub(super) const MAX_CHAIN: usize = 256;
/// pest's backtracking is bounded by a call limit so any input finishes in bounded time.
const CALL_LIMIT: usize = 5_000_000;
/// Chunks longer than this skip the fast path: pest's call limit could refuse one that the
/// fast path accepts, and pest must then say so. Measured (binary search on the limit): pest
/// 2.9 counts 4-20 calls per byte on real flows and at most 97 on dense nested brackets
/// (`[a,[a,[a,...`), so a chunk this long needs at most 1.6M of the 5M.
const MAX_FAST_CHUNK: usize = 16 * 1024;

/// Parse a whole file. Returns the items that parsed and a diagnostic per item that did not.
pub fn parse(file: FileId, text: &str) -> (File, Vec<Diagnostic>) {
    parse_chunks(file, text, true)
}

/// `parse` with pest on every chunk: what `parse` returned before the fast path, kept so that
/// tests can compare the two (`tests/parse_diff.rs`).
#[doc(hidden)]
pub fn parse_with_pest(file: FileId, text: &str) -> (File, Vec<Diagnostic>) {
    parse_chunks(file, text, false)
}

/// The fast path alone: `Some` only if it accepted every chunk (and the nesting check passed),
/// so tests can tell that it was used rather than fallen back from.
#[doc(hidden)]
pub fn parse_fast(file: FileId, text: &str) -> Option<File> {
    if depth_check(file, text).is_some() {
        return None;
    }
    let mut items = Vec::new();
    for (start, end) in chunks(text) {
        items.extend(fast::parse_chunk(file, text, start, end)?);
    }
    Some(File { items })
}

fn parse_chunks(file: FileId, text: &str, try_fast: bool) -> (File, Vec<Diagnostic>) {
    pest::set_call_limit(std::num::NonZeroUsize::new(CALL_LIMIT));
    let mut items = Vec::new();
    let mut diags = Vec::new();
    if let Some(d) = depth_check(file, text) {
        diags.push(d);
        return (File { items }, diags);
    }
    // Only pest's spans need trimming, so the token ends are found only if pest runs.
    let mut ends = None;
    for (start, end) in chunks(text) {
        // pest's call limit could refuse a long chunk that the fast path accepts; such a
        // chunk goes to pest, which then says what it always said.
        if try_fast && end - start <= MAX_FAST_CHUNK {
            if let Some(chunk_items) = fast::parse_chunk(file, text, start, end) {
                items.extend(chunk_items);
                continue;
            }
        }
        let ends = ends.get_or_insert_with(|| TokenEnds::new(text));
        let chunk = &text[start..end];
        match Grammar::parse(Rule::file, chunk) {
            Ok(mut pairs) => {
                let mut b = Builder {
                    file,
                    base: start,
                    diags: &mut diags,
                    ends,
                };
                let file_pair = pairs.next().expect("file rule");
                for p in file_pair.into_inner() {
                    match p.as_rule() {
                        Rule::segment_def => items.push(Item::Segment(b.segment(p))),
                        Rule::flow_def => items.push(Item::Flow(b.flow(p))),
                        Rule::plugin_def => items.push(Item::Plugin(b.plugin(p))),
                        _ => {}
                    }
                }
            }
            Err(e) => diags.push(syntax_error(file, start, chunk, e)),
        }
    }
    (File { items }, diags)
}

/// Split the text into top-level chunks, each starting at a line that begins (column 0) with
/// `flow` or `segment`. Leading comments stay with the chunk they precede. A syntax error is
/// then confined to one item and the others are still checked.
fn chunks(text: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![0];
    let mut offset = 0;
    let mut in_triple = false;
    let mut pending_comment_start: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let triples = line.matches("\"\"\"").count();
        if !in_triple {
            let is_item = ["flow ", "flow\t", "segment ", "segment\t"]
                .iter()
                .any(|k| line.starts_with(k));
            if is_item && offset > 0 {
                starts.push(pending_comment_start.unwrap_or(offset));
            }
            if line.starts_with('#') {
                pending_comment_start.get_or_insert(offset);
            } else if !line.trim().is_empty() {
                pending_comment_start = None;
            }
        }
        if triples % 2 == 1 {
            in_triple = !in_triple;
        }
        offset += line.len();
    }
    starts.dedup();
    let mut out = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(text.len());
        out.push((s, e));
    }
    out
}

fn depth_check(file: FileId, text: &str) -> Option<Diagnostic> {
    let mut depth = 0usize;
    // Bytes, not chars: brackets are ASCII and never part of a multi-byte character, and
    // decoding every character of every file was 2% of `check`.
    for (i, c) in text.bytes().enumerate() {
        match c {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(
                        Diagnostic::new(
                            "AC0001",
                            format!("nesting deeper than {MAX_DEPTH} levels"),
                        )
                        .primary(Span::new(file, i, i + 1), "too deeply nested")
                        .help("split the expression or the flow into named segments"),
                    );
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// What the user should read for a grammar rule in "expected ..." messages.
fn describe(rule: &Rule) -> Option<&'static str> {
    use Rule::*;
    Some(match rule {
        EOI => "end of file",
        segment_def | kw_segment => "`segment`",
        plugin_def | plugin_call | kw_plugin => "`plugin`",
        plugin_kind => "`segment` or `recommend`",
        plugin_opt | kw_fuel | kw_memory | kw_fallback => "`fuel`, `memory` or `fallback`",
        mem_size => "a size such as `16MiB`",
        flow_def | kw_flow => "`flow`",
        description | kw_description => "`description`",
        kind_decl | kw_kind => "`kind`",
        kind_name => "`transactional` or `marketing`",
        trigger_decl | kw_trigger => "`trigger`",
        where_clause | kw_where => "`where`",
        entry_decl | kw_entry => "`entry`",
        entry_once_per | entry_once_ever | kw_once => "`once`",
        entry_at_most | kw_at => "`at most once per`",
        entry_every | kw_every => "`every time`",
        kw_per => "`per`",
        kw_most => "`most`",
        kw_ever => "`ever`",
        kw_time => "`time`",
        exit_decl | exit_step | kw_exit => "`exit`",
        kw_when => "`when`",
        goal_decl | kw_goal => "`goal`",
        held_decl | kw_held => "`when held`",
        held_policy => "`defer` or `drop`",
        send_step | kw_send => "`send sms`",
        kw_sms => "`sms`",
        wait_fixed | wait_until | wait_for | wait_reply | kw_wait => "`wait`",
        kw_until => "`until`",
        kw_local => "`local`",
        kw_on => "`on`",
        kw_for => "`for`",
        kw_reply => "`reply`",
        day_spec => "a day (`weekdays`, `weekends`, `mon` ... `sun`)",
        within | kw_within => "`within`",
        arms => "`{` and the branches",
        arm | pattern | answers => "a branch (`\"answer\"`, `received`, `other` or `timeout`)",
        kw_received => "`received`",
        kw_timeout => "`timeout`",
        kw_other => "`other`",
        arm_body => "a step or a `{ ... }` block",
        block => "a `{ ... }` block",
        if_step | kw_if => "`if`",
        else_if | else_block | kw_else => "`else`",
        split_step | kw_split => "`split`",
        split_arm | percent => "a weight like `50%`",
        expr | or_expr | and_expr | not_expr | cmp_expr | add_expr | mul_expr | unary | postfix
        | paren | list | call | quantifier => "an expression",
        not_op => "`not`",
        cmp_op => "a comparison (`==`, `<`, `in`, `starts_with` ...)",
        add_op | mul_op | neg => "an operator",
        quant_kind => "`any`, `all` or `count`",
        ident | flow_root => "a name",
        field => "a field name",
        event_name => "an event name such as `order.created`",
        duration => "a duration such as `30m`, `2h`, `3d` or `2w`",
        time_of_day => "a time of day such as `10:00`",
        decimal | int => "a number",
        string | triple_str | dq_str | sq_str => "a string",
        bool => "`true` or `false`",
        filter => "a filter such as `| default('there')`",
        kw_and => "`and`",
        kw_or => "`or`",
        kw_in => "`in`",
        _ => return None,
    })
}

fn syntax_error(file: FileId, base: usize, chunk: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<&str> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            positives.iter().filter_map(describe).collect()
        }
        ErrorVariant::CustomError { .. } => vec![],
    };
    // Where a step could start, say "a step" rather than listing every step keyword.
    let step_words = ["`send sms`", "`wait`", "`if`", "`split`", "`exit`"];
    if step_words.iter().all(|w| expected.contains(w)) {
        expected.retain(|w| !step_words.contains(w));
        expected.insert(0, "a step (`send sms`, `wait`, `if`, `split`, `exit`)");
    }
    let mut seen = std::collections::HashSet::new();
    expected.retain(|w| seen.insert(*w));
    let found_len = chunk[pos..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum::<usize>()
        .max(chunk[pos..].chars().next().map(char::len_utf8).unwrap_or(0));
    let found = &chunk[pos..pos + found_len];
    let found_desc = if found.is_empty() {
        "end of file".to_string()
    } else {
        format!("`{found}`")
    };
    let span = Span::new(file, base + pos, base + pos + found_len);
    let expected_text = match expected.len() {
        0 => "something else".to_string(),
        1 => expected[0].to_string(),
        n => format!("{} or {}", expected[..n - 1].join(", "), expected[n - 1]),
    };
    let call_limit = matches!(&e.variant, ErrorVariant::CustomError { message } if message.contains("call limit"));
    if call_limit {
        return Diagnostic::new("AC0001", "this item is too complex to parse")
            .primary(span, "the parser gave up here")
            .help("simplify the expression or split it into named segments");
    }
    let mut d = Diagnostic::new(
        "AC0001",
        format!("expected {expected_text}, found {found_desc}"),
    )
    .primary(span, format!("expected {expected_text}"));
    if found == "=" && expected.iter().any(|w| w.contains("comparison")) {
        d = d.help("use `==` to compare");
    } else if found.chars().all(|c| c.is_ascii_digit())
        && !found.is_empty()
        && expected_text.contains("duration")
    {
        d = d.help("a duration needs a unit: `s`, `m`, `h`, `d` or `w` (e.g. `2d`)");
    }
    d
}

struct Builder<'d, 't> {
    file: FileId,
    base: usize,
    diags: &'d mut Vec<Diagnostic>,
    /// Token ends of the whole file (absolute offsets), to trim trailing trivia from spans.
    ends: &'t TokenEnds,
}

/// A keyword token (`kw_*` in the grammar). A match rather than the rule's name, which
/// allocated a string per child pair on the hot path.
fn is_kw(p: &P) -> bool {
    is_kw_rule(p.as_rule())
}

fn is_kw_rule(r: Rule) -> bool {
    matches!(
        r,
        Rule::kw_flow
            | Rule::kw_segment
            | Rule::kw_description
            | Rule::kw_kind
            | Rule::kw_trigger
            | Rule::kw_where
            | Rule::kw_entry
            | Rule::kw_once
            | Rule::kw_per
            | Rule::kw_at
            | Rule::kw_most
            | Rule::kw_ever
            | Rule::kw_every
            | Rule::kw_time
            | Rule::kw_exit
            | Rule::kw_when
            | Rule::kw_goal
            | Rule::kw_within
            | Rule::kw_held
            | Rule::kw_send
            | Rule::kw_sms
            | Rule::kw_wait
            | Rule::kw_until
            | Rule::kw_local
            | Rule::kw_on
            | Rule::kw_for
            | Rule::kw_reply
            | Rule::kw_received
            | Rule::kw_timeout
            | Rule::kw_other
            | Rule::kw_if
            | Rule::kw_else
            | Rule::kw_split
            | Rule::kw_and
            | Rule::kw_or
            | Rule::kw_in
            | Rule::kw_plugin
            | Rule::kw_fuel
            | Rule::kw_memory
            | Rule::kw_fallback
    )
}

/// The children of a pair, without keyword tokens.
fn kids<'a>(p: P<'a>) -> impl Iterator<Item = P<'a>> {
    p.into_inner().filter(|c| !is_kw(c))
}

impl Builder<'_, '_> {
    /// A pair's span without the whitespace and comments pest's implicit `~` consumed after
    /// its last token (a trailing repetition that fails still eats the trivia before it).
    fn span(&self, p: &P) -> Span {
        let s = p.as_span();
        let (start, end) = (self.base + s.start(), self.base + s.end());
        // The last token end at or before the pair's end (never before its start).
        Span::new(self.file, start, self.ends.trim(start, end))
    }

    fn ident(&self, p: P) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn segment(&mut self, p: P) -> SegmentDef {
        let span = self.span(&p);
        let mut it = kids(p);
        let name = self.ident(it.next().unwrap());
        let expr = self.expr(it.next().unwrap());
        SegmentDef { name, expr, span }
    }

    fn plugin(&mut self, p: P) -> PluginDef {
        let span = self.span(&p);
        let mut it = kids(p);
        let name = self.ident(it.next().unwrap());
        let path = self.str_lit(it.next().unwrap());
        let kind = it.next().unwrap().as_str().to_string();
        let mut def = plugin_def(name, path, kind);
        def.span = span;
        for opt in it {
            let v = kids(opt).next().unwrap();
            let key: &[u8] = match v.as_rule() {
                Rule::int => b"fuel",
                Rule::mem_size => b"memory",
                _ => b"fallback",
            };
            set_plugin_opt(&mut def, key, v.as_str());
        }
        def
    }

    fn flow(&mut self, p: P) -> FlowDef {
        let span = self.span(&p);
        let mut it = kids(p);
        let name = self.ident(it.next().unwrap());
        let members = it.map(|m| self.member(m)).collect();
        FlowDef {
            name,
            members,
            span,
        }
    }

    fn event_ref(&self, p: P) -> EventRef {
        EventRef {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn opt_where(&mut self, p: Option<P>) -> Option<Expr> {
        p.map(|w| {
            let e = kids(w).next().unwrap();
            self.expr(e)
        })
    }

    fn member(&mut self, p: P) -> Member {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::description => MemberKind::Description(self.str_lit(kids(p).next().unwrap())),
            Rule::kind_decl => {
                let k = kids(p).next().unwrap();
                MemberKind::Kind(if k.as_str() == "marketing" {
                    FlowKind::Marketing
                } else {
                    FlowKind::Transactional
                })
            }
            Rule::trigger_decl => {
                let mut it = kids(p);
                let event = self.event_ref(it.next().unwrap());
                MemberKind::Trigger {
                    event,
                    filter: self.opt_where(it.next()),
                }
            }
            Rule::entry_decl => {
                let r = kids(p).next().unwrap();
                MemberKind::Entry(match r.as_rule() {
                    Rule::entry_once_per => EntryRule::OncePer(self.expr(kids(r).next().unwrap())),
                    Rule::entry_at_most => {
                        EntryRule::AtMostOncePer(self.duration(kids(r).next().unwrap()))
                    }
                    Rule::entry_once_ever => EntryRule::OnceEver,
                    _ => EntryRule::EveryTime,
                })
            }
            Rule::exit_decl => {
                let mut it = kids(p);
                let event = self.event_ref(it.next().unwrap());
                MemberKind::Exit {
                    event,
                    filter: self.opt_where(it.next()),
                }
            }
            Rule::goal_decl => {
                let mut it = kids(p).peekable();
                let event = self.event_ref(it.next().unwrap());
                let filter = if it.peek().map(|x| x.as_rule()) == Some(Rule::where_clause) {
                    self.opt_where(it.next())
                } else {
                    None
                };
                let within = self.duration(it.next().unwrap());
                MemberKind::Goal {
                    event,
                    filter,
                    within,
                }
            }
            Rule::held_decl => {
                let k = kids(p).next().unwrap();
                MemberKind::Held(if k.as_str() == "drop" {
                    HeldPolicy::Drop
                } else {
                    HeldPolicy::Defer
                })
            }
            _ => MemberKind::Step(self.step(p)),
        };
        Member { kind, span }
    }

    fn step(&mut self, p: P) -> Step {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::send_step => StepKind::Send {
                template: self.template(kids(p).next().unwrap()),
            },
            Rule::wait_fixed => StepKind::Wait {
                duration: self.duration(kids(p).next().unwrap()),
            },
            Rule::wait_until => {
                let mut it = kids(p);
                let time = self.time(it.next().unwrap());
                let days = it.map(|d| self.ident(d)).collect();
                StepKind::WaitUntil { time, days }
            }
            Rule::wait_for => {
                let mut event = None;
                let mut filter = None;
                let mut within = None;
                let mut arms = vec![];
                for c in kids(p) {
                    match c.as_rule() {
                        Rule::event_name => event = Some(self.event_ref(c)),
                        Rule::where_clause => filter = self.opt_where(Some(c)),
                        Rule::within => within = Some(self.duration(kids(c).next().unwrap())),
                        Rule::arms => arms = self.arms(c),
                        _ => {}
                    }
                }
                StepKind::WaitFor {
                    event: event.unwrap(),
                    filter,
                    within,
                    arms,
                }
            }
            Rule::wait_reply => {
                let mut within = None;
                let mut arms = vec![];
                for c in kids(p) {
                    match c.as_rule() {
                        Rule::within => within = Some(self.duration(kids(c).next().unwrap())),
                        Rule::arms => arms = self.arms(c),
                        _ => {}
                    }
                }
                StepKind::WaitReply { within, arms }
            }
            Rule::if_step => {
                let mut it = kids(p);
                let cond = self.expr(it.next().unwrap());
                let block = self.block(it.next().unwrap());
                let mut branches = vec![(cond, block)];
                let mut otherwise = None;
                for c in it {
                    if c.as_rule() == Rule::else_if {
                        let mut e = kids(c);
                        let cond = self.expr(e.next().unwrap());
                        let block = self.block(e.next().unwrap());
                        branches.push((cond, block));
                    } else {
                        otherwise = Some(self.block(kids(c).next().unwrap()));
                    }
                }
                StepKind::If {
                    branches,
                    otherwise,
                }
            }
            Rule::split_step => {
                let arms = kids(p)
                    .map(|a| {
                        let aspan = self.span(&a);
                        let mut it = kids(a);
                        let w = it.next().unwrap();
                        let weight_span = self.span(&w);
                        let weight_text = w.as_str().to_string();
                        let weight = parse_percent(&weight_text);
                        let name = self.ident(it.next().unwrap());
                        let body = self.arm_body(it.next().unwrap());
                        SplitArm {
                            weight,
                            weight_text,
                            weight_span,
                            name,
                            body,
                            span: aspan,
                        }
                    })
                    .collect();
                StepKind::Split { arms }
            }
            _ => StepKind::Exit,
        };
        Step { kind, span }
    }

    fn arms(&mut self, p: P) -> Vec<Arm> {
        kids(p)
            .map(|a| {
                let span = self.span(&a);
                let mut it = kids(a);
                let pat = it.next().unwrap();
                let pattern_span = self.span(&pat);
                let inner = pat.into_inner().next().unwrap();
                let pattern = match inner.as_rule() {
                    Rule::kw_received => Pattern::Received,
                    Rule::kw_timeout => Pattern::Timeout,
                    Rule::kw_other => Pattern::Other,
                    _ => Pattern::Answers(kids(inner).map(|s| self.str_lit(s)).collect()),
                };
                let body = self.arm_body(it.next().unwrap());
                Arm {
                    pattern,
                    pattern_span,
                    body,
                    span,
                }
            })
            .collect()
    }

    fn arm_body(&mut self, p: P) -> Block {
        let inner = kids(p).next().unwrap();
        if inner.as_rule() == Rule::block {
            self.block(inner)
        } else {
            let step = self.step(inner);
            Block {
                span: step.span,
                steps: vec![step],
                braced: false,
            }
        }
    }

    fn block(&mut self, p: P) -> Block {
        let span = self.span(&p);
        Block {
            steps: kids(p).map(|s| self.step(s)).collect(),
            braced: true,
            span,
        }
    }

    fn duration(&mut self, p: P) -> DurationLit {
        let span = self.span(&p);
        let text = p.as_str().to_string();
        let secs = duration_secs(&text).unwrap_or_else(|| {
            self.diags.push(
                Diagnostic::new("AC0005", format!("duration `{text}` is too large"))
                    .primary(span, "does not fit in 64 bits"),
            );
            0
        });
        DurationLit { secs, text, span }
    }

    fn time(&self, p: P) -> TimeLit {
        time_lit(p.as_str(), self.span(&p))
    }

    fn str_lit(&mut self, p: P) -> StrLit {
        let span = self.span(&p);
        let inner = p.into_inner().next().unwrap();
        let raw = inner.as_str();
        let value = match inner.as_rule() {
            Rule::triple_str => dedent(&raw[3..raw.len() - 3]),
            _ => unescape(&raw[1..raw.len() - 1]),
        };
        StrLit { value, span }
    }

    fn template(&mut self, p: P) -> Template {
        let span = self.span(&p);
        let inner = p.into_inner().next().unwrap();
        let raw_all = inner.as_str();
        let triple = inner.as_rule() == Rule::triple_str;
        let q = if triple { 3 } else { 1 };
        let raw = &raw_all[q..raw_all.len() - q];
        let content_start = span.start + q;
        let Ok(parts) = template_parts(self.file, raw, content_start, triple, self);
        Template {
            parts,
            triple,
            raw: raw.to_string(),
            span,
        }
    }

    fn interp_pest(&mut self, inner: &str, abs: usize, span: Span) -> Option<TemplatePart> {
        match Grammar::parse(Rule::interp, inner) {
            Ok(mut pairs) => {
                let mut b = Builder {
                    file: self.file,
                    base: abs,
                    diags: self.diags,
                    // Inside a string the file's token ends say nothing (the string is one
                    // token); an interpolation's own spans need no trimming.
                    ends: &TokenEnds::empty(),
                };
                let mut it = pairs
                    .next()
                    .unwrap()
                    .into_inner()
                    .filter(|p| p.as_rule() != Rule::EOI);
                let expr = b.expr(it.next().unwrap());
                let filters = it
                    .map(|f| {
                        let fspan = b.span(&f);
                        let mut fi = kids(f);
                        let name = b.ident(fi.next().unwrap());
                        let args = fi.map(|a| b.expr(a)).collect();
                        Filter {
                            name,
                            args,
                            span: fspan,
                        }
                    })
                    .collect();
                Some(TemplatePart::Interp {
                    expr,
                    filters,
                    span,
                })
            }
            Err(e) => {
                let mut d = syntax_error(self.file, abs, inner, e);
                d.code = "AC0004";
                d.message = format!("in template interpolation: {}", d.message);
                if inner.contains('"') {
                    d = d.help("inside a \"...\" template, quote strings with single quotes: `default('there')`");
                }
                self.diags.push(d);
                None
            }
        }
    }

    fn expr(&mut self, p: P) -> Expr {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::expr => {
                let inner = p.into_inner().next().unwrap();
                self.expr(inner)
            }
            Rule::or_expr | Rule::and_expr | Rule::add_expr | Rule::mul_expr => {
                self.binary_chain(p)
            }
            Rule::not_expr => {
                let mut nots = 0;
                let mut rest = None;
                for c in p.into_inner() {
                    if c.as_rule() == Rule::not_op {
                        nots += 1;
                    } else {
                        rest = Some(c);
                    }
                }
                if nots > MAX_CHAIN {
                    self.too_long(span);
                    nots = 1;
                }
                let mut e = self.expr(rest.unwrap());
                for _ in 0..nots {
                    e = Expr {
                        kind: ExprKind::Unary(UnOp::Not, Box::new(e)),
                        span,
                    };
                }
                e
            }
            Rule::cmp_expr => {
                let mut it = p.into_inner();
                let lhs = self.expr(it.next().unwrap());
                match it.next() {
                    None => lhs,
                    Some(op) => {
                        let op = match op
                            .as_str()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .as_str()
                        {
                            "==" => BinOp::Eq,
                            "!=" => BinOp::Ne,
                            "<" => BinOp::Lt,
                            "<=" => BinOp::Le,
                            ">" => BinOp::Gt,
                            ">=" => BinOp::Ge,
                            "in" => BinOp::In,
                            "not in" => BinOp::NotIn,
                            "starts_with" => BinOp::StartsWith,
                            "ends_with" => BinOp::EndsWith,
                            _ => BinOp::Contains,
                        };
                        let rhs = self.expr(it.next().unwrap());
                        Expr {
                            kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                            span,
                        }
                    }
                }
            }
            Rule::unary => {
                let mut negs = 0;
                let mut rest = None;
                for c in p.into_inner() {
                    if c.as_rule() == Rule::neg {
                        negs += 1;
                    } else {
                        rest = Some(c);
                    }
                }
                if negs > MAX_CHAIN {
                    self.too_long(span);
                    negs = 1;
                }
                let mut e = self.expr(rest.unwrap());
                for _ in 0..negs {
                    e = Expr {
                        kind: ExprKind::Unary(UnOp::Neg, Box::new(e)),
                        span,
                    };
                }
                e
            }
            Rule::postfix => {
                let mut it = p.into_inner();
                let mut e = self.expr(it.next().unwrap());
                for (i, f) in it.enumerate() {
                    if i >= MAX_CHAIN {
                        self.too_long(span);
                        break;
                    }
                    let fid = self.ident(f);
                    let s = e.span.to(fid.span);
                    e = Expr {
                        kind: ExprKind::Field(Box::new(e), fid),
                        span: s,
                    };
                }
                e
            }
            Rule::paren => {
                let inner = self.expr(p.into_inner().next().unwrap());
                Expr {
                    kind: ExprKind::Paren(Box::new(inner)),
                    span,
                }
            }
            Rule::quantifier => {
                let mut it = kids(p);
                let q = it.next().unwrap();
                let quant = match q.as_str() {
                    "any" => Quant::Any,
                    "all" => Quant::All,
                    _ => Quant::Count,
                };
                let var = self.ident(it.next().unwrap());
                let list = Box::new(self.expr(it.next().unwrap()));
                let pred = Box::new(self.expr(it.next().unwrap()));
                Expr {
                    kind: ExprKind::Quant {
                        quant,
                        var,
                        list,
                        pred,
                    },
                    span,
                }
            }
            Rule::call => {
                let mut it = p.into_inner();
                let name = self.ident(it.next().unwrap());
                let args = it.map(|a| self.expr(a)).collect();
                Expr {
                    kind: ExprKind::Call(name, args),
                    span,
                }
            }
            Rule::plugin_call => {
                let id = self.ident(kids(p).next().unwrap());
                Expr {
                    kind: ExprKind::Plugin(id),
                    span,
                }
            }
            Rule::list => Expr {
                kind: ExprKind::List(p.into_inner().map(|a| self.expr(a)).collect()),
                span,
            },
            Rule::ident | Rule::flow_root => Expr {
                kind: ExprKind::Name(self.ident(p)),
                span,
            },
            Rule::duration => Expr {
                kind: ExprKind::Duration(self.duration(p)),
                span,
            },
            Rule::time_of_day => Expr {
                kind: ExprKind::TimeOfDay(self.time(p)),
                span,
            },
            Rule::decimal => Expr {
                kind: ExprKind::Decimal(p.as_str().to_string()),
                span,
            },
            Rule::int => match p.as_str().parse::<i64>() {
                Ok(n) => Expr {
                    kind: ExprKind::Int(n),
                    span,
                },
                Err(_) => {
                    self.diags.push(
                        Diagnostic::new("AC0005", format!("integer `{}` is too large", p.as_str()))
                            .primary(span, "does not fit in 64 bits"),
                    );
                    Expr {
                        kind: ExprKind::Int(0),
                        span,
                    }
                }
            },
            Rule::bool => Expr {
                kind: ExprKind::Bool(p.as_str() == "true"),
                span,
            },
            Rule::string => {
                let s = self.str_lit(p);
                Expr {
                    kind: ExprKind::Str(s.value),
                    span,
                }
            }
            r => unreachable!("unexpected rule in expression: {r:?}"),
        }
    }

    fn too_long(&mut self, span: Span) {
        self.diags.push(
            Diagnostic::new(
                "AC0001",
                format!("expression longer than {MAX_CHAIN} operators"),
            )
            .primary(span, "too long")
            .help("split the condition into named segments"),
        );
    }

    fn binary_chain(&mut self, p: P) -> Expr {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let mut lhs = self.expr(it.next().unwrap());
        let mut n = 0;
        while let Some(op) = it.next() {
            n += 1;
            if n > MAX_CHAIN {
                self.too_long(span);
                break;
            }
            let op = match op.as_str() {
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                "and" => BinOp::And,
                _ => BinOp::Or,
            };
            let rhs = self.expr(it.next().unwrap());
            let span = lhs.span.to(rhs.span);
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
        }
        lhs
    }
}

impl Interps for Builder<'_, '_> {
    type Stop = std::convert::Infallible;

    fn interp(
        &mut self,
        inner: &str,
        abs: usize,
        span: Span,
    ) -> Result<Option<TemplatePart>, Self::Stop> {
        Ok(self.interp_pest(inner, abs, span))
    }

    fn unclosed(&mut self, at: Span) -> Result<(), Self::Stop> {
        self.diags.push(
            Diagnostic::new("AC0004", "unclosed `{{` in template")
                .primary(at, "opened here")
                .help("close the interpolation with `}}`"),
        );
        Ok(())
    }
}

/// How `template_parts` handles interpolations: the pest builder parses each with pest and
/// reports problems; the fast parser parses it itself and stops (gives up) at any problem.
pub(super) trait Interps {
    type Stop;
    /// Parse the `{{ }}` whose content is `inner`, at absolute offset `abs`; `span` covers the
    /// braces. `Ok(None)`: reported, no part.
    fn interp(
        &mut self,
        inner: &str,
        abs: usize,
        span: Span,
    ) -> Result<Option<TemplatePart>, Self::Stop>;
    /// A `{{` without `}}` at `at`; the text after it stays text.
    fn unclosed(&mut self, at: Span) -> Result<(), Self::Stop>;
}

/// Split a template's raw content (starting at absolute offset `start`) into text and `{{ }}`
/// parts. Text is unescaped (and, for triple-quoted templates, dedented); interpolations are
/// parsed by `ip` with their own spans.
pub(super) fn template_parts<I: Interps>(
    file: FileId,
    raw: &str,
    start: usize,
    triple: bool,
    ip: &mut I,
) -> Result<Vec<TemplatePart>, I::Stop> {
    let mut parts = Vec::new();
    let mut pos = 0;
    let dedented_indent = if triple { common_indent(raw) } else { 0 };
    let mut text_start = 0;
    // Text runs up to each `{{` (the first one, as a character-by-character scan finds it).
    let mut text_end = raw.len();
    while let Some(open) = raw[pos..].find("{{").map(|n| pos + n) {
        let Some(close) = raw[open..].find("}}") else {
            ip.unclosed(Span::new(file, start + open, start + open + 2))?;
            // What the character scan did: the text before the `{{`, with a span to the end.
            text_end = open;
            break;
        };
        if open > text_start {
            parts.push(TemplatePart::Text {
                text: cook(&raw[text_start..open], triple),
                span: Span::new(file, start + text_start, start + open),
            });
        }
        let inner_start = open + 2;
        let inner = &raw[inner_start..open + close];
        let ispan = Span::new(file, start + open, start + open + close + 2);
        if let Some(part) = ip.interp(inner, start + inner_start, ispan)? {
            parts.push(part);
        }
        pos = open + close + 2;
        text_start = pos;
    }
    if text_end > text_start {
        parts.push(TemplatePart::Text {
            text: cook(&raw[text_start..text_end], triple),
            span: Span::new(file, start + text_start, start + raw.len()),
        });
    }
    if triple {
        dedent_parts(&mut parts, dedented_indent);
    }
    Ok(parts)
}

fn cook(t: &str, triple: bool) -> String {
    if triple {
        t.to_string()
    } else {
        unescape(t)
    }
}

/// A plugin without options (and without a span yet).
pub(super) fn plugin_def(name: Ident, path: StrLit, kind: String) -> PluginDef {
    PluginDef {
        name,
        path,
        kind,
        fuel: None,
        memory_bytes: None,
        fallback: None,
        span: Span::default(),
    }
}

/// Apply `fuel N`, `memory NKiB|NMiB` or `fallback BOOL` (`key` is the keyword, `value` the
/// token after it as the grammar matched it). Values that do not fit are left unset.
pub(super) fn set_plugin_opt(def: &mut PluginDef, key: &[u8], value: &str) {
    match key {
        b"fuel" => def.fuel = value.parse().ok(),
        b"memory" => {
            let (n, unit) = value.split_at(value.len() - 3);
            let mult = if unit == "MiB" { 1 << 20 } else { 1 << 10 };
            def.memory_bytes = n.parse::<usize>().ok().and_then(|n| n.checked_mul(mult));
        }
        _ => def.fallback = Some(value == "true"),
    }
}

/// A duration's length in seconds (`ms` rounds down); `None` if the number does not fit.
pub(super) fn duration_secs(text: &str) -> Option<i64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let n: i64 = text[..digits].parse().ok()?;
    Some(match &text[digits..] {
        "ms" => n / 1000,
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => n.saturating_mul(7 * 86_400),
    })
}

/// `HH:MM` as written; out-of-range values are the checker's to report (AC0309).
pub(super) fn time_lit(text: &str, span: Span) -> TimeLit {
    let (h, m) = text.split_once(':').unwrap_or(("0", "0"));
    TimeLit {
        hour: h.parse().unwrap_or(99),
        minute: m.parse().unwrap_or(99),
        span,
    }
}

pub(super) fn parse_percent(text: &str) -> u32 {
    let t = text.trim_end_matches('%');
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let whole: u32 = whole.parse().unwrap_or(u32::MAX / 200).min(1_000_000);
    let mut frac2: String = frac.chars().take(2).collect();
    while frac2.len() < 2 {
        frac2.push('0');
    }
    whole * 100 + frac2.parse::<u32>().unwrap_or(0)
}

/// Process `\"`, `\\`, `\n`, `\t`, `\'` escapes; an unknown escape keeps its backslash.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The smallest indentation of the non-blank lines after the first line break.
fn common_indent(raw: &str) -> usize {
    raw.split('\n')
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0)
}

/// Triple-quoted text: drop the line break after the opening quotes, the indentation common
/// to all lines, and the final line break with the closing quotes' indentation.
pub fn dedent(raw: &str) -> String {
    let indent = common_indent(raw);
    let mut parts = vec![TemplatePart::Text {
        text: raw.to_string(),
        span: Span::default(),
    }];
    dedent_parts(&mut parts, indent);
    match parts.into_iter().next() {
        Some(TemplatePart::Text { text, .. }) => text,
        _ => String::new(),
    }
}

fn dedent_parts(parts: &mut [TemplatePart], indent: usize) {
    let n = parts.len();
    for (i, p) in parts.iter_mut().enumerate() {
        if let TemplatePart::Text { text, .. } = p {
            let mut out = String::new();
            for (li, line) in text.split('\n').enumerate() {
                if li > 0 {
                    out.push('\n');
                    let ws = line.len() - line.trim_start_matches([' ', '\t']).len();
                    out.push_str(&line[ws.min(indent)..]);
                } else {
                    out.push_str(line);
                }
            }
            if i == 0 {
                if let Some(rest) = out.strip_prefix('\n') {
                    out = rest.to_string();
                } else if let Some(rest) = out.strip_prefix("\r\n") {
                    out = rest.to_string();
                }
            }
            if i == n - 1 {
                let trimmed = out.trim_end_matches([' ', '\t']);
                if let Some(t) = trimmed.strip_suffix('\n') {
                    out = t.to_string();
                }
            }
            *text = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_kw` lists the keyword rules by hand; it must agree with their `kw_` names.
    #[test]
    fn is_kw_covers_exactly_the_kw_rules() {
        for r in Rule::all_rules() {
            let named = format!("{r:?}").starts_with("kw_");
            let listed = is_kw_rule(*r);
            assert_eq!(named, listed, "{r:?}");
        }
    }

    fn first_template(src: &str) -> Result<String, String> {
        let (file, diags) = parse(FileId::default(), src);
        if let Some(d) = diags.first() {
            return Err(d.message.clone());
        }
        let Some(Item::Flow(f)) = file.items.first() else {
            return Err("no flow".into());
        };
        for m in &f.members {
            if let MemberKind::Step(Step {
                kind: StepKind::Send { template },
                ..
            }) = &m.kind
            {
                return Ok(template.raw.clone());
            }
        }
        Err("no send".into())
    }

    /// The string rules are written as runs between escapes (for speed); they must still
    /// take any escaped character, stop at the first unescaped quote, and refuse line breaks.
    #[test]
    fn string_escapes_and_ends() {
        let t = |body: &str| first_template(&format!("flow f {{\n  send sms {body}\n}}\n"));
        assert_eq!(t(r#""plain""#).unwrap(), "plain");
        assert_eq!(t(r#""a \" b""#).unwrap(), r#"a \" b"#);
        assert!(t(r#""a \\" b""#).is_err());
        assert_eq!(t(r#""ends \\""#).unwrap(), r#"ends \\"#);
        assert_eq!(
            t(r#""x {{ a('q\'s') }} y""#).unwrap(),
            r#"x {{ a('q\'s') }} y"#
        );
        assert!(t("\"broken\nline\"").is_err());
        assert!(t("\"unterminated").is_err());
        assert!(t(r#""\"#).is_err());
    }
}
