//! The formatter behind `aftercart fmt`: one canonical layout for `.flow` files, comments kept,
//! idempotent. It prints the AST and takes everything the AST does not carry (comments, blank
//! lines, the exact spelling of strings and literals) from the source text through the spans.
//!
//! Comments are not in the AST, so they are found by a lexical scan of the text and handed out
//! as the printer walks the tree in source order: a comment goes to the next node that starts
//! after it (printed on its own lines before that node), or, when it sits on the line where a
//! node ends, after that node as a trailing comment. Every comment is printed exactly once.

use super::ast::*;
use crate::diagnostic::{Diagnostic, FileId};

/// Format a whole file. Err when the source has syntax errors (formatting refuses broken input;
/// return the diagnostics).
pub fn format_source(text: &str) -> Result<String, Vec<Diagnostic>> {
    let (file, diags) = super::parse(FileId(0), text);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(format_file(&file, text))
}

/// Format a parsed file with the comments found in `text`.
pub fn format_file(file: &File, text: &str) -> String {
    let lexed = scan(text);
    let used = vec![false; lexed.comments.len()];
    let mut p = Printer {
        text,
        comments: lexed.comments,
        used,
        token_ends: lexed.token_ends,
        out: String::new(),
    };
    p.file(file);
    p.out
}

const INDENT: &str = "  ";

/// A `#` comment: its byte range (trailing whitespace excluded) and its text.
struct Comment {
    start: usize,
    end: usize,
    text: String,
}

struct Lexed {
    comments: Vec<Comment>,
    /// The end offset of every character that is neither whitespace nor part of a comment
    /// (a string counts as one token), ascending. Used to find where a node really ends:
    /// a pest span may run on over whitespace and comments skipped after its last token.
    token_ends: Vec<usize>,
}

/// Where tokens end in a text (comments and whitespace excluded): a bit per byte offset, for
/// the parser to trim a pest span that runs on over trivia. A bit set rather than the sorted
/// offsets [`Lexed::token_ends`] (one `usize` per character, searched per span): the answer is
/// the nearest set bit at or below a span's end, a few bytes of trivia away.
pub(crate) struct TokenEnds {
    bits: Vec<u64>,
    /// The first token end (`usize::MAX` when there is none).
    first: usize,
}

impl TokenEnds {
    pub(crate) fn new(text: &str) -> Self {
        let mut bits = vec![0u64; text.len() / 64 + 1];
        let mut first = usize::MAX;
        lex(
            text,
            |_, _| {},
            |e| {
                bits[e / 64] |= 1 << (e % 64);
                first = first.min(e);
            },
        );
        TokenEnds { bits, first }
    }

    /// No token ends at all (the trimming is then a no-op).
    pub(crate) fn empty() -> Self {
        TokenEnds {
            bits: Vec::new(),
            first: usize::MAX,
        }
    }

    fn is_end(&self, e: usize) -> bool {
        self.bits
            .get(e / 64)
            .is_some_and(|w| w & (1 << (e % 64)) != 0)
    }

    /// The last token end at or before `end`, but not before `start`; `end` itself when no
    /// token ends at or before it. (What a binary search over the sorted ends gave.)
    pub(crate) fn trim(&self, start: usize, end: usize) -> usize {
        if self.first > end {
            return end;
        }
        let mut e = end;
        while e > start {
            if self.is_end(e) {
                return e;
            }
            e -= 1;
        }
        start
    }
}

/// The lexical scan: comments and token ends, skipping string literals the way the grammar
/// reads them (`"""..."""`, then `"..."` and `'...'` with backslash escapes, single line).
fn scan(text: &str) -> Lexed {
    let mut comments = Vec::new();
    let mut token_ends = Vec::new();
    lex(
        text,
        |start, end| {
            comments.push(Comment {
                start,
                end,
                text: text[start..end].to_string(),
            })
        },
        |e| token_ends.push(e),
    );
    Lexed {
        comments,
        token_ends,
    }
}

