//! The hand-written parser for the success path: a byte-level recursive descent over one chunk
//! that builds exactly the AST (nodes and spans) the pest grammar and builder build, and gives
//! up (`None`) on anything it does not fully accept, so that pest then runs and reports.
//!
//! Why it exists: pest's own machinery (call counting, stack probes, snapshots, a new parse per
//! `{{ }}`) was over half of `check` (docs/performance.md). Why it can be this simple: it only
//! has to be right on input that parses, and giving up is always correct. It follows
//! `grammar/aftercart.pest` rule by rule; the comments say where pest's behaviour is subtle.
//!
//! Trivia (blanks and `#` comments) is skipped eagerly after every token, which is what pest's
//! implicit `~` does between the elements of a non-atomic rule. A node's span ends at the end of
//! its last token (`tok_end`): that is what the pest path's trimming gives in a file. Inside an
//! interpolation the pest path does not trim, so there a few spans keep the trivia pest skipped
//! before a trailing optional part that matched nothing (see `rule_end`).
//!
//! Where pest, on a failure after some tokens, would backtrack and could still succeed, this
//! parser either does the same cheaply (a lookahead) or gives up. Everywhere else a failure
//! after the first token dooms the whole item in pest too: no rule can continue with what is
//! left (an operator, `,`, a keyword that only starts its own construct), as noted per case.

use super::ast::*;
use super::parser::{
    dedent, duration_secs, parse_percent, plugin_def, set_plugin_opt, template_parts, time_lit,
    unescape, Interps, MAX_CHAIN,
};
use crate::diagnostic::{FileId, Span};

/// Recursion (expressions and steps) deeper than this gives up; the pest path then reports
/// or refuses it. `depth_check` already refuses more than 64 brackets in a row.
const MAX_NEST: usize = 128;

/// Parse the chunk `text[start..end]` (one or more top-level items) as pest's `file` rule
/// would. `None`: not fully accepted, run pest.
pub(super) fn parse_chunk(file: FileId, text: &str, start: usize, end: usize) -> Option<Vec<Item>> {
    let mut p = Fast::new(file, text, start, end, false, 0);
    p.skip();
    let mut items = Vec::new();
    while p.pos < p.end {
        items.push(p.item()?);
    }
    Some(items)
}

/// The three string rules, which the AST tells apart.
#[derive(Clone, Copy, PartialEq)]
enum Quote {
    Triple,
    Double,
    Single,
}

struct Fast<'a> {
    src: &'a str,
    b: &'a [u8],
    /// Next byte to read (absolute offset in the file); trivia after a token is already skipped.
    pos: usize,
    /// End of the chunk or interpolation: lookaheads see the end of input there, as pest does.
    end: usize,
    /// End of the last token consumed.
    tok_end: usize,
    file: FileId,
    /// Inside a `{{ }}`: spans are pest's untrimmed ones (see `rule_end`).
    interp: bool,
    depth: usize,
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The grammar's `keyword` rule, for a whole word.
fn is_keyword(w: &[u8]) -> bool {
    matches!(
        w,
        b"flow"
            | b"segment"
            | b"description"
            | b"kind"
            | b"trigger"
            | b"where"
            | b"entry"
            | b"once"
            | b"per"
            | b"at"
            | b"most"
            | b"ever"
            | b"every"
            | b"exit"
            | b"when"
            | b"goal"
            | b"within"
            | b"held"
            | b"send"
            | b"sms"
            | b"wait"
            | b"until"
            | b"local"
            | b"on"
            | b"for"
            | b"reply"
            | b"received"
            | b"timeout"
            | b"other"
            | b"if"
            | b"else"
            | b"split"
            | b"and"
            | b"or"
            | b"not"
            | b"in"
            | b"true"
            | b"false"
            | b"plugin"
    )
}

impl<'a> Fast<'a> {
    fn new(file: FileId, src: &'a str, pos: usize, end: usize, interp: bool, depth: usize) -> Self {
        Fast {
            src,
            b: src.as_bytes(),
            pos,
            end,
            tok_end: pos,
            file,
            interp,
            depth,
        }
    }

    // ---- bytes and tokens ----------------------------------------------------------------

    /// The byte at `i`, or 0 past the end (0 matches nothing the grammar accepts).
    fn at(&self, i: usize) -> u8 {
        if i < self.end {
            self.b[i]
        } else {
            0
        }
    }

    fn peek(&self) -> u8 {
        self.at(self.pos)
    }

    /// Past the trivia at `i`: `WHITESPACE` and `COMMENT` (to the line break, which is then
    /// whitespace), as pest's implicit skip.
    fn skip_from(&self, mut i: usize) -> usize {
        while i < self.end {
            match self.b[i] {
                b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                b'#' => {
                    i = self.src[i..self.end].find('\n').map_or(self.end, |n| i + n);
                }
                _ => break,
            }
        }
        i
    }

    fn skip(&mut self) {
        self.pos = self.skip_from(self.pos);
    }

