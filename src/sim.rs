//! The simulator: runs every flow over an event file on a virtual clock that jumps from input
//! to timer to input, and renders each person's timeline as text or JSON lines. Same input,
//! same output, byte for byte (the engine is pure and the host orders timers deterministically).

pub mod synthetic;

use crate::engine::Effect;
use crate::host::{parse_line, Admitted, Envelope, Host, Record};
use crate::ir::Program;
use crate::schema::Schemas;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Inputs before this instant are skipped.
    pub from: Option<DateTime<Utc>>,
    /// The clock stops here; without it, it runs until no timer is left.
    pub until: Option<DateTime<Utc>>,
}

/// A line of the input that was refused, with its 1-based number and the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub line: usize,
    pub reason: String,
}

pub struct Outcome {
    pub records: Vec<Record>,
    pub refused: Vec<Refused>,
    pub inputs: usize,
    pub host: Host,
}

/// Without `--until`, timers are followed at most this far past the last input (a safety
/// net: every flow's waits are bounded by the checker, so this is never reached in practice).
const HORIZON_DAYS: i64 = 800;

/// Parse every line; refused lines are reported and skipped, the rest sorted by time (stable,
/// so equal times keep file order).
pub fn read_events(text: &str) -> (Vec<Envelope>, Vec<Refused>) {
    let mut envs = Vec::new();
    let mut refused = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(e) => envs.push(e),
            Err(reason) => refused.push(Refused {
                line: i + 1,
                reason,
            }),
        }
    }
    envs.sort_by_key(|e| e.at);
    (envs, refused)
}

/// A line that parsed, kept as its text and time only. Holding every parsed envelope (every
/// JSON tree) for the whole run was ~110 MB of the 590 MB peak for 10k people; the text is in
/// memory anyway, so a line is parsed once to validate it and find its time, then again when
/// its turn comes (parsing is ~3% of the run).
struct Pending<'t> {
    at: DateTime<Utc>,
    line: &'t str,
}

/// [`parse_line`], without its copy of the event's data for aftercart events (every line is
/// parsed twice, see [`Pending`]; the copy was a third of parsing). Anything but a
/// well-formed aftercart event goes to [`parse_line`] itself, so errors and Shopify envelopes
/// are exactly its own; a test checks both agree.
fn parse(line: &str) -> Result<Envelope, String> {
    use crate::host::Payload;
    let fast = || -> Option<Envelope> {
        let mut v: Json = serde_json::from_str(line).ok()?;
        let obj = v.as_object_mut()?;
        let source = obj.get("source").and_then(Json::as_str);
        if source == Some("shopify") || (source.is_none() && obj.contains_key("topic")) {
            return None;
        }
        let kind = obj.get("type")?.as_str()?.to_string();
        let at = DateTime::parse_from_rfc3339(obj.get("at")?.as_str()?)
            .ok()?
            .with_timezone(&Utc);
        let id = match obj.get("id") {
            Some(Json::String(s)) => s.clone(),
            Some(v) => v.as_u64()?.to_string(),
            None => return None,
        };
        let data = obj
            .remove("data")
            .unwrap_or(Json::Object(Default::default()));
        Some(Envelope {
            at,
            payload: Payload::Aftercart { kind, id, data },
        })
    };
    fast().map(Ok).unwrap_or_else(|| parse_line(line))
}

/// The time of a well-formed aftercart event line, read without building its JSON tree (the
/// indexing pass only needs to know that a line is valid and when it happens; building and
/// dropping every tree was half of parsing). `None` for anything else, which then goes through
/// [`parse`]: `Some` only when [`parse_line`] accepts the line with this time (a test checks).
fn time_of(line: &str) -> Option<DateTime<Utc>> {
    use serde::de::IgnoredAny;
    use std::borrow::Cow;

    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        serde::Deserialize::deserialize(d).map(|_: IgnoredAny| true)
    }
    /// The fields `parse_line` reads to accept an aftercart line and find its time. A
    /// duplicate or mistyped field fails here and the line takes the full path.
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        source: Option<Cow<'a, str>>,
        #[serde(default, deserialize_with = "present")]
        topic: bool,
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        at: Cow<'a, str>,
    }
    // A struct also deserialises from a JSON array; `parse_line` wants an object.
    if !line.trim_start().starts_with('{') {
        return None;
    }
    let h: Head = serde_json::from_str(line).ok()?;
    let shopify = match h.source.as_deref() {
        Some(s) => s == "shopify",
        None => h.topic,
    };
    if shopify {
        return None;
    }
    let _ = h.kind;
    DateTime::parse_from_rfc3339(&h.at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// As [`read_events`], keeping the lines' text instead of their envelopes; also says whether
/// any line is a Shopify webhook (see [`simulate_with`]).
fn index_events(text: &str) -> (Vec<Pending<'_>>, Vec<Refused>, bool) {
    let mut pending = Vec::new();
    let mut refused = Vec::new();
    let mut shopify = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = time_of(line).map(Ok).unwrap_or_else(|| {
            parse(line).map(|e| {
                shopify |= matches!(e.payload, crate::host::Payload::Shopify { .. });
                e.at
            })
        });
        match at {
            Ok(at) => pending.push(Pending { at, line }),
            Err(reason) => refused.push(Refused {
                line: i + 1,
                reason,
            }),
        }
    }
    pending.sort_by_key(|p| p.at);
    (pending, refused, shopify)
}

/// Run the simulation, keeping the shown records (see [`shown`]) in the outcome.
pub fn simulate(
    program: Program,
    schemas: Schemas,
    text: &str,
    opts: &Options,
    progress: &dyn Fn(usize, usize),
) -> Outcome {
    let mut records = Vec::new();
    let mut out = simulate_with(program, schemas, text, opts, progress, &mut |r| {
        if shown(&r.effect) {
            records.push(r)
        }
    });
    out.records = records;
    out
}

/// Run the simulation, handing every record to `sink` as it happens (nothing is kept): the
/// JSON output streams, so memory does not grow with the number of records. The host runs
/// without traces ([`Host::trace`]): step traces and timer cancellations, which no output
/// shows, are not recorded.
///
/// People are stepped on `WORKERS` threads (`Run::sharded`) unless the input holds a
/// Shopify webhook: those feed the shop data (catalog, order history) that every person's
/// steps read, in input order, which the workers do not share. Both ways give the same
/// records in the same order (a test compares them).
pub fn simulate_with(
    program: Program,
    schemas: Schemas,
    text: &str,
    opts: &Options,
    progress: &dyn Fn(usize, usize),
    sink: &mut dyn FnMut(Record),
) -> Outcome {
    simulate_into(program, schemas, text, opts, progress, Sink::Records(sink))
}