/// The scan itself: calls `comment(start, end)` for each comment (trailing whitespace
/// excluded) and `token_end(offset)` for each token end, in ascending order.
fn lex(text: &str, mut comment: impl FnMut(usize, usize), mut token_end: impl FnMut(usize)) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                let eol = text[i..].find('\n').map_or(text.len(), |n| i + n);
                let body = text[i..eol].trim_end();
                comment(i, i + body.len());
                i = eol;
            }
            b'"' if text[i..].starts_with("\"\"\"") => {
                i = text[i + 3..]
                    .find("\"\"\"")
                    .map_or(text.len(), |n| i + 3 + n + 3);
                token_end(i);
            }
            q @ (b'"' | b'\'') => {
                let mut j = i + 1;
                while j < b.len() {
                    match b[j] {
                        b'\\' => j += 2,
                        b'\n' => break,
                        c if c == q => {
                            j += 1;
                            break;
                        }
                        _ => j += 1,
                    }
                }
                // An escape at the very end could step past the text; clamp to a char boundary.
                i = j.min(b.len());
                while !text.is_char_boundary(i) {
                    i += 1;
                }
                token_end(i);
            }
            _ => {
                i += text[i..].chars().next().map_or(1, char::len_utf8);
                token_end(i);
            }
        }
    }
}

struct Printer<'a> {
    text: &'a str,
    comments: Vec<Comment>,
    used: Vec<bool>,
    token_ends: Vec<usize>,
    out: String,
}

/// Canonical position of a header member; steps come after all of them.
fn header_rank(m: &MemberKind) -> Option<u8> {
    Some(match m {
        MemberKind::Description(_) => 0,
        MemberKind::Kind(_) => 1,
        MemberKind::Trigger { .. } => 2,
        MemberKind::Entry(_) => 3,
        MemberKind::Exit { .. } => 4,
        MemberKind::Goal { .. } => 5,
        MemberKind::Held(_) => 6,
        MemberKind::Step(_) => return None,
    })
}

/// Binding strength for parenthesisation, on the scale of `BinOp::precedence`: `not` binds
/// looser than comparisons, unary minus tighter than `*`, primaries and fields tightest.
fn expr_prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary(op, ..) => op.precedence(),
        ExprKind::Unary(UnOp::Not, _) => 3,
        ExprKind::Unary(UnOp::Neg, _) => 7,
        _ => 8,
    }
}