    /// Consume a token of `len` bytes and the trivia after it.
    fn bump(&mut self, len: usize) {
        self.pos += len;
        self.tok_end = self.pos;
        self.skip();
    }

    /// Length of `[A-Za-z_][A-Za-z0-9_]*` at `i` (0 if none).
    fn word_len(&self, i: usize) -> usize {
        let c = self.at(i);
        if !(c.is_ascii_alphabetic() || c == b'_') {
            return 0;
        }
        let mut j = i + 1;
        while is_ident_char(self.at(j)) {
            j += 1;
        }
        j - i
    }

    /// The word at `i` (empty if none). A keyword rule (`kw_x = "x" ~ !ident_char`) matches
    /// exactly when the whole word is `x`.
    fn word_at(&self, i: usize) -> &'a [u8] {
        let b = self.b;
        &b[i..i + self.word_len(i)]
    }

    fn digits(&self, i: usize) -> usize {
        let mut j = i;
        while self.at(j).is_ascii_digit() {
            j += 1;
        }
        j - i
    }

    fn eat_kw(&mut self, kw: &[u8]) -> bool {
        let ok = self.word_at(self.pos) == kw;
        if ok {
            self.bump(kw.len());
        }
        ok
    }

    /// An atomic `("a" | "b") ~ !ident_char` rule: the word, if it is one of `words`.
    fn one_of<T: Copy>(&mut self, words: &[(&[u8], T)]) -> Option<T> {
        let w = self.word_at(self.pos);
        let (_, v) = words.iter().find(|(k, _)| *k == w)?;
        self.bump(w.len());
        Some(*v)
    }

    fn need_kw(&mut self, kw: &[u8]) -> Option<()> {
        self.eat_kw(kw).then_some(())
    }

    fn eat(&mut self, c: u8) -> bool {
        let ok = self.peek() == c;
        if ok {
            self.bump(1);
        }
        ok
    }

    fn need(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn need_arrow(&mut self) -> Option<()> {
        (self.peek() == b'=' && self.at(self.pos + 1) == b'>').then(|| self.bump(2))
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    /// The span of a node that started at `start` and ends with the last token consumed.
    fn node(&self, start: usize) -> Span {
        self.span(start, self.tok_end)
    }

    /// Where pest ends a rule whose last token ended at `re`. In a file the pest path trims
    /// trailing trivia, so that is `re`. Inside an interpolation it does not: a rule written
    /// `a ~ b?` or `a ~ b*` keeps the trivia pest skipped after `a` when `b` matched nothing
    /// (the skip sits between the sequence's elements and is not undone); `exact` says the
    /// rule's last part did match.
    fn rule_end(&self, re: usize, exact: bool) -> usize {
        if self.interp && !exact {
            self.skip_from(re)
        } else {
            re
        }
    }

    fn deeper(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_NEST).then_some(())
    }

    fn ident(&mut self) -> Option<Ident> {
        let n = self.word_len(self.pos);
        if n == 0 || is_keyword(&self.b[self.pos..self.pos + n]) {
            return None;
        }
        Some(self.take_ident(n))
    }

    /// The next `n` bytes as a name, without the keyword test.
    fn take_ident(&mut self, n: usize) -> Ident {
        let s = self.pos;
        let name = self.src[s..s + n].to_string();
        self.bump(n);
        Ident {
            name,
            span: self.span(s, s + n),
        }
    }

    /// `event_name`: names joined by dots, no blanks, no keyword test.
    fn event_name(&mut self) -> Option<EventRef> {
        let s = self.pos;
        let mut j = s + self.word_len(s);
        if j == s {
            return None;
        }
        while self.at(j) == b'.' {
            let n = self.word_len(j + 1);
            if n == 0 {
                break;
            }
            j += 1 + n;
        }
        let name = self.src[s..j].to_string();
        self.bump(j - s);
        Some(EventRef {
            name,
            span: self.span(s, j),
        })
    }

    /// `duration` at `pos`: its length, or 0. Units are tried in the grammar's order (`ms`
    /// before `m`) and the unit must not run on into a name (`5mx` is not `5m`).
    fn duration_len(&self) -> usize {
        let s = self.pos;
        let d = self.digits(s);
        if d == 0 {
            return 0;
        }
        let u = s + d;
        let unit = match (self.at(u), self.at(u + 1)) {
            (b'm', b's') => 2,
            (b's' | b'm' | b'h' | b'd' | b'w', _) => 1,
            _ => return 0,
        };
        if is_ident_char(self.at(u + unit)) {
            0
        } else {
            d + unit
        }
    }

    /// A duration of `len` bytes at `pos`; `None` when it does not fit (pest path: AC0005).
    fn take_duration(&mut self, len: usize) -> Option<DurationLit> {
        let s = self.pos;
        let text = &self.src[s..s + len];
        let secs = duration_secs(text)?;
        self.bump(len);
        Some(DurationLit {
            secs,
            text: text.to_string(),
            span: self.span(s, s + len),
        })
    }

    fn duration(&mut self) -> Option<DurationLit> {
        match self.duration_len() {
            0 => None,
            n => self.take_duration(n),
        }
    }

    /// `time_of_day`: one or two digits (greedy: `123:00` fails), `:`, two digits, no third.
    fn time_len(&self) -> usize {
        let s = self.pos;
        let h = self.digits(s).min(2);
        let c = s + h;
        let ok = h > 0
            && self.at(c) == b':'
            && self.at(c + 1).is_ascii_digit()
            && self.at(c + 2).is_ascii_digit()
            && !self.at(c + 3).is_ascii_digit();
        if ok {
            h + 3
        } else {
            0
        }
    }

    fn time(&mut self) -> Option<TimeLit> {
        let n = self.time_len();
        if n == 0 {
            return None;
        }
        let s = self.pos;
        self.bump(n);
        Some(time_lit(&self.src[s..s + n], self.span(s, s + n)))
    }

    /// `string` at `pos`: its length and kind. A `"""` without a closing one is a `""` as in
    /// the grammar (triple first, then double-quoted).
    fn string_len(&self) -> Option<(usize, Quote)> {
        let s = self.pos;
        let q = self.peek();
        if q == b'"' && self.at(s + 1) == b'"' && self.at(s + 2) == b'"' {
            if let Some(n) = self.src[s + 3..self.end].find("\"\"\"") {
                return Some((n + 6, Quote::Triple));
            }
        }
        if q != b'"' && q != b'\'' {
            return None;
        }
        let mut j = s + 1;
        while j < self.end {
            match self.b[j] {
                c if c == q => {
                    let kind = if q == b'"' {
                        Quote::Double
                    } else {
                        Quote::Single
                    };
                    return Some((j + 1 - s, kind));
                }
                b'\n' => return None,
                // An escape takes any character, a line break or quote included; stepping one
                // byte past it is enough, as a UTF-8 continuation byte is none of `"'\\\n`.
                b'\\' if j + 1 < self.end => j += 2,
                b'\\' => return None,
                _ => j += 1,
            }
        }
        None
    }

    fn str_lit(&mut self) -> Option<StrLit> {
        let (n, quote) = self.string_len()?;
        let s = self.pos;
        let raw = &self.src[s..s + n];
        let value = if quote == Quote::Triple {
            dedent(&raw[3..n - 3])
        } else {
            unescape(&raw[1..n - 1])
        };
        self.bump(n);
        Some(StrLit {
            value,
            span: self.span(s, s + n),
        })
    }

    // ---- items and members ---------------------------------------------------------------

    fn item(&mut self) -> Option<Item> {
        let s = self.pos;
        if self.eat_kw(b"segment") {
            let name = self.ident()?;
            self.need(b'=')?;
            let expr = self.expr()?;
            Some(Item::Segment(SegmentDef {
                name,
                expr,
                span: self.node(s),
            }))
        } else if self.eat_kw(b"flow") {
            let name = self.ident()?;
            self.need(b'{')?;
            let mut members = Vec::new();
            // A member that fails leaves `member*` before it, where only `}` could follow.
            while self.peek() != b'}' {
                members.push(self.member()?);
            }
            self.bump(1);
            Some(Item::Flow(FlowDef {
                name,
                members,
                span: self.node(s),
            }))
        } else if self.eat_kw(b"plugin") {
            self.plugin(s).map(Item::Plugin)
        } else {
            None
        }
    }

    fn plugin(&mut self, s: usize) -> Option<PluginDef> {
        let name = self.ident()?;
        self.need(b'=')?;
        let path = self.str_lit()?;
        self.need_kw(b"kind")?;
        let kind = self.word_at(self.pos);
        if kind != b"segment" && kind != b"recommend" {
            return None;
        }
        let kind = String::from_utf8_lossy(kind).into_owned();
        self.bump(kind.len());
        let mut def = plugin_def(name, path, kind);
        // An option keyword without its value leaves `plugin_opt*` before the keyword, where
        // no item starts: the chunk fails in pest too.
        loop {
            let key = self.word_at(self.pos);
            let v = self.skip_from(self.pos + key.len());
            let d = self.digits(v);
            let len = match key {
                b"fuel" if d > 0 && !is_ident_char(self.at(v + d)) => d,
                b"memory"
                    if d > 0 && matches!(self.b.get(v + d..v + d + 3), Some(b"KiB" | b"MiB")) =>
                {
                    d + 3
                }
                b"fallback" => match self.word_at(v) {
                    w @ (b"true" | b"false") => w.len(),
                    _ => return None,
                },
                b"fuel" | b"memory" => return None,
                _ => break,
            };
            if v + len > self.end {
                return None;
            }
            set_plugin_opt(&mut def, key, &self.src[v..v + len]);
            self.bump(key.len());
            self.bump(len);
        }
        def.span = self.node(s);
        Some(def)
    }

    /// `where_clause?`. A `where` whose expression fails leaves the rule before `where`,
    /// where no member or arm can start: the item fails in pest too.
    fn opt_where(&mut self) -> Option<Option<Expr>> {
        if self.eat_kw(b"where") {
            Some(Some(self.expr()?))
        } else {
            Some(None)
        }
    }

    fn member(&mut self) -> Option<Member> {
        let s = self.pos;
        let w = self.word_at(s);
        let kind = match w {
            b"description" => {
                self.bump(w.len());
                MemberKind::Description(self.str_lit()?)
            }
            b"kind" => {
                self.bump(w.len());
                MemberKind::Kind(self.one_of(&[
                    (b"marketing", FlowKind::Marketing),
                    (b"transactional", FlowKind::Transactional),
                ])?)
            }
            b"trigger" => {
                self.bump(w.len());
                let event = self.event_name()?;
                let filter = self.opt_where()?;
                MemberKind::Trigger { event, filter }
            }
            b"entry" => {
                self.bump(w.len());
                MemberKind::Entry(self.entry_rule()?)
            }
            // `exit when EVENT` (not `when held`) is `exit_decl`; a bare `exit` is the step,
            // and then a `when held` member may follow. If `exit when X` fails as a
            // declaration, pest takes the step and fails at `when X`.
            b"exit" if self.exit_decl_ahead(s + w.len()) => {
                self.bump(w.len());
                self.need_kw(b"when")?;
                let event = self.event_name()?;
                let filter = self.opt_where()?;
                MemberKind::Exit { event, filter }
            }
            b"goal" => {
                self.bump(w.len());
                let event = self.event_name()?;
                let filter = self.opt_where()?;
                self.need_kw(b"within")?;
                let within = self.duration()?;
                MemberKind::Goal {
                    event,
                    filter,
                    within,
                }
            }
            b"when" => {
                self.bump(w.len());
                self.need_kw(b"held")?;
                MemberKind::Held(
                    self.one_of(&[(b"defer", HeldPolicy::Defer), (b"drop", HeldPolicy::Drop)])?,
                )
            }
            _ => MemberKind::Step(self.step()?),
        };
        Some(Member {
            kind,
            span: self.node(s),
        })
    }

    fn exit_decl_ahead(&self, after_exit: usize) -> bool {
        let j = self.skip_from(after_exit);
        self.word_at(j) == b"when" && self.word_at(self.skip_from(j + 4)) != b"held"
    }

    /// The alternatives of `entry_decl`, told apart by their first one or two keywords; past
    /// those, a failure fails every alternative.
    fn entry_rule(&mut self) -> Option<EntryRule> {
        if self.eat_kw(b"once") {
            if self.eat_kw(b"per") {
                Some(EntryRule::OncePer(self.expr()?))
            } else {
                self.need_kw(b"ever")?;
                Some(EntryRule::OnceEver)
            }
        } else if self.eat_kw(b"at") {
            self.need_kw(b"most")?;
            self.need_kw(b"once")?;
            self.need_kw(b"per")?;
            Some(EntryRule::AtMostOncePer(self.duration()?))
        } else {
            self.need_kw(b"every")?;
            self.need_kw(b"time")?;
            Some(EntryRule::EveryTime)
        }
    }

    // ---- steps ---------------------------------------------------------------------------

    fn step(&mut self) -> Option<Step> {
        self.deeper()?;
        let step = self.step_inner();
        self.depth -= 1;
        step
    }

    fn step_inner(&mut self) -> Option<Step> {
        let s = self.pos;
        let w = self.word_at(s);
        let kind = match w {
            b"send" => {
                self.bump(w.len());
                self.need_kw(b"sms")?;
                StepKind::Send {
                    template: self.template()?,
                }
            }
            // The `wait_*` rules differ from their second keyword on (`wait_fixed` has none, and
            // no duration starts with a letter), so the first one that fails past it dooms all.
            b"wait" => {
                self.bump(w.len());
                if self.eat_kw(b"reply") {
                    let within = self.within()?;
                    let arms = self.arms()?;
                    StepKind::WaitReply { within, arms }
                } else if self.eat_kw(b"for") {
                    let event = self.event_name()?;
                    let filter = self.opt_where()?;
                    let within = self.within()?;
                    let arms = self.arms()?;
                    StepKind::WaitFor {
                        event,
                        filter,
                        within,
                        arms,
                    }
                } else if self.eat_kw(b"until") {
                    let time = self.time()?;
                    self.need_kw(b"local")?;
                    let mut days = Vec::new();
                    // `on` or `,` without a day leaves the step before them, where no member
                    // starts.
                    if self.eat_kw(b"on") {
                        days.push(self.day()?);
                        while self.eat(b',') {
                            days.push(self.day()?);
                        }
                    }
                    StepKind::WaitUntil { time, days }
                } else {
                    StepKind::Wait {
                        duration: self.duration()?,
                    }
                }
            }
            b"if" => {
                self.bump(w.len());
                let cond = self.expr()?;
                let block = self.block()?;
                let mut branches = vec![(cond, block)];
                let mut otherwise = None;
                // `else if` that fails leaves `else_if*` before `else`; `else_block` then fails
                // at `if`, and nothing else starts with `else`.
                while self.word_at(self.pos) == b"else" {
                    if self.word_at(self.skip_from(self.pos + 4)) == b"if" {
                        self.bump(4);
                        self.bump(2);
                        let cond = self.expr()?;
                        let block = self.block()?;
                        branches.push((cond, block));
                    } else {
                        self.bump(4);
                        otherwise = Some(self.block()?);
                        break;
                    }
                }
                StepKind::If {
                    branches,
                    otherwise,
                }
            }
            b"split" => {
                self.bump(w.len());
                self.need(b'{')?;
                let mut arms = Vec::new();
                while self.peek() != b'}' {
                    arms.push(self.split_arm()?);
                }
                self.bump(1);
                StepKind::Split { arms }
            }
            b"exit" => {
                self.bump(w.len());
                StepKind::Exit
            }
            _ => return None,
        };
        Some(Step {
            kind,
            span: self.node(s),
        })
    }

    fn day(&mut self) -> Option<Ident> {
        let w = self.word_at(self.pos);
        let ok = matches!(
            w,
            b"weekdays"
                | b"weekends"
                | b"mon"
                | b"tue"
                | b"wed"
                | b"thu"
                | b"fri"
                | b"sat"
                | b"sun"
        );
        ok.then(|| self.take_ident(w.len()))
    }

    /// `within?`: a `within` without a duration leaves the rule before it, where `arms` fails.
    fn within(&mut self) -> Option<Option<DurationLit>> {
        if self.eat_kw(b"within") {
            Some(Some(self.duration()?))
        } else {
            Some(None)
        }
    }

    fn arms(&mut self) -> Option<Vec<Arm>> {
        self.need(b'{')?;
        let mut arms = Vec::new();
        while self.peek() != b'}' {
            arms.push(self.arm()?);
        }
        self.bump(1);
        Some(arms)
    }

    fn arm(&mut self) -> Option<Arm> {
        let s = self.pos;
        let pattern = if self.eat_kw(b"received") {
            Pattern::Received
        } else if self.eat_kw(b"timeout") {
            Pattern::Timeout
        } else if self.eat_kw(b"other") {
            Pattern::Other
        } else {
            let mut answers = vec![self.str_lit()?];
            // `|` without a string leaves `answers` before it, where `=>` fails.
            while self.eat(b'|') {
                answers.push(self.str_lit()?);
            }
            Pattern::Answers(answers)
        };
        let pattern_span = self.node(s);
        self.need_arrow()?;
        let body = self.arm_body()?;
        Some(Arm {
            pattern,
            pattern_span,
            body,
            span: self.node(s),
        })
    }

    fn arm_body(&mut self) -> Option<Block> {
        if self.peek() == b'{' {
            return self.block();
        }
        let step = self.step()?;
        Some(Block {
            span: step.span,
            steps: vec![step],
            braced: false,
        })
    }

    fn block(&mut self) -> Option<Block> {
        let s = self.pos;
        self.need(b'{')?;
        let mut steps = Vec::new();
        while self.peek() != b'}' {
            steps.push(self.step()?);
        }
        self.bump(1);
        Some(Block {
            steps,
            braced: true,
            span: self.node(s),
        })
    }

    fn split_arm(&mut self) -> Option<SplitArm> {
        let s = self.pos;
        let d = self.digits(s);
        if d == 0 {
            return None;
        }
        let mut j = s + d;
        if self.at(j) == b'.' && self.digits(j + 1) > 0 {
            j += 1 + self.digits(j + 1);
        }
        if self.at(j) != b'%' {
            return None;
        }
        j += 1;
        let weight_text = self.src[s..j].to_string();
        let weight_span = self.span(s, j);
        self.bump(j - s);
        let name = self.ident()?;
        self.need_arrow()?;
        let body = self.arm_body()?;
        Some(SplitArm {
            weight: parse_percent(&weight_text),
            weight_text,
            weight_span,
            name,
            body,
            span: self.node(s),
        })
    }

    // ---- templates -----------------------------------------------------------------------

    fn template(&mut self) -> Option<Template> {
        let (n, quote) = self.string_len()?;
        let s = self.pos;
        let src = self.src;
        let triple = quote == Quote::Triple;
        let q = if triple { 3 } else { 1 };
        let raw = &src[s + q..s + n - q];
        self.bump(n);
        let parts = template_parts(self.file, raw, s + q, triple, self).ok()?;
        Some(Template {
            parts,
            triple,
            raw: raw.to_string(),
            span: self.span(s, s + n),
        })
    }

    /// `interp = { SOI ~ expr ~ filter* ~ EOI }` over `self.pos..self.end`.
    fn interp_part(&mut self, span: Span) -> Option<TemplatePart> {
        self.skip();
        let expr = self.expr()?;
        let mut filters = Vec::new();
        while self.peek() == b'|' {
            let s = self.pos;
            self.bump(1);
            let name = self.ident()?;
            let mut args = Vec::new();
            // `("(" ~ (expr ~ ("," ~ expr)*)? ~ ")")?`, no trailing comma here: whatever
            // fails inside leaves `filter` before `(`, where only `|` or the end could follow.
            let parens = self.eat(b'(');
            if parens {
                if self.peek() != b')' {
                    args.push(self.expr()?);
                    while self.eat(b',') {
                        args.push(self.expr()?);
                    }
                }
                self.need(b')')?;
            }
            let end = self.rule_end(self.tok_end, parens);
            filters.push(Filter {
                name,
                args,
                span: self.span(s, end),
            });
        }
        (self.pos == self.end).then_some(TemplatePart::Interp {
            expr,
            filters,
            span,
        })
    }

    // ---- expressions ---------------------------------------------------------------------
    //
    // Each level returns the expression and whether pest's rule for it ends exactly at its
    // last token (see `rule_end`; only interpolation spans depend on it). An operator whose
    // right operand fails gives up: pest would end the chain before the operator, and no rule
    // continues an expression with an operator, `not`, `in` or a comparison word.

    fn expr(&mut self) -> Option<Expr> {
        self.deeper()?;
        let e = self.or_expr();
        self.depth -= 1;
        e
    }

    fn or_expr(&mut self) -> Option<Expr> {
        self.chain(Self::and_expr, |p| p.eat_kw(b"or").then_some(BinOp::Or))
    }

    fn and_expr(&mut self) -> Option<(Expr, bool)> {
        let e = self.chain(Self::not_expr, |p| p.eat_kw(b"and").then_some(BinOp::And))?;
        Some((e, false))
    }

    fn chain_exact(
        &mut self,
        operand: fn(&mut Self) -> Option<(Expr, bool)>,
        op: fn(&mut Self) -> Option<BinOp>,
    ) -> Option<(Expr, bool)> {
        let (mut lhs, mut exact) = operand(self)?;
        let mut n = 0;
        while let Some(op) = op(self) {
            n += 1;
            if n > MAX_CHAIN {
                return None;
            }
            let (rhs, rhs_exact) = operand(self)?;
            let span = lhs.span.to(rhs.span);
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
            exact = rhs_exact;
        }
        // With no operator, `a ~ (op ~ a)*` keeps the skip after `a`.
        Some((lhs, n > 0 && exact))
    }

    fn chain(
        &mut self,
        operand: fn(&mut Self) -> Option<(Expr, bool)>,
        op: fn(&mut Self) -> Option<BinOp>,
    ) -> Option<Expr> {
        self.chain_exact(operand, op).map(|(e, _)| e)
    }

    fn not_expr(&mut self) -> Option<(Expr, bool)> {
        self.prefixed(UnOp::Not, |p| p.eat_kw(b"not"), Self::cmp_expr)
    }

    /// `op* ~ operand` (`not_expr`, `unary`): every prefix operator's node spans the whole
    /// rule, as the pest builder gives them the rule's span.
    fn prefixed(
        &mut self,
        un: UnOp,
        op: fn(&mut Self) -> bool,
        operand: fn(&mut Self) -> Option<(Expr, bool)>,
    ) -> Option<(Expr, bool)> {
        let s = self.pos;
        let mut n = 0;
        while op(self) {
            n += 1;
        }
        if n > MAX_CHAIN {
            return None;
        }
        let (mut e, exact) = operand(self)?;
        if n > 0 {
            let span = self.span(s, self.rule_end(self.tok_end, exact));
            for _ in 0..n {
                e = Expr {
                    kind: ExprKind::Unary(un, Box::new(e)),
                    span,
                };
            }
        }
        Some((e, exact))
    }

    fn cmp_expr(&mut self) -> Option<(Expr, bool)> {
        let s = self.pos;
        let (lhs, _) = self.add_expr()?;
        let Some(op) = self.cmp_op() else {
            return Some((lhs, false));
        };
        let (rhs, exact) = self.add_expr()?;
        let span = self.span(s, self.rule_end(self.tok_end, exact));
        let e = Expr {
            kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
            span,
        };
        Some((e, exact))
    }

    /// `cmp_op` (atomic): the symbols, `not in` with blanks (not line breaks or comments)
    /// between, or a comparison word not running on into a name.
    fn cmp_op(&mut self) -> Option<BinOp> {
        let (c0, c1) = (self.peek(), self.at(self.pos + 1));
        let (op, len) = match (c0, c1) {
            (b'=', b'=') => (BinOp::Eq, 2),
            (b'!', b'=') => (BinOp::Ne, 2),
            (b'<', b'=') => (BinOp::Le, 2),
            (b'>', b'=') => (BinOp::Ge, 2),
            (b'<', _) => (BinOp::Lt, 1),
            (b'>', _) => (BinOp::Gt, 1),
            _ => {
                let w = self.word_at(self.pos);
                match w {
                    b"in" => (BinOp::In, 2),
                    b"starts_with" => (BinOp::StartsWith, w.len()),
                    b"ends_with" => (BinOp::EndsWith, w.len()),
                    b"contains" => (BinOp::Contains, w.len()),
                    b"not" => {
                        let mut j = self.pos + 3;
                        while matches!(self.at(j), b' ' | b'\t') {
                            j += 1;
                        }
                        if j == self.pos + 3 || self.word_at(j) != b"in" {
                            return None;
                        }
                        (BinOp::NotIn, j + 2 - self.pos)
                    }
                    _ => return None,
                }
            }
        };
        self.bump(len);
        Some(op)
    }

    fn add_expr(&mut self) -> Option<(Expr, bool)> {
        self.chain_exact(Self::mul_expr, |p| {
            p.symbol_op([(b'+', BinOp::Add), (b'-', BinOp::Sub)])
        })
    }

    fn mul_expr(&mut self) -> Option<(Expr, bool)> {
        self.chain_exact(Self::unary, |p| {
            p.symbol_op([(b'*', BinOp::Mul), (b'/', BinOp::Div)])
        })
    }

    /// `add_op` or `mul_op`: one of two one-byte operators.
    fn symbol_op(&mut self, ops: [(u8, BinOp); 2]) -> Option<BinOp> {
        let c = self.peek();
        let (_, op) = ops.into_iter().find(|(b, _)| *b == c)?;
        self.bump(1);
        Some(op)
    }

    fn unary(&mut self) -> Option<(Expr, bool)> {
        self.prefixed(UnOp::Neg, |p| p.eat(b'-'), Self::postfix)
    }

    /// `primary ~ ("." ~ field)*`: blanks are allowed around the dot; a dot not followed by a
    /// field name is left alone (and then fails whatever comes next).
    fn postfix(&mut self) -> Option<(Expr, bool)> {
        let mut e = self.primary()?;
        let mut fields = 0;
        while self.peek() == b'.' {
            let f = self.skip_from(self.pos + 1);
            let n = self.word_len(f);
            if n == 0 {
                break;
            }
            if fields >= MAX_CHAIN {
                return None;
            }
            fields += 1;
            self.bump(1);
            let fid = self.take_ident(n);
            let span = e.span.to(fid.span);
            e = Expr {
                kind: ExprKind::Field(Box::new(e), fid),
                span,
            };
        }
        Some((e, fields > 0))
    }

    /// `plugin_call | quantifier | call | literal | list | flow_root | ident | paren`.
    fn primary(&mut self) -> Option<Expr> {
        let s = self.pos;
        let c = self.peek();
        let kind = if c.is_ascii_alphabetic() || c == b'_' {
            let w = self.word_at(s);
            let n = w.len();
            if w == b"plugin" {
                // If no name follows, every other alternative fails on the keyword too.
                self.bump(n);
                ExprKind::Plugin(self.ident()?)
            } else if let Some(q) = self.quantifier(w)? {
                return Some(q);
            } else if self.at(self.skip_from(s + n)) == b'(' && !is_keyword(w) {
                // `call_head` matched: a name, trivia, `(`. Keywords fail `call` at `ident`.
                return self.call(n);
            } else if w == b"true" || w == b"false" {
                self.bump(n);
                ExprKind::Bool(w == b"true")
            } else if w == b"flow" && self.at(s + 4) == b'.' {
                ExprKind::Name(self.take_ident(4))
            } else if !is_keyword(w) {
                ExprKind::Name(self.take_ident(n))
            } else {
                return None;
            }
        } else if c.is_ascii_digit() {
            // `duration | time_of_day | decimal | int`, in that order.
            let n = self.duration_len();
            if n > 0 {
                ExprKind::Duration(self.take_duration(n)?)
            } else if self.time_len() > 0 {
                ExprKind::TimeOfDay(self.time()?)
            } else {
                let d = self.digits(s);
                let frac = if self.at(s + d) == b'.' {
                    self.digits(s + d + 1)
                } else {
                    0
                };
                if frac > 0 {
                    let n = d + 1 + frac;
                    self.bump(n);
                    ExprKind::Decimal(self.src[s..s + n].to_string())
                } else if !is_ident_char(self.at(s + d)) {
                    // Too large: the pest path reports AC0005.
                    let v = self.src[s..s + d].parse::<i64>().ok()?;
                    self.bump(d);
                    ExprKind::Int(v)
                } else {
                    return None;
                }
            }
        } else if c == b'"' || c == b'\'' {
            ExprKind::Str(self.str_lit()?.value)
        } else if c == b'[' {
            self.bump(1);
            ExprKind::List(self.args(b']')?)
        } else if c == b'(' {
            self.bump(1);
            let inner = self.expr()?;
            self.need(b')')?;
            ExprKind::Paren(Box::new(inner))
        } else {
            return None;
        };
        Some(Expr {
            kind,
            span: self.node(s),
        })
    }

    /// `quantifier`, when the word is `any`, `all` or `count` followed by blanks (not
    /// comments) and `(`. `Some(None)`: not a quantifier (`count(items)`), try `call`.
    /// Once `( NAME in` matched, a failure gives up: pest would parse the argument again as a
    /// call, and nested such arguments cost it exponential time (its call limit then decides
    /// the message).
    fn quantifier(&mut self, w: &[u8]) -> Option<Option<Expr>> {
        let quant = match w {
            b"any" => Quant::Any,
            b"all" => Quant::All,
            b"count" => Quant::Count,
            _ => return Some(None),
        };
        let s = self.pos;
        let mut j = s + w.len();
        while matches!(self.at(j), b' ' | b'\t' | b'\n' | b'\r') {
            j += 1;
        }
        if self.at(j) != b'(' {
            return Some(None);
        }
        let o = self.skip_from(j + 1);
        let vn = self.word_len(o);
        let v = &self.b[o..o + vn];
        if vn == 0 || is_keyword(v) || self.word_at(self.skip_from(o + vn)) != b"in" {
            return Some(None);
        }
        self.bump(w.len());
        self.bump(1);
        let var = self.take_ident(vn);
        self.bump(2);
        let list = Box::new(self.expr()?);
        self.need(b':')?;
        let pred = Box::new(self.expr()?);
        self.need(b')')?;
        Some(Some(Expr {
            kind: ExprKind::Quant {
                quant,
                var,
                list,
                pred,
            },
            span: self.node(s),
        }))
    }

    /// `call` after `call_head` matched. If it fails past the `(`, pest takes the name as an
    /// `ident`, and nothing continues an expression with `(`: give up.
    fn call(&mut self, n: usize) -> Option<Expr> {
        let s = self.pos;
        let name = self.take_ident(n);
        self.need(b'(')?;
        let args = self.args(b')')?;
        Some(Expr {
            kind: ExprKind::Call(name, args),
            span: self.node(s),
        })
    }

    /// `(expr ~ ("," ~ expr)*)? ~ ","? ~ close`, after the opening bracket. An expression that
    /// fails at its start lets pest try `,` and `close` there; one that fails later, or any
    /// other failure, fails the enclosing list or call.
    fn args(&mut self, close: u8) -> Option<Vec<Expr>> {
        let mut args = Vec::new();
        if !matches!(self.peek(), b',') && self.peek() != close {
            args.push(self.expr()?);
            while self.peek() == b',' && self.at(self.skip_from(self.pos + 1)) != close {
                self.bump(1);
                args.push(self.expr()?);
            }
        }
        self.eat(b',');
        self.need(close)?;
        Some(args)
    }
}