/// [`simulate_with`], handing the records to `sink` in either of its forms.
fn simulate_into(
    program: Program,
    schemas: Schemas,
    text: &str,
    opts: &Options,
    progress: &dyn Fn(usize, usize),
    sink: Sink<'_>,
) -> Outcome {
    let (pending, refused, shopify) = index_events(text);
    let run = Run {
        pending: &pending,
        opts,
        progress,
    };
    let workers = if shopify { 0 } else { WORKERS };
    run.go(program, schemas, refused, sink, workers)
}

/// Where a run hands its records, in order.
enum Sink<'s> {
    /// Every record, as it is.
    Records(&'s mut dyn FnMut(Record)),
    /// The shown records ([`shown`]) as JSON lines ([`write_line`]), a run of whole lines at a
    /// time. Sharded ([`Run::sharded`]), each worker writes the lines of the records it makes
    /// right after making them and drops the records there: formatting them on the writer
    /// thread read every string cold (a worker had written it on the other core) and freed
    /// every allocation across threads, which mimalloc collects back at a cost to the worker.
    /// The buffer is where a record made on this thread is written (the router's own
    /// records, or every record of a serial run) before it is handed over.
    Json(&'s mut dyn FnMut(&[u8]), Vec<u8>),
}

impl<'s> Sink<'s> {
    /// Hand over one record made on this thread.
    fn record(&mut self, r: Record) {
        match self {
            Sink::Records(f) => f(r),
            Sink::Json(f, line) => {
                if shown(&r.effect) {
                    line.clear();
                    write_line(line, &r);
                    f(line);
                }
            }
        }
    }

    fn json(lines: &'s mut dyn FnMut(&[u8])) -> Sink<'s> {
        Sink::Json(lines, Vec::with_capacity(512))
    }

    fn is_json(&self) -> bool {
        matches!(self, Sink::Json(..))
    }
}

/// One simulation's indexed input and options.
struct Run<'a, 't> {
    pending: &'a [Pending<'t>],
    opts: &'a Options,
    progress: &'a dyn Fn(usize, usize),
}

impl Run<'_, '_> {
    /// Run on this thread alone ([`Run::serial`], `workers` 0) or over `workers` threads
    /// ([`Run::sharded`]). The host routes and de-duplicates the inputs, and ends up with
    /// every person and pending timer either way.
    fn go(
        &self,
        program: Program,
        schemas: Schemas,
        mut refused: Vec<Refused>,
        mut sink: Sink<'_>,
        workers: usize,
    ) -> Outcome {
        let mut host = Host::new(program, schemas);
        host.trace = false;
        host.reserve_inputs(self.pending.len());
        let inputs = match workers {
            0 => self.serial(&mut host, &mut refused, &mut |r| sink.record(r)),
            n => self.sharded(&mut host, &mut refused, &mut sink, n),
        };
        Outcome {
            records: Vec::new(),
            refused,
            inputs,
            host,
        }
    }

    /// Where the clock stops after the last input.
    fn end(&self) -> DateTime<Utc> {
        self.opts.until.unwrap_or_else(|| {
            self.pending
                .last()
                .map(|p| p.at)
                .unwrap_or_else(|| DateTime::<Utc>::from_timestamp(0, 0).unwrap())
                + Duration::days(HORIZON_DAYS)
        })
    }

    /// Why pending line `i`, an input the host refused at `at`, was refused. The line is parsed
    /// again (refusals are rare; naming every input ahead was an allocation per input).
    fn refused(&self, i: usize, at: DateTime<Utc>, reason: &str) -> Refused {
        let describe = parse(self.pending[i].line)
            .expect("the line parsed when it was indexed")
            .describe();
        Refused {
            line: 0,
            reason: format!("{describe} at {}: {reason}", at.to_rfc3339()),
        }
    }

    /// Everyone on this thread: inputs and timers in one host.
    fn serial(
        &self,
        host: &mut Host,
        refused: &mut Vec<Refused>,
        sink: &mut dyn FnMut(Record),
    ) -> usize {
        let total = self.pending.len();
        let mut inputs = 0;
        // Lines are parsed on a second thread, in time order, while this one runs them:
        // parsing is independent of the host, and the machine has a core to spare.
        std::thread::scope(|scope| {
            for (i, env) in spawn_parser(scope, self.pending, self.opts)
                .into_iter()
                .flatten()
            {
                let at = env.at;
                fire_until(host, at, sink);
                match host.ingest_of(std::borrow::Cow::Owned(env), at) {
                    Ok(r) => {
                        inputs += 1;
                        r.into_iter().for_each(&mut *sink);
                    }
                    Err(reason) => refused.push(self.refused(i, at, &reason)),
                }
                if i % 1024 == 0 {
                    (self.progress)(i, total);
                }
            }
        });
        (self.progress)(total, total);
        fire_until(host, self.end(), sink);
        inputs
    }

    /// People split over `workers` threads by their key, each thread with its own host (its
    /// people and their timers). A person's steps read only their own state, the input, the
    /// time and the program (and the shop data, fixed without Shopify webhooks), so a worker
    /// produces exactly the records the single host would for its people. This thread routes
    /// every input (de-duplication and phone owners are shared) and merges what the workers
    /// did back into the single host's order:
    ///
    /// * before each input the single host fires every timer due by its time, in
    ///   [`crate::host::TimerKey`] order. Each worker is told every input's time, fires its own
    ///   timers up to it, and the firings of one such round are merged by (due, person): the
    ///   key's first fields, and the timers of two workers never share a person. Each worker's
    ///   firings come in its own heap's order, so always taking the least of the workers' next
    ///   firings is what the single heap would pop;
    /// * then the input's records: from the worker that owns its person, or from this thread
    ///   (a duplicate).
    ///
    /// The simulator's main thread was the whole run's critical path (four fifths of its CPU,
    /// parsing and writing being on their own threads already).
    fn sharded(
        &self,
        host: &mut Host,
        refused: &mut Vec<Refused>,
        sink: &mut Sink<'_>,
        workers: usize,
    ) -> usize {
        use std::sync::mpsc::sync_channel;
        let json = sink.is_json();
        let total = self.pending.len();
        let mut inputs = 0;
        std::thread::scope(|scope| {
            let mut jobs = Vec::new();
            let mut done = Vec::new();
            let mut threads = Vec::new();
            for w in 0..workers {
                let (job_tx, job_rx) = sync_channel::<Vec<Job>>(JOBS_IN_FLIGHT);
                let (done_tx, done_rx) = sync_channel::<Batch>(JOBS_IN_FLIGHT);
                // Merged batches go back to be filled again (see [`Batch`]).
                let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Batch>();
                let (program, schemas) = (host.program.clone(), host.schemas.clone());
                let channels = (job_rx, done_tx, spent_rx);
                let thread = std::thread::Builder::new()
                    .name(format!("sim-work{w}"))
                    .spawn_scoped(scope, move || work(program, schemas, json, channels))
                    .expect("a thread can be started");
                jobs.push(job_tx);
                done.push((done_rx, spent_tx));
                threads.push(thread);
            }
            // Per batch sent and not merged yet: each input's own record, when this thread
            // made it (a duplicate).
            let mut unmerged = std::collections::VecDeque::new();
            // Per worker, job vectors it emptied, to be filled again (see [`Batch`]).
            let mut pool: Vec<Vec<Vec<Job>>> = (0..workers).map(|_| Vec::new()).collect();
            let mut merge_oldest = |unmerged: &mut std::collections::VecDeque<_>,
                                    pool: &mut [Vec<Vec<Job>>]| {
                let direct = unmerged.pop_front().expect("a batch is waiting");
                let mut batches: Vec<Batch> = done
                    .iter()
                    .map(|(d, _)| d.recv().expect("a worker does not panic"))
                    .collect();
                merge(direct, &mut batches, sink);
                for (((_, spent), mut batch), pool) in done.iter().zip(batches).zip(pool) {
                    pool.push(std::mem::take(&mut batch.jobs));
                    // A worker that has finished no longer takes them back.
                    let _ = spent.send(batch);
                }
            };
            let send = |batches: Vec<Vec<Job>>| {
                for (tx, batch) in jobs.iter().zip(batches) {
                    tx.send(batch).expect("a worker does not panic");
                }
            };
            for batch in spawn_parser(scope, self.pending, self.opts) {
                let mut out: Vec<Vec<Job>> = pool
                    .iter_mut()
                    .map(|p| {
                        p.pop()
                            .unwrap_or_else(|| Vec::with_capacity(batch.len() * 2))
                    })
                    .collect();
                let mut direct = Vec::with_capacity(batch.len());
                for (i, env) in batch {
                    let at = env.at;
                    out.iter_mut().for_each(|o| o.push(Job::Tick(at)));
                    match host.admit(std::borrow::Cow::Owned(env)) {
                        Ok(Admitted::Duplicate(id)) => {
                            inputs += 1;
                            direct.push(Some(crate::host::duplicate(id, at)));
                        }
                        Ok(Admitted::Inputs(list)) => {
                            inputs += 1;
                            direct.push(None);
                            for (sub, (person, input)) in list.into_iter().enumerate() {
                                out[shard(&person, workers)].push(Job::Step { sub, person, input });
                            }
                        }
                        Err(reason) => {
                            refused.push(self.refused(i, at, &reason));
                            direct.push(None);
                        }
                    }
                    if i % 1024 == 0 {
                        (self.progress)(i, total);
                    }
                }
                send(out);
                unmerged.push_back(direct);
                while unmerged.len() > MERGE_LAG {
                    merge_oldest(&mut unmerged, &mut pool);
                }
            }
            (self.progress)(total, total);
            // After the last input the clock runs to the end: one more round of firings.
            let end = self.end();
            send((0..workers).map(|_| vec![Job::Tick(end)]).collect());
            unmerged.push_back(vec![None]);
            drop(jobs);
            while !unmerged.is_empty() {
                merge_oldest(&mut unmerged, &mut pool);
            }
            // The workers' people and timers join the host, as if it had run them.
            for thread in threads {
                let (people, timers) = thread.join().expect("a worker does not panic");
                host.people.absorb(people);
                for t in timers {
                    crate::host::HostState::schedule(&mut host.state, t);
                }
            }
        });
        inputs
    }
}

/// Parse the pending lines on a thread of their own ([`parse_ahead`]); the batches come out of
/// the receiver in time order.
fn spawn_parser<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    pending: &'scope [Pending<'scope>],
    opts: &'scope Options,
) -> std::sync::mpsc::Receiver<Vec<(usize, Envelope)>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(PARSED_IN_FLIGHT);
    std::thread::Builder::new()
        .name("sim-parse".into())
        .spawn_scoped(scope, move || parse_ahead(pending, opts, tx))
        .expect("a thread can be started");
    rx
}