impl Printer<'_> {
    // ---- source helpers ------------------------------------------------------------------

    /// The source text of a span, if the span fits the text (hand-built ASTs may not).
    fn src(&self, start: usize, end: usize) -> Option<&str> {
        if start <= end {
            self.text.get(start..end)
        } else {
            None
        }
    }

    /// Where the last real token at or before `end` ends: the node's end without any
    /// whitespace or comments the grammar skipped at the end of its span.
    fn eff_end(&self, end: usize) -> usize {
        let n = self.token_ends.partition_point(|&e| e <= end);
        if n == 0 {
            end
        } else {
            self.token_ends[n - 1]
        }
    }

    /// The first `{` at or after `from` that is outside strings and comments.
    fn open_brace(&self, from: usize) -> usize {
        let b = self.text.as_bytes();
        let mut i = from;
        while i < b.len() {
            match b[i] {
                b'{' => return i,
                b'#' => i = self.text[i..].find('\n').map_or(b.len(), |n| i + n),
                b'"' | b'\'' => {
                    // Jump to the end of the string token that starts here.
                    let n = self.token_ends.partition_point(|&e| e <= i);
                    i = self
                        .token_ends
                        .get(n)
                        .copied()
                        .unwrap_or(b.len())
                        .max(i + 1);
                }
                _ => i += 1,
            }
        }
        from
    }

    /// The byte offset of a block's closing `}` (the block's span ends just after it).
    fn close_brace(&self, span_end: usize) -> usize {
        self.eff_end(span_end).saturating_sub(1)
    }

    /// Did the user leave a blank line between `a` and `b`?
    fn blank_between(&self, a: usize, b: usize) -> bool {
        a < b && self.src(a, b).is_some_and(|s| s.matches('\n').count() >= 2)
    }

    /// Is there a blank line in the whitespace right before `pos`? Looks only at that gap,
    /// so whatever stood before it in the source (maybe a header member printed elsewhere)
    /// does not count.
    fn blank_before(&self, pos: usize) -> bool {
        let Some(before) = self.text.get(..pos) else {
            return false;
        };
        let gap = before.len() - before.trim_end_matches([' ', '\t', '\r', '\n']).len();
        before[pos - gap..].matches('\n').count() >= 2
    }

    // ---- comment hand-out ----------------------------------------------------------------

    /// Take every comment not yet printed that starts in `[lo, hi)`.
    fn take_before(&mut self, lo: usize, hi: usize) -> Vec<usize> {
        let mut taken = Vec::new();
        for (i, c) in self.comments.iter().enumerate() {
            if !self.used[i] && c.start >= lo && c.start < hi {
                self.used[i] = true;
                taken.push(i);
            }
        }
        taken
    }

    fn has_unused_before(&self, hi: usize) -> bool {
        self.comments
            .iter()
            .zip(&self.used)
            .any(|(c, &u)| !u && c.start < hi)
    }

    /// The comment on the same line right after `end`, if any (not taken).
    fn peek_trailing(&self, end: usize) -> Option<usize> {
        let i = self.comments.iter().position(|c| c.start >= end)?;
        let gap = self.src(end, self.comments[i].start)?;
        (!self.used[i] && gap.bytes().all(|b| b == b' ' || b == b'\t')).then_some(i)
    }

    /// Print the comment on the line where a node ends after it, two spaces apart.
    fn trailing(&mut self, end: usize) {
        if let Some(i) = self.peek_trailing(end) {
            self.used[i] = true;
            self.out.push_str("  ");
            self.out.push_str(&self.comments[i].text);
        }
    }

    /// Print comments on their own lines; a blank line the user left after one is kept (one).
    /// Comments moved out of the node (they start inside it) follow the node's own leading
    /// comments without blank lines: the blank lines between them were inside an expression.
    fn emit_comments(&mut self, idxs: &[usize], level: usize, node_start: Option<usize>) {
        for (k, &i) in idxs.iter().enumerate() {
            self.indent(level);
            self.out.push_str(&self.comments[i].text);
            self.out.push('\n');
            let c = &self.comments[i];
            if node_start.is_some_and(|n| c.start > n) {
                continue;
            }
            let next = idxs.get(k + 1).map(|&j| self.comments[j].start);
            let next = match (next, node_start) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if next.is_some_and(|n| self.blank_between(c.end, n)) {
                self.out.push('\n');
            }
        }
    }

    /// The start of what comes first: the node or its first leading comment.
    fn first_start(&self, lead: &[usize], node_start: usize) -> usize {
        lead.first()
            .map_or(node_start, |&i| self.comments[i].start.min(node_start))
    }

    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str(INDENT);
        }
    }

    // ---- items ---------------------------------------------------------------------------

    fn file(&mut self, f: &File) {
        for (n, item) in f.items.iter().enumerate() {
            let head_end = match item {
                Item::Segment(s) => self.eff_end(s.span.end),
                Item::Plugin(p) => self.eff_end(p.span.end),
                Item::Flow(fl) => self.open_brace(fl.name.span.end),
            };
            let lead = self.take_before(0, head_end);
            if n > 0 {
                self.out.push('\n');
            }
            self.emit_comments(&lead, 0, Some(item.span().start));
            match item {
                Item::Segment(s) => {
                    self.out.push_str("segment ");
                    self.out.push_str(&s.name.name);
                    self.out.push_str(" = ");
                    let e = self.expr(&s.expr);
                    self.out.push_str(&e);
                    self.trailing(head_end);
                    self.out.push('\n');
                }
                Item::Plugin(p) => {
                    self.out.push_str("plugin ");
                    self.out.push_str(&p.name.name);
                    self.out.push_str(" = ");
                    let path = self
                        .string_src(p.path.span.start, p.path.span.end)
                        .map_or_else(|| quote(&p.path.value), str::to_string);
                    self.out.push_str(&path);
                    self.out.push_str(" kind ");
                    self.out.push_str(&p.kind);
                    if let Some(f) = p.fuel {
                        self.out.push_str(&format!(" fuel {f}"));
                    }
                    if let Some(m) = p.memory_bytes {
                        if m % (1 << 20) == 0 {
                            self.out.push_str(&format!(" memory {}MiB", m >> 20));
                        } else {
                            self.out.push_str(&format!(" memory {}KiB", m >> 10));
                        }
                    }
                    if let Some(b) = p.fallback {
                        self.out.push_str(&format!(" fallback {b}"));
                    }
                    self.trailing(head_end);
                    self.out.push('\n');
                }
                Item::Flow(fl) => self.flow(fl),
            }
        }
        let rest = self.take_before(0, usize::MAX);
        if let (false, Some(&first)) = (f.items.is_empty(), rest.first()) {
            if self.blank_before(self.comments[first].start) {
                self.out.push('\n');
            }
        }
        self.emit_comments(&rest, 0, None);
    }

    fn flow(&mut self, f: &FlowDef) {
        let brace = self.open_brace(f.name.span.end);
        let close = self.close_brace(f.span.end);
        self.out.push_str("flow ");
        self.out.push_str(&f.name.name);
        if f.members.is_empty()
            && self.peek_trailing(brace + 1).is_none()
            && !self.has_unused_before(close)
        {
            self.out.push_str(" {}");
            self.trailing(close + 1);
            self.out.push('\n');
            return;
        }
        self.out.push_str(" {");
        self.trailing(brace + 1);
        self.out.push('\n');

        // Each member owns the comments from the end of the previous member (in source
        // order) up to its own end, so moving header members up keeps their comments.
        let mut region_start = brace + 1;
        let mut regions = Vec::with_capacity(f.members.len());
        for m in &f.members {
            regions.push(region_start);
            let end = self.eff_end(m.span.end);
            region_start = self
                .peek_trailing(end)
                .map_or(end, |i| self.comments[i].end);
        }
        let mut header: Vec<(u8, usize)> = f
            .members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| header_rank(&m.kind).map(|r| (r, i)))
            .collect();
        header.sort_by_key(|&(r, i)| (r, i));
        for &(_, i) in &header {
            let m = &f.members[i];
            let end = self.eff_end(m.span.end);
            let lead = self.take_before(regions[i], end);
            self.emit_comments(&lead, 1, Some(m.span.start));
            self.indent(1);
            self.member(&m.kind);
            self.trailing(end);
            self.out.push('\n');
        }
        let steps: Vec<&Step> = f
            .members
            .iter()
            .filter_map(|m| match &m.kind {
                MemberKind::Step(s) => Some(s),
                _ => None,
            })
            .collect();
        if !header.is_empty() && (!steps.is_empty() || self.has_unused_before(close)) {
            self.out.push('\n');
        }
        self.steps(&steps, 1, close);
        self.out.push('}');
        self.trailing(close + 1);
        self.out.push('\n');
    }

    fn member(&mut self, m: &MemberKind) {
        let s = match m {
            MemberKind::Description(d) => {
                // A triple-quoted description is laid out like a template at header level.
                let lit = self.str_lit(d);
                match lit
                    .strip_prefix("\"\"\"")
                    .and_then(|l| l.strip_suffix("\"\"\""))
                {
                    Some(raw) if lit.len() >= 6 => match reindent(raw, 1) {
                        Some(r) => format!("description \"\"\"{r}\"\"\""),
                        None => format!("description {lit}"),
                    },
                    _ => format!("description {lit}"),
                }
            }
            MemberKind::Kind(FlowKind::Transactional) => "kind transactional".into(),
            MemberKind::Kind(FlowKind::Marketing) => "kind marketing".into(),
            MemberKind::Trigger { event, filter } => {
                format!("trigger {}{}", event.name, self.where_clause(filter))
            }
            MemberKind::Entry(EntryRule::OncePer(e)) => format!("entry once per {}", self.expr(e)),
            MemberKind::Entry(EntryRule::AtMostOncePer(d)) => {
                format!("entry at most once per {}", d.text)
            }
            MemberKind::Entry(EntryRule::OnceEver) => "entry once ever".into(),
            MemberKind::Entry(EntryRule::EveryTime) => "entry every time".into(),
            MemberKind::Exit { event, filter } => {
                format!("exit when {}{}", event.name, self.where_clause(filter))
            }
            MemberKind::Goal {
                event,
                filter,
                within,
            } => {
                format!(
                    "goal {}{} within {}",
                    event.name,
                    self.where_clause(filter),
                    within.text
                )
            }
            MemberKind::Held(HeldPolicy::Defer) => "when held defer".into(),
            MemberKind::Held(HeldPolicy::Drop) => "when held drop".into(),
            // Steps are printed by `steps`; never reached through the header.
            MemberKind::Step(_) => String::new(),
        };
        self.out.push_str(&s);
    }

    fn where_clause(&self, filter: &Option<Expr>) -> String {
        filter
            .as_ref()
            .map_or(String::new(), |e| format!(" where {}", self.expr(e)))
    }

    // ---- steps ---------------------------------------------------------------------------

    /// Steps one per line at `level`, then the comments left before the block's `}`.
    fn steps(&mut self, steps: &[&Step], level: usize, close: usize) {
        for (n, s) in steps.iter().enumerate() {
            self.step_line(s, level, n > 0);
        }
        let rest = self.take_before(0, close);
        if let (false, Some(&first)) = (steps.is_empty(), rest.first()) {
            if self.blank_before(self.comments[first].start) {
                self.out.push('\n');
            }
        }
        self.emit_comments(&rest, level, None);
        self.indent(level.saturating_sub(1));
    }

    /// Where the comments that must go before a step end: comments inside a step's head
    /// (its condition, event filter ...) cannot be placed there, so they move above it.
    fn head_end(&self, s: &Step) -> usize {
        match &s.kind {
            StepKind::WaitFor { .. } | StepKind::WaitReply { .. } | StepKind::Split { .. } => {
                self.open_brace(s.span.start)
            }
            StepKind::If { branches, .. } => {
                branches.first().map_or(s.span.start, |(_, b)| b.span.start)
            }
            _ => self.eff_end(s.span.end),
        }
    }

    /// One step on its own line(s); `after_step`: a blank line the user left before it is kept.
    fn step_line(&mut self, s: &Step, level: usize, after_step: bool) {
        let lead = self.take_before(0, self.head_end(s));
        if after_step && self.blank_before(self.first_start(&lead, s.span.start)) {
            self.out.push('\n');
        }
        self.emit_comments(&lead, level, Some(s.span.start));
        self.indent(level);
        self.step(s, level);
        self.trailing(self.eff_end(s.span.end));
        self.out.push('\n');
    }

    /// Print a step from the current column; its inner lines are indented from `level`.
    fn step(&mut self, s: &Step, level: usize) {
        match &s.kind {
            StepKind::Send { template } => {
                let t = self.template(template, level);
                self.out.push_str("send sms ");
                self.out.push_str(&t);
            }
            StepKind::Wait { duration } => {
                self.out.push_str("wait ");
                self.out.push_str(&duration.text);
            }
            StepKind::WaitUntil { time, days } => {
                let t = self.time(time);
                self.out.push_str("wait until ");
                self.out.push_str(&t);
                self.out.push_str(" local");
                if !days.is_empty() {
                    let days: Vec<&str> = days.iter().map(|d| d.name.as_str()).collect();
                    self.out.push_str(" on ");
                    self.out.push_str(&days.join(", "));
                }
            }
            StepKind::WaitFor {
                event,
                filter,
                within,
                arms,
            } => {
                let w = self.where_clause(filter);
                self.out.push_str("wait for ");
                self.out.push_str(&event.name);
                self.out.push_str(&w);
                if let Some(d) = within {
                    self.out.push_str(" within ");
                    self.out.push_str(&d.text);
                }
                self.out.push(' ');
                self.arms(arms, level, s);
            }
            StepKind::WaitReply { within, arms } => {
                self.out.push_str("wait reply");
                if let Some(d) = within {
                    self.out.push_str(" within ");
                    self.out.push_str(&d.text);
                }
                self.out.push(' ');
                self.arms(arms, level, s);
            }
            StepKind::If {
                branches,
                otherwise,
            } => {
                for (n, (cond, block)) in branches.iter().enumerate() {
                    let c = self.expr(cond);
                    self.out.push_str(if n == 0 { "if " } else { " else if " });
                    self.out.push_str(&c);
                    self.out.push(' ');
                    self.block(block, level);
                }
                if let Some(block) = otherwise {
                    self.out.push_str(" else ");
                    self.block(block, level);
                }
            }
            StepKind::Split { arms } => {
                let pats: Vec<String> = arms
                    .iter()
                    .map(|a| format!("{} {}", a.weight_text, a.name.name))
                    .collect();
                let rows: Vec<(String, &Block, usize, usize)> = arms
                    .iter()
                    .zip(pats)
                    .map(|(a, p)| (p, &a.body, a.span.start, a.span.end))
                    .collect();
                self.out.push_str("split ");
                self.arm_table(&rows, level, s);
            }
            StepKind::Exit => self.out.push_str("exit"),
        }
    }

    fn arms(&mut self, arms: &[Arm], level: usize, s: &Step) {
        let rows: Vec<(String, &Block, usize, usize)> = arms
            .iter()
            .map(|a| (self.pattern(&a.pattern), &a.body, a.span.start, a.span.end))
            .collect();
        self.arm_table(&rows, level, s);
    }

    fn pattern(&self, p: &Pattern) -> String {
        match p {
            Pattern::Received => "received".into(),
            Pattern::Timeout => "timeout".into(),
            Pattern::Other => "other".into(),
            Pattern::Answers(a) => a
                .iter()
                .map(|s| self.str_lit(s))
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    /// `{ pattern => body ... }` with the `=>` aligned: patterns padded to the widest.
    fn arm_table(&mut self, rows: &[(String, &Block, usize, usize)], level: usize, s: &Step) {
        let brace = self.open_brace(s.span.start);
        let close = self.close_brace(s.span.end);
        if rows.is_empty()
            && self.peek_trailing(brace + 1).is_none()
            && !self.has_unused_before(close)
        {
            self.out.push_str("{}");
            return;
        }
        self.out.push('{');
        self.trailing(brace + 1);
        self.out.push('\n');
        let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        for (pat, body, start, end) in rows {
            let inline = !body.braced && body.steps.len() == 1;
            let head = if inline {
                self.head_end(&body.steps[0])
            } else {
                body.span.start
            };
            let lead = self.take_before(0, head);
            self.emit_comments(&lead, level + 1, Some(*start));
            self.indent(level + 1);
            self.out.push_str(pat);
            for _ in pat.chars().count()..width {
                self.out.push(' ');
            }
            self.out.push_str(" => ");
            if inline {
                self.step(&body.steps[0], level + 1);
            } else {
                self.block(body, level + 1);
            }
            self.trailing(self.eff_end(*end));
            self.out.push('\n');
        }
        let rest = self.take_before(0, close);
        self.emit_comments(&rest, level + 1, None);
        self.indent(level);
        self.out.push('}');
    }

    /// A braced block from the current column: `{`, its steps one level in, `}` at `level`.
    fn block(&mut self, b: &Block, level: usize) {
        let close = self.close_brace(b.span.end);
        if b.steps.is_empty()
            && self.peek_trailing(b.span.start + 1).is_none()
            && !self.has_unused_before(close)
        {
            self.out.push_str("{}");
            return;
        }
        self.out.push('{');
        self.trailing(b.span.start + 1);
        self.out.push('\n');
        let steps: Vec<&Step> = b.steps.iter().collect();
        self.steps(&steps, level + 1, close);
        self.out.push('}');
    }

    // ---- literals ------------------------------------------------------------------------

    /// A string literal as written (quotes, escapes, layout); re-quoted only when the span
    /// does not point at a string (an AST built by hand).
    fn str_lit(&self, s: &StrLit) -> String {
        self.string_src(s.span.start, s.span.end)
            .map_or_else(|| quote(&s.value), str::to_string)
    }

    fn string_src(&self, start: usize, end: usize) -> Option<&str> {
        let src = self.src(start, end)?;
        let ok = src.len() >= 2
            && (src.starts_with('"') || src.starts_with('\''))
            && src.ends_with(&src[..1]);
        ok.then_some(src)
    }

    /// A template: `raw` verbatim with its quote style; a triple-quoted one re-indented so its
    /// lines sit one level inside the step and its closing quotes line up with the step.
    fn template(&self, t: &Template, level: usize) -> String {
        if !t.triple {
            let q = self
                .string_src(t.span.start, t.span.end)
                .map_or("\"", |s| &s[..1]);
            return format!("{q}{}{q}", t.raw);
        }
        let raw = reindent(&t.raw, level).unwrap_or_else(|| t.raw.clone());
        format!("\"\"\"{raw}\"\"\"")
    }

    fn time(&self, t: &TimeLit) -> String {
        match self.src(t.span.start, t.span.end) {
            Some(s) if s.contains(':') && s.bytes().all(|b| b == b':' || b.is_ascii_digit()) => {
                s.to_string()
            }
            _ => format!("{:02}:{:02}", t.hour, t.minute),
        }
    }

    // ---- expressions ---------------------------------------------------------------------

    /// An expression with single spaces around binary operators. User parentheses are
    /// `Paren` nodes and kept; others are added only where the tree would not re-parse.
    fn expr(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::Int(n) => n.to_string(),
            ExprKind::Decimal(d) => d.clone(),
            ExprKind::Str(v) => self
                .string_src(e.span.start, e.span.end)
                .map_or_else(|| quote(v), str::to_string),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Plugin(id) => format!("plugin {}", id.name),
            ExprKind::Duration(d) => d.text.clone(),
            ExprKind::TimeOfDay(t) => self.time(t),
            ExprKind::Name(id) => id.name.clone(),
            ExprKind::Field(base, f) => format!("{}.{}", self.operand(base, 8), f.name),
            ExprKind::Call(name, args) => format!("{}({})", name.name, self.list(args)),
            ExprKind::Unary(UnOp::Not, x) => format!("not {}", self.operand(x, 3)),
            ExprKind::Unary(UnOp::Neg, x) => format!("-{}", self.operand(x, 7)),
            ExprKind::Binary(op, l, r) => {
                let p = op.precedence();
                // Comparisons do not chain, so neither side may be a bare comparison; the
                // other operators associate to the left.
                let (lp, rp) = if p == 4 { (5, 5) } else { (p, p + 1) };
                format!(
                    "{} {} {}",
                    self.operand(l, lp),
                    op.as_str(),
                    self.operand(r, rp)
                )
            }
            ExprKind::Quant {
                quant,
                var,
                list,
                pred,
            } => {
                let q = match quant {
                    Quant::Any => "any",
                    Quant::All => "all",
                    Quant::Count => "count",
                };
                format!(
                    "{q}({} in {}: {})",
                    var.name,
                    self.expr(list),
                    self.expr(pred)
                )
            }
            ExprKind::List(items) => format!("[{}]", self.list(items)),
            ExprKind::Paren(x) => format!("({})", self.expr(x)),
        }
    }

    /// An operand that must bind at least as tightly as `min`.
    fn operand(&self, e: &Expr, min: u8) -> String {
        let s = self.expr(e);
        if expr_prec(e) < min {
            format!("({s})")
        } else {
            s
        }
    }

    fn list(&self, items: &[Expr]) -> String {
        items
            .iter()
            .map(|x| self.expr(x))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A double-quoted literal for a value with no source text.
fn quote(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Re-indent the raw text of a triple-quoted template: content lines move so that their common
/// indentation is one level inside the step, keeping relative indentation, and a closing line
/// of only whitespace lines the quotes up with the step. Dedent then gives the same value.
/// None (keep the text as written) when that cannot be guaranteed.
fn reindent(raw: &str, level: usize) -> Option<String> {
    if !raw.contains('\n') {
        return None;
    }
    // The parser dedents text parts only; a line break inside `{{ }}` would be measured but
    // not moved, so such templates are left alone.
    let mut rest = raw;
    while let Some(open) = rest.find("{{") {
        let close = rest[open..].find("}}").map_or(rest.len(), |c| open + c);
        if rest[open..close].contains('\n') {
            return None;
        }
        rest = &rest[(close + 2).min(rest.len())..];
    }
    let ws = |l: &str| l.len() - l.trim_start_matches([' ', '\t']).len();
    let lines: Vec<&str> = raw.split('\n').collect();
    let content: Vec<&str> = lines[1..]
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let indent = content.iter().map(|l| ws(l)).min()?;
    let inner = INDENT.repeat(level + 1);
    let mut out = lines[0].to_string();
    for (k, line) in lines.iter().enumerate().skip(1) {
        out.push('\n');
        let tail = &line[ws(line).min(indent)..];
        if k == lines.len() - 1 && line.trim_matches([' ', '\t']).is_empty() {
            out.push_str(&INDENT.repeat(level));
        } else if !tail.is_empty() {
            out.push_str(&inner);
            out.push_str(tail);
        }
    }
    (super::parser::dedent(raw) == super::parser::dedent(&out)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TokenEnds::trim` answers what a binary search over the sorted token ends answered.
    #[test]
    fn token_end_bits_agree_with_sorted_ends() {
        let text = "# lead\nflow f { # c \"x\n  send sms \"a \\\" {{ b }}\"  \n  wait 2d # t\n\n  \
                    if x == 'y' { exit }\n  send sms \"\"\"\n  hi\n  \"\"\"\n}\n  ";
        let ends = scan(text).token_ends;
        let bits = TokenEnds::new(text);
        for end in 0..=text.len() {
            for start in 0..=end {
                let i = ends.partition_point(|&e| e <= end);
                let want = if i > 0 { ends[i - 1].max(start) } else { end };
                assert_eq!(bits.trim(start, end), want.min(end), "{start}..{end}");
            }
        }
        assert_eq!(TokenEnds::empty().trim(3, 9), 9);
    }
}