impl Interps for Fast<'_> {
    type Stop = ();

    fn interp(&mut self, inner: &str, abs: usize, span: Span) -> Result<Option<TemplatePart>, ()> {
        let end = abs + inner.len();
        let mut p = Fast::new(self.file, self.src, abs, end, true, self.depth);
        p.interp_part(span).map(Some).ok_or(())
    }

    fn unclosed(&mut self, _at: Span) -> Result<(), ()> {
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAMMAR: &str = include_str!("../../grammar/aftercart.pest");

    /// This parser restates the grammar by hand. When the grammar changes, this test fails
    /// until the parser is brought in line (and `tests/parse_diff.rs` covers the change) and
    /// the hash below is updated.
    #[test]
    fn grammar_is_the_one_this_parser_follows() {
        // Line breaks normalised, so that a CRLF checkout hashes the same.
        let hash = crate::ir::sha256_hex(GRAMMAR.replace("\r\n", "\n").as_bytes());
        assert_eq!(
            hash, "104bdb0e91751d20e64b2f818c9ed0c4502a61bb1316fa9a47c7dc3d3896f0d7",
            "grammar/aftercart.pest changed: update src/syntax/fast.rs to match, then this hash"
        );
    }

    /// `is_keyword` lists the grammar's `keyword` rule by hand; every word of a `kw_` rule is
    /// a keyword exactly when that rule lists it.
    #[test]
    fn keywords_match_the_grammar() {
        let start = GRAMMAR.find("\nkeyword = @{").expect("keyword rule");
        let rule = &GRAMMAR[start..start + GRAMMAR[start..].find('}').unwrap()];
        let listed: Vec<&str> = rule.split('"').skip(1).step_by(2).collect();
        assert!(listed.len() > 30, "{listed:?}");
        let kw_words: Vec<&str> = GRAMMAR
            .lines()
            .filter(|l| l.starts_with("kw_"))
            .map(|l| l.split('"').nth(1).unwrap())
            .collect();
        assert!(kw_words.len() >= listed.len());
        for w in kw_words.iter().chain(&listed) {
            assert_eq!(is_keyword(w.as_bytes()), listed.contains(w), "{w}");
        }
    }
}