/// Threads the people are split over when the input allows it (see [`simulate_with`]): the
/// machine this is tuned on has two cores, and the workers share them with the parser, the
/// router and the writer.
const WORKERS: usize = 2;

/// Batches of jobs in flight to each worker, and batches of theirs routed but not merged yet
/// (fewer than `JOBS_IN_FLIGHT`, so that a worker never waits on the merge while the router
/// waits on it).
const JOBS_IN_FLIGHT: usize = 8;
const MERGE_LAG: usize = 4;

/// The worker that steps `person` (any fixed split does: a person's records do not depend on
/// who else a worker holds).
fn shard(person: &str, workers: usize) -> usize {
    use std::hash::BuildHasher;
    crate::host::FastHash::default().hash_one(person) as usize % workers
}

/// What a worker is told, in input order: `Tick` is an input's time (fire every timer due by
/// then), `Step` one of that input's inputs for a person of this worker (`sub`: its place
/// among them).
enum Job {
    Tick(DateTime<Utc>),
    Step {
        sub: usize,
        person: String,
        input: crate::engine::Input,
    },
}

/// What a worker did with one batch of jobs: what it did, in order, and the JSON lines
/// written for it (when the sink takes JSON; [`Made::Json`] ranges index them). Once merged, a
/// batch goes back to its worker, emptied, to be filled again: a fresh ~300 KB buffer per
/// batch, freed on the other thread, was fresh pages for the kernel to zero every time (7% of
/// the run's samples). So does the job vector the batch was made from, back to the router (a
/// fresh one per batch, freed on the worker, was a fifth of the router's page zeroing).
#[derive(Default)]
struct Batch {
    done: Vec<Done>,
    json: Vec<u8>,
    jobs: Vec<Job>,
}

/// What a worker did, in the order it did it; `round` is the index of the `Tick` (within its
/// batch) it followed.
enum Done {
    Fired {
        round: usize,
        due: DateTime<Utc>,
        person: String,
        made: Made,
    },
    Stepped {
        round: usize,
        sub: usize,
        made: Made,
    },
}

/// The records of one firing or step: as they are, or as the range of the batch's JSON lines
/// that holds their shown records (see [`Sink::Json`]).
enum Made {
    Records(Vec<Record>),
    Json(std::ops::Range<usize>),
}

impl Made {
    /// `records` as the sink will take them, their lines (if JSON) appended to `json`.
    fn of(records: Vec<Record>, json: Option<&mut Vec<u8>>) -> Made {
        match json {
            None => Made::Records(records),
            Some(out) => {
                let start = out.len();
                for r in records.iter().filter(|r| shown(&r.effect)) {
                    write_line(out, r);
                }
                Made::Json(start..out.len())
            }
        }
    }

    /// Hand these records (from a batch whose lines are `json`) to `sink`.
    fn emit(self, json: &[u8], sink: &mut Sink<'_>) {
        match (self, sink) {
            (Made::Json(range), Sink::Json(f, _)) => {
                if !range.is_empty() {
                    f(&json[range])
                }
            }
            (Made::Records(records), sink) => records.into_iter().for_each(|r| sink.record(r)),
            (Made::Json(_), Sink::Records(_)) => {
                unreachable!("workers write JSON only for a JSON sink")
            }
        }
    }
}

impl Done {
    fn round(&self) -> usize {
        match self {
            Done::Fired { round, .. } | Done::Stepped { round, .. } => *round,
        }
    }
}

/// A worker: its people's host, run job by job; returns its people and pending timers. With
/// `json`, the records are written as JSON lines here (see [`Sink::Json`]).
fn work(
    program: Program,
    schemas: Schemas,
    json: bool,
    (jobs, done, spent): (
        std::sync::mpsc::Receiver<Vec<Job>>,
        std::sync::mpsc::SyncSender<Batch>,
        std::sync::mpsc::Receiver<Batch>,
    ),
) -> (crate::host::People, Vec<crate::host::TimerKey>) {
    let mut host = Host::new(program, schemas);
    host.trace = false;
    for mut batch in jobs {
        let Batch {
            done: mut out,
            json: mut bytes,
            ..
        } = spent.try_recv().unwrap_or_default();
        out.reserve(batch.len());
        let mut round = usize::MAX;
        let mut now = DateTime::<Utc>::MIN_UTC;
        for job in batch.drain(..) {
            match job {
                Job::Tick(at) => {
                    round = round.wrapping_add(1);
                    now = at;
                    while let Some(f) = host.fire_next_timer(at, None) {
                        // A stale timer steps no one and shows nothing.
                        if !f.records.is_empty() {
                            out.push(Done::Fired {
                                round,
                                due: f.due,
                                person: f.person,
                                made: Made::of(f.records, json.then_some(&mut bytes)),
                            });
                        }
                    }
                }
                Job::Step { sub, person, input } => {
                    let records = host.step_input(&person, input, now);
                    out.push(Done::Stepped {
                        round,
                        sub,
                        made: Made::of(records, json.then_some(&mut bytes)),
                    })
                }
            }
        }
        let batch = Batch {
            done: out,
            json: bytes,
            jobs: batch,
        };
        if done.send(batch).is_err() {
            break;
        }
    }
    (std::mem::take(&mut host.people), host.state.live_timers())
}

/// Hand one batch's records to `sink` in the single host's order: for each round, the
/// workers' firings merged by (due, person), then the input's records (`direct[round]`, made
/// by the router, or the workers' steps in their input order).
/// The batches are left empty.
fn merge(direct: Vec<Option<Record>>, batches: &mut [Batch], sink: &mut Sink<'_>) {
    let mut done: Vec<std::collections::VecDeque<Done>> = batches
        .iter_mut()
        .map(|b| std::mem::take(&mut b.done).into())
        .collect();
    let json: Vec<&[u8]> = batches.iter().map(|b| &b.json[..]).collect();
    let mut steps = Vec::new();
    for (round, own) in direct.into_iter().enumerate() {
        loop {
            let mut first: Option<(usize, (&DateTime<Utc>, &str))> = None;
            for (w, d) in done.iter().enumerate() {
                if let Some(Done::Fired {
                    round: r,
                    due,
                    person,
                    ..
                }) = d.front()
                {
                    let key = (due, person.as_str());
                    if *r == round && first.is_none_or(|(_, k)| key < k) {
                        first = Some((w, key));
                    }
                }
            }
            let Some((w, _)) = first else { break };
            if let Some(Done::Fired { made, .. }) = done[w].pop_front() {
                made.emit(json[w], sink);
            }
        }
        if let Some(r) = own {
            sink.record(r);
        }
        for (w, d) in done.iter_mut().enumerate() {
            while d.front().is_some_and(|x| x.round() == round) {
                if let Some(Done::Stepped { sub, made, .. }) = d.pop_front() {
                    steps.push((sub, w, made));
                }
            }
        }
        steps.sort_by_key(|(sub, _, _)| *sub);
        for (_, w, made) in steps.drain(..) {
            made.emit(json[w], sink);
        }
    }
    for (b, d) in batches.iter_mut().zip(done) {
        b.done = d.into();
        b.done.clear();
        b.json.clear();
    }
}

/// Parsed lines handed over at a time, and batches of them in flight: enough to keep both
/// threads busy, few enough to hold little memory.
const PARSED_BATCH: usize = 256;
const PARSED_IN_FLIGHT: usize = 8;

/// Parse the pending lines in order, from `opts.from` up to `opts.until`, and send them in
/// batches with their index (for progress); stops when the receiver is gone.
fn parse_ahead(
    pending: &[Pending<'_>],
    opts: &Options,
    tx: std::sync::mpsc::SyncSender<Vec<(usize, Envelope)>>,
) {
    let mut batch = Vec::with_capacity(PARSED_BATCH);
    for (i, p) in pending.iter().enumerate() {
        if opts.from.is_some_and(|f| p.at < f) {
            continue;
        }
        if opts.until.is_some_and(|u| p.at > u) {
            break;
        }
        batch.push((
            i,
            parse(p.line).expect("the line parsed when it was indexed"),
        ));
        if batch.len() == PARSED_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(PARSED_BATCH));
            if tx.send(full).is_err() {
                return;
            }
        }
    }
    let _ = tx.send(batch);
}

/// JSON bytes handed to the writer thread at a time (whole lines), and chunks of them in
/// flight.
const WRITE_CHUNK: usize = 1 << 18;
const WRITE_IN_FLIGHT: usize = 16;

/// Run the simulation and write the shown records to `out` as JSON lines ([`json_line`]), in
/// order. The lines are formatted where the records are made (on the workers, as they make
/// them) and written on a thread of their own, in chunks. Returns the outcome
/// (without records) and whether writing failed; after a failure the simulation still runs to
/// the end, writing nothing more.
pub fn simulate_json<W: std::io::Write + Send>(
    program: Program,
    schemas: Schemas,
    text: &str,
    opts: &Options,
    progress: &dyn Fn(usize, usize),
    mut out: W,
) -> (Outcome, bool) {
    use std::sync::mpsc::sync_channel;
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Vec<u8>>(WRITE_IN_FLIGHT);
        // Written chunks come back to be filled again (fresh ones were fresh pages to fault in).
        let (back_tx, back_rx) = sync_channel::<Vec<u8>>(WRITE_IN_FLIGHT + 2);
        let writer = std::thread::Builder::new().name("sim-write".into());
        let writer = writer.spawn_scoped(scope, move || {
            let mut failed = false;
            for mut chunk in rx {
                if !failed {
                    failed = out.write_all(&chunk).is_err();
                }
                chunk.clear();
                let _ = back_tx.try_send(chunk);
            }
            failed | out.flush().is_err()
        });
        let writer = writer.expect("a thread can be started");
        let fresh = || Vec::with_capacity(WRITE_CHUNK + 4096);
        let mut chunk = fresh();
        let outcome = simulate_into(
            program,
            schemas,
            text,
            opts,
            progress,
            Sink::json(&mut |lines| {
                chunk.extend_from_slice(lines);
                if chunk.len() >= WRITE_CHUNK {
                    let next = back_rx.try_recv().unwrap_or_else(|_| fresh());
                    // The writer only stops early by panicking, which the join reports.
                    let _ = tx.send(std::mem::replace(&mut chunk, next));
                }
            }),
        );
        let _ = tx.send(chunk);
        drop(tx);
        let failed = writer.join().expect("the JSON writer does not panic");
        (outcome, failed)
    })
}

/// Fire every timer due at or before `until` (as [`Host::fire_until`]), handing each record to
/// `sink` as it comes: after the last input the clock runs through the remaining weeks of
/// timers, and collecting all of their records in one vector first was a fifth of the run
/// (growing it, and the kernel zeroing its fresh pages).
fn fire_until(host: &mut Host, until: DateTime<Utc>, sink: &mut dyn FnMut(Record)) {
    while let Some(records) = host.fire_next(until, None) {
        records.into_iter().for_each(&mut *sink);
    }
}

/// The flow a record belongs to, if any.
fn flow_of(e: &Effect) -> Option<&str> {
    match e {
        Effect::Entered { flow, .. }
        | Effect::Step { flow, .. }
        | Effect::Held { flow, .. }
        | Effect::Dropped { flow, .. }
        | Effect::NotEntered { flow, .. }
        | Effect::Exited { flow, .. }
        | Effect::Conversion { flow, .. } => Some(flow),
        Effect::Send(m) => Some(&m.flow),
        _ => None,
    }
}

/// Is this record part of the timeline shown to people (step traces and timer bookkeeping
/// are left out; `send`, `held`, `exit` and the like stay)?
pub fn shown(e: &Effect) -> bool {
    !matches!(e, Effect::Step { .. } | Effect::CancelTimer { .. })
}

/// One JSON object per record: `type`, `at`, `person`, then the effect's own fields
/// (`flow`, `step`, `message_id`, `body` for a send).
pub fn record_json(r: &Record) -> Json {
    let mut v = serde_json::to_value(&r.effect).expect("effects serialise");
    let obj = v.as_object_mut().expect("tagged enum");
    let kind = obj.remove("effect").unwrap_or(Json::Null);
    let mut out = serde_json::Map::new();
    out.insert("type".into(), kind);
    out.insert(
        "at".into(),
        json!(r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    out.insert("person".into(), json!(r.person));
    for (k, val) in obj.iter() {
        // The send's own `at` equals the record's; keep one.
        if k != "at" {
            out.insert(k.clone(), val.clone());
        }
    }
    Json::Object(out)
}

pub fn render_json(records: &[Record]) -> String {
    let mut s = String::new();
    for r in records.iter().filter(|r| shown(&r.effect)) {
        s.push_str(&json_line(r));
    }
    s
}

/// One record as a JSON line (with its newline): the text of [`record_json`], written
/// directly. Building a JSON tree per record and printing it was a sixth of the simulator's
/// time; the fields are gathered by reference and written in key order (serde_json's maps are
/// sorted), which a test checks against [`record_json`] for every kind of effect.
pub fn json_line(r: &Record) -> String {
    let mut out = Vec::with_capacity(256);
    write_line(&mut out, r);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// [`json_line`], appended to `out`.
fn write_line(out: &mut Vec<u8>, r: &Record) {
    use crate::engine::Message;
    let at = r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut f: Vec<(&str, Field)> = Vec::with_capacity(13);
    let (kind, mut person) = (effect_type(&r.effect), r.person.as_str());
    match &r.effect {
        Effect::Entered {
            instance,
            flow,
            flow_version,
            entry_key,
        } => f.extend([
            ("entry_key", Field::Str(entry_key)),
            ("flow", Field::Str(flow)),
            ("flow_version", Field::Str(flow_version)),
            ("instance", Field::Str(instance)),
        ]),
        Effect::Step {
            instance,
            flow,
            step,
            op,
        } => f.extend([
            ("flow", Field::Str(flow)),
            ("instance", Field::Str(instance)),
            ("op", Field::Str(op)),
            ("step", Field::Num(u64::from(*step))),
        ]),
        // The effect's own `at` is dropped: the record's stands.
        Effect::ScheduleTimer { instance, step, .. }
        | Effect::CancelTimer { instance, step, .. } => f.extend([
            ("instance", Field::Str(instance)),
            ("step", Field::Num(u64::from(*step))),
        ]),
        Effect::Send(m) => {
            let Message {
                message_id,
                instance,
                flow,
                flow_version,
                step,
                person: p,
                to,
                body,
                encoding,
                segments,
                variant,
                at: _,
                local_time,
                kind,
                links,
            } = m;
            // The message's `person` replaces the record's (a later key wins in the map).
            person = p;
            f.extend([
                ("body", Field::Str(body)),
                ("encoding", Field::Str(encoding)),
                ("flow", Field::Str(flow)),
                ("flow_version", Field::Str(flow_version)),
                ("instance", Field::Str(instance)),
                ("kind", Field::Ser(kind)),
                ("links", Field::Ser(links)),
                ("local_time", Field::Str(local_time)),
                ("message_id", Field::Str(message_id)),
                ("segments", Field::Num(*segments as u64)),
                ("step", Field::Num(u64::from(*step))),
                ("to", Field::Str(to)),
                ("variant", Field::OptStr(variant.as_deref())),
            ]);
        }
        Effect::Held {
            instance,
            flow,
            step,
            reason,
            until,
        } => f.extend([
            ("flow", Field::Str(flow)),
            ("instance", Field::Str(instance)),
            ("reason", Field::Str(reason)),
            ("step", Field::Num(u64::from(*step))),
            ("until", Field::Ser(until)),
        ]),
        Effect::Dropped {
            instance,
            flow,
            step,
            reason,
        } => f.extend([
            ("flow", Field::Str(flow)),
            ("instance", Field::Str(instance)),
            ("reason", Field::Str(reason)),
            ("step", Field::Num(u64::from(*step))),
        ]),
        Effect::NotEntered { flow, reason } => {
            f.extend([("flow", Field::Str(flow)), ("reason", Field::Str(reason))])
        }
        Effect::Exited {
            instance,
            flow,
            reason,
        } => f.extend([
            ("flow", Field::Str(flow)),
            ("instance", Field::Str(instance)),
            ("reason", Field::Str(reason)),
        ]),
        Effect::Conversion {
            flow,
            step,
            variant,
            message_id,
            order_id,
            revenue,
        } => f.extend([
            ("flow", Field::Str(flow)),
            ("message_id", Field::Str(message_id)),
            ("order_id", Field::OptStr(order_id.as_deref())),
            ("revenue", Field::OptStr(revenue.as_deref())),
            ("step", Field::Num(u64::from(*step))),
            ("variant", Field::OptStr(variant.as_deref())),
        ]),
        Effect::ConsentChanged { from, to, source } => f.extend([
            ("from", Field::Str(from.as_str())),
            ("source", Field::Str(source)),
            ("to", Field::Str(to.as_str())),
        ]),
        Effect::HelpReply { to, body } => f.extend([
            ("body", Field::Str(body)),
            ("to", Field::OptStr(to.as_deref())),
        ]),
        Effect::ReplyRecorded {
            body,
            keyword,
            routed_to,
        } => f.extend([
            ("body", Field::Str(body)),
            ("keyword", Field::OptStr(keyword.as_deref())),
            ("routed_to", Field::Ser(routed_to)),
        ]),
        Effect::DeliveryRecorded {
            message_id,
            status,
            error_code,
        } => f.extend([
            ("error_code", Field::OptStr(error_code.as_deref())),
            ("message_id", Field::Str(message_id)),
            ("status", Field::Str(status)),
        ]),
        Effect::ClickRecorded { message_id } => f.push(("message_id", Field::Str(message_id))),
        Effect::PluginFailed { plugin, reason } => f.extend([
            ("plugin", Field::Str(plugin)),
            ("reason", Field::Str(reason)),
        ]),
        Effect::Duplicate { id } => f.push(("id", Field::Str(id))),
    }
    // Each arm lists its fields in key order (serde_json's maps are sorted); the three every
    // record has are merged in as the fields are written (sorting every record's fields was a
    // share of writing them).
    debug_assert!(
        f.windows(2).all(|w| w[0].0 < w[1].0),
        "fields out of key order"
    );
    let mut common = [
        ("at", Field::Str(&at)),
        ("person", Field::Str(person)),
        ("type", Field::Str(kind)),
    ]
    .into_iter()
    .peekable();
    out.push(b'{');
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, k: &str, v: &Field| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_json(out, k);
        out.push(b':');
        match v {
            Field::Str(s) => write_json(out, s),
            Field::OptStr(s) => write_json(out, s),
            Field::Num(n) => {
                use std::io::Write;
                let _ = write!(out, "{n}");
            }
            Field::Ser(x) => x.write_to(out),
        }
    };
    for (k, v) in &f {
        while let Some((c, cv)) = common.next_if(|(c, _)| c < k) {
            field(out, c, &cv);
        }
        field(out, k, v);
    }
    for (c, cv) in common {
        field(out, c, &cv);
    }
    out.extend_from_slice(b"}\n");
}

/// A field of a JSON line, borrowed from the record.
enum Field<'r> {
    Str(&'r str),
    OptStr(Option<&'r str>),
    Num(u64),
    Ser(&'r dyn erased::Ser),
}

/// Object-safe serialisation into a byte buffer (serde's trait is not object safe).
mod erased {
    pub trait Ser {
        fn write_to(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Ser for T {
        fn write_to(&self, out: &mut Vec<u8>) {
            serde_json::to_writer(out, self).expect("effects serialise");
        }
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(out, v).expect("effects serialise");
}

/// The `effect` tag of an effect (`rename_all = "snake_case"`).
fn effect_type(e: &Effect) -> &'static str {
    match e {
        Effect::Entered { .. } => "entered",
        Effect::Step { .. } => "step",
        Effect::ScheduleTimer { .. } => "schedule_timer",
        Effect::CancelTimer { .. } => "cancel_timer",
        Effect::Send(_) => "send",
        Effect::Held { .. } => "held",
        Effect::Dropped { .. } => "dropped",
        Effect::NotEntered { .. } => "not_entered",
        Effect::Exited { .. } => "exited",
        Effect::Conversion { .. } => "conversion",
        Effect::ConsentChanged { .. } => "consent_changed",
        Effect::HelpReply { .. } => "help_reply",
        Effect::ReplyRecorded { .. } => "reply_recorded",
        Effect::DeliveryRecorded { .. } => "delivery_recorded",
        Effect::ClickRecorded { .. } => "click_recorded",
        Effect::PluginFailed { .. } => "plugin_failed",
        Effect::Duplicate { .. } => "duplicate",
    }
}

fn describe(e: &Effect) -> String {
    match e {
        Effect::Entered { entry_key, .. } => format!("entered (key {entry_key})"),
        Effect::NotEntered { reason, .. } => format!("not entered: {reason}"),
        Effect::ScheduleTimer { at, step, .. } => {
            format!("waits until {} (step {step})", at.format("%Y-%m-%d %H:%MZ"))
        }
        Effect::Send(m) => {
            let variant = m
                .variant
                .as_ref()
                .map(|v| format!(" variant {v},"))
                .unwrap_or_default();
            format!(
                "sent step {} ({}{variant} {}, {} segment{}, local {}): {:?}",
                m.step,
                if m.kind == crate::ir::FlowKind::Marketing {
                    "marketing"
                } else {
                    "transactional"
                },
                m.encoding,
                m.segments,
                if m.segments == 1 { "" } else { "s" },
                m.local_time,
                m.body
            )
        }
        Effect::Held {
            reason,
            until,
            step,
            ..
        } => match until {
            Some(u) => format!(
                "held step {step} until {}: {reason}",
                u.format("%Y-%m-%d %H:%MZ")
            ),
            None => format!("held step {step}: {reason}"),
        },
        Effect::Dropped { reason, step, .. } => format!("dropped step {step}: {reason}"),
        Effect::Exited { reason, .. } => format!("exited: {reason}"),
        Effect::Conversion {
            order_id,
            revenue,
            step,
            variant,
            ..
        } => format!(
            "converted: order {} revenue {} (credited to step {step}{})",
            order_id.as_deref().unwrap_or("?"),
            revenue.as_deref().unwrap_or("?"),
            variant
                .as_ref()
                .map(|v| format!(", variant {v}"))
                .unwrap_or_default()
        ),
        Effect::ConsentChanged { from, to, source } => {
            format!("consent {} -> {} ({source})", from.as_str(), to.as_str())
        }
        Effect::HelpReply { body, .. } => format!("help reply: {body:?}"),
        Effect::ReplyRecorded {
            body,
            keyword,
            routed_to,
        } => {
            let k = keyword
                .as_ref()
                .map(|k| format!(" keyword {k}"))
                .unwrap_or_default();
            let r = if routed_to.is_empty() {
                " (nothing waited)".to_string()
            } else {
                format!(" -> {}", routed_to.join(", "))
            };
            format!("replied {body:?}{k}{r}")
        }
        Effect::DeliveryRecorded {
            message_id,
            status,
            error_code,
        } => {
            format!(
                "delivery {message_id}: {status}{}",
                error_code
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            )
        }
        Effect::ClickRecorded { message_id } => format!("clicked {message_id}"),
        Effect::Duplicate { id } => format!("duplicate input {id} ignored"),
        Effect::PluginFailed { plugin, reason } => {
            format!("plugin {plugin} failed ({reason}); fallback used")
        }
        Effect::Step { op, step, .. } => format!("step {step} {op}"),
        Effect::CancelTimer { step, .. } => format!("timer for step {step} cancelled"),
    }
}

/// Text: one section per person, their records in time order.
pub fn render_text(out: &Outcome) -> String {
    let mut by_person: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in out.records.iter().filter(|r| shown(&r.effect)) {
        by_person.entry(r.person.as_str()).or_default().push(r);
    }
    let mut s = String::new();
    let sends = out
        .records
        .iter()
        .filter(|r| matches!(r.effect, Effect::Send(_)))
        .count();
    let held = out
        .records
        .iter()
        .filter(|r| matches!(r.effect, Effect::Held { .. }))
        .count();
    let dropped = out
        .records
        .iter()
        .filter(|r| matches!(r.effect, Effect::Dropped { .. }))
        .count();
    // Timer records carry only the instance: name its flow from the entries seen.
    let mut flows_of: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &out.records {
        if let Effect::Entered { instance, flow, .. } = &r.effect {
            flows_of.insert(instance, flow);
        }
    }
    for (person, recs) in &by_person {
        let name = if person.is_empty() {
            "(inputs)"
        } else {
            person
        };
        s.push_str(&format!("== {name}\n"));
        for r in recs {
            let flow = match &r.effect {
                Effect::ScheduleTimer { instance, .. } => flows_of.get(instance.as_str()).copied(),
                e => flow_of(e),
            };
            let flow = flow.map(|f| format!("{f}: ")).unwrap_or_default();
            s.push_str(&format!(
                "  {}  {flow}{}\n",
                r.at.format("%Y-%m-%d %H:%MZ"),
                describe(&r.effect)
            ));
        }
    }
    s.push_str(&format!(
        "-- {} inputs, {} people, {sends} messages sent, {held} held, {dropped} dropped, {} refused\n",
        out.inputs,
        out.host.people.len(),
        out.refused.len()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Consent, Link, Message};
    use crate::ir::FlowKind;

    /// The simulator's parse is `parse_line`'s, errors included.
    #[test]
    fn parse_is_parse_line() {
        let lines = [
            r#"{"type":"order.created","at":"2026-03-02T14:00:00Z","id":"o1","data":{"a":[1,{"b":null}]}}"#,
            r#"{"source":"aftercart","type":"x","at":"2026-03-02T14:00:00+02:00","id":17}"#,
            r#"{"type":"x","at":"2026-03-02T14:00:00Z","data":{"z":1}}"#,
            r#"{"type":"x","at":"2026-03-02T14:00:00Z","id":-3,"data":{}}"#,
            r#"{"type":"x","at":"2026-03-02T14:00:00Z","id":null,"data":7}"#,
            r#"{"type":"x","at":"yesterday","id":"a"}"#,
            r#"{"type":7,"at":"2026-03-02T14:00:00Z","id":"a"}"#,
            r#"{"at":"2026-03-02T14:00:00Z","id":"a"}"#,
            r#"{"topic":"orders/create","received_at":"2026-03-02T14:00:00Z","headers":{"X-Shopify-Event-Id":"e1"},"body":{"id":1}}"#,
            r#"{"source":"shopify","type":"x","at":"2026-03-02T14:00:00Z","id":"a"}"#,
            r#"{"source":"other","topic":"t","type":"x","at":"2026-03-02T14:00:00Z","id":"a"}"#,
            r#"[1,2]"#,
            r#"{"type":"x""#,
            r#"{"type":"x","at":"2026-03-02T14:00:00Z","at":"2026-03-03T14:00:00Z"}"#,
            r#"{"source":null,"topic":null,"type":"x","at":"2026-03-02T14:00:00Z"}"#,
            r#"{"source":7,"type":"x","at":"2026-03-02T14:00:00Z"}"#,
            r#"{"type":"x\u0041","at":"2026-03-02T14:00:00Z","extra":[1,{"a":2}]} "#,
            r#" {"type":"x","at":"2026-03-02T14:00:00Z"} trailing"#,
            r#"["x","2026-03-02T14:00:00Z"]"#,
        ];
        let synthetic = synthetic::events(30);
        for line in lines.into_iter().chain(synthetic.lines()) {
            assert_eq!(parse(line), parse_line(line), "{line}");
            if let Some(at) = time_of(line) {
                assert_eq!(parse_line(line).map(|e| e.at), Ok(at), "{line}");
            }
        }
        assert!(synthetic.lines().all(|l| time_of(l).is_some()));
    }

    /// The example flows' program and schemas.
    fn example_program() -> (Program, Schemas) {
        let flows = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
        let checked = crate::check::check_paths(&[flows]).expect("the example flows load");
        let schemas = Schemas::builtin()
            .with_custom(&checked.project.custom_events)
            .expect("their custom events");
        (checked.program.expect("no errors"), schemas)
    }

    /// People split over workers give the single host's records, in its order, and the same
    /// outcome: with and without `--until`, for one to three workers, with a duplicate and a
    /// refused input among the synthetic ones.
    #[test]
    fn sharded_is_serial() {
        let (program, schemas) = example_program();
        let mut text = synthetic::events(400);
        let dup = text.lines().nth(7).expect("a line").to_string();
        text.push_str(&dup);
        text.push_str(
            "\n{\"type\":\"no.such\",\"at\":\"2026-03-05T10:00:00Z\",\"id\":\"x1\",\"data\":{}}\n",
        );
        text.push_str("{\"type\":\"sms.replied\",\"at\":\"2026-03-05T10:00:00Z\",\"id\":\"x2\",\"data\":{\"from\":\"+19175550000\",\"body\":\"STOP\"}}\n");
        let (pending, refused, shopify) = index_events(&text);
        assert!(!shopify);
        let until = DateTime::parse_from_rfc3339("2026-04-10T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for until in [Some(until), None] {
            let opts = Options { from: None, until };
            let run = Run {
                pending: &pending,
                opts: &opts,
                progress: &|_, _| {},
            };
            let collect = |workers: usize| {
                let mut records = Vec::new();
                let (p, s, r) = (program.clone(), schemas.clone(), refused.clone());
                let out = run.go(p, s, r, Sink::Records(&mut |r| records.push(r)), workers);
                let shape = (
                    out.refused,
                    out.inputs,
                    out.host.people.len(),
                    out.host.pending_timers(),
                );
                (records, shape)
            };
            // The same run with the lines written where the records are made.
            let lines = |workers: usize| {
                let mut bytes = Vec::new();
                let (p, s, r) = (program.clone(), schemas.clone(), refused.clone());
                let mut take = |b: &[u8]| bytes.extend_from_slice(b);
                let out = run.go(p, s, r, Sink::json(&mut take), workers);
                (bytes, out.inputs)
            };
            let serial = collect(0);
            assert!(serial
                .0
                .iter()
                .any(|r| matches!(r.effect, Effect::Duplicate { .. })));
            assert_eq!(serial.1 .0.len(), 1, "{:?}", serial.1 .0);
            for workers in 0..=3 {
                if workers > 0 {
                    let sharded = collect(workers);
                    assert_eq!(sharded.0.len(), serial.0.len(), "{workers} workers");
                    assert!(sharded.0 == serial.0, "{workers} workers: records differ");
                    assert_eq!(sharded.1, serial.1, "{workers} workers");
                }
                // The JSON lines, serial (each record written on the run's thread) and sharded.
                let (bytes, inputs) = lines(workers);
                assert!(
                    bytes == render_json(&serial.0).into_bytes(),
                    "{workers} workers"
                );
                assert_eq!(inputs, serial.1 .1);
            }
        }
    }

    /// `json_line` writes what `record_json` builds, for every kind of effect.
    #[test]
    fn json_line_is_record_json() {
        let t = DateTime::parse_from_rfc3339("2026-03-02T14:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = |x: &str| x.to_string();
        let msg = Message {
            message_id: s("m1"),
            instance: s("i1"),
            flow: s("f"),
            flow_version: s("v"),
            step: 3,
            person: s("customer:9"),
            to: s("+1212"),
            body: s("Hi \"Ada\" \\ é\n😀 \u{1}"),
            encoding: s("UCS-2"),
            segments: 2,
            variant: Some(s("a")),
            at: t,
            local_time: s("2026-03-02T09:00:00-05:00 America/New_York"),
            kind: FlowKind::Marketing,
            links: vec![Link {
                code: s("c"),
                url: s("https://x/y?a=1&b=\"2\""),
            }],
        };
        let effects = vec![
            Effect::Entered {
                instance: s("i"),
                flow: s("f"),
                flow_version: s("v"),
                entry_key: s("k"),
            },
            Effect::Step {
                instance: s("i"),
                flow: s("f"),
                step: 1,
                op: s("send"),
            },
            Effect::ScheduleTimer {
                instance: s("i"),
                step: 2,
                at: t + Duration::days(1),
            },
            Effect::CancelTimer {
                instance: s("i"),
                step: 2,
                at: t,
            },
            Effect::Send(msg.clone()),
            Effect::Send(Message {
                variant: None,
                links: vec![],
                kind: FlowKind::Transactional,
                ..msg
            }),
            Effect::Held {
                instance: s("i"),
                flow: s("f"),
                step: 1,
                reason: s("quiet"),
                until: Some(t),
            },
            Effect::Held {
                instance: s("i"),
                flow: s("f"),
                step: 1,
                reason: s("quiet"),
                until: None,
            },
            Effect::Dropped {
                instance: s("i"),
                flow: s("f"),
                step: 1,
                reason: s("no"),
            },
            Effect::NotEntered {
                flow: s("f"),
                reason: s("r"),
            },
            Effect::Exited {
                instance: s("i"),
                flow: s("f"),
                reason: s("end"),
            },
            Effect::Conversion {
                flow: s("f"),
                step: 1,
                variant: None,
                message_id: s("m"),
                order_id: Some(s("1")),
                revenue: None,
            },
            Effect::ConsentChanged {
                from: Consent::Unknown,
                to: Consent::Unsubscribed,
                source: s("keyword"),
            },
            Effect::HelpReply {
                to: None,
                body: s("help"),
            },
            Effect::ReplyRecorded {
                body: s("1"),
                keyword: Some(s("opt_out")),
                routed_to: vec![s("a"), s("b")],
            },
            Effect::DeliveryRecorded {
                message_id: s("m"),
                status: s("failed"),
                error_code: Some(s("21610")),
            },
            Effect::ClickRecorded { message_id: s("m") },
            Effect::PluginFailed {
                plugin: s("p"),
                reason: s("trap"),
            },
            Effect::Duplicate { id: s("e1") },
        ];
        for effect in effects {
            for person in ["customer:1", ""] {
                let r = Record {
                    at: t,
                    person: person.to_string(),
                    effect: effect.clone(),
                };
                assert_eq!(json_line(&r), format!("{}\n", record_json(&r)), "{r:?}");
            }
        }
    }
}
