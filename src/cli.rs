//! The command line: the only module that prints and chooses exit codes. Each subcommand is
//! glue over library code. Exit codes: 0 clean, 1 findings at or above `--fail-level` (or a
//! failed test / formatting check), 2 usage or I/O errors.

use crate::check;
use crate::diagnostic::render::{self, Format};
use crate::diagnostic::{codes, Severity};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "aftercart", version, about = "Post-purchase SMS flows as code")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, ValueEnum)]
enum OutFormat {
    Human,
    Json,
    Sarif,
    Github,
}

#[derive(Copy, Clone, ValueEnum, PartialEq, Eq, PartialOrd, Ord)]
enum FailLevel {
    Note,
    Warning,
    Error,
}

#[derive(Subcommand)]
enum PluginAction {
    /// Run a plugin (.wasm or .wat) on sample input: the answer, fuel used and peak memory;
    /// exits 1 naming the reason when it fails (out of fuel, memory limit, trap, forbidden
    /// import, ABI version, bad output).
    Test {
        plugin: PathBuf,
        /// Input JSON (default: a built-in sample profile and order).
        #[arg(long)]
        input: Option<PathBuf>,
    },
}

#[derive(Copy, Clone, ValueEnum, PartialEq, Eq)]
enum SimFormat {
    Text,
    Json,
}

#[derive(Copy, Clone, ValueEnum, PartialEq, Eq)]
enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(Copy, Clone, ValueEnum, PartialEq, Eq)]
enum ClockArg {
    Wall,
    Virtual,
}

#[derive(Subcommand)]
enum InspectWhat {
    /// A person's timeline: events, state, timers, messages.
    Person { id: String },
    /// Who waits where.
    Instances {
        #[arg(long)]
        flow: Option<String>,
    },
    /// What is due next.
    Timers {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Counts.
    Stats,
}

#[derive(Copy, Clone, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Subcommand)]
enum Command {
    /// Check flows and the project file; report every problem.
    Check {
        /// Files or folders (default: flows).
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: OutFormat,
        /// Exit 1 when a finding is at least this severe.
        #[arg(long, value_enum, default_value = "error")]
        fail_level: FailLevel,
    },
    /// Explain a diagnostic code, e.g. `aftercart explain AC0401`.
    Explain { code: String },
    /// Format flow files in place (or check that they are formatted).
    Fmt {
        paths: Vec<PathBuf>,
        /// Do not write; exit 1 when a file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// Compile flows to the IR (JSON) on stdout or to --out.
    Compile {
        paths: Vec<PathBuf>,
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Draw a flow's steps and branches.
    Graph {
        /// The flow's name.
        flow: String,
        #[arg(long, default_value = "flows")]
        flows: PathBuf,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
    /// Run every flow over an event file on a virtual clock and print each person's timeline.
    Simulate {
        #[arg(long, default_value = "flows")]
        flows: PathBuf,
        /// JSON lines: Shopify webhook envelopes or aftercart events (`-` reads stdin).
        #[arg(long)]
        events: PathBuf,
        /// Skip inputs before this instant (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Stop the clock here (RFC 3339); default: run until no timer is left.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: SimFormat,
    },
    /// Run flow tests (`tests/*.toml` beside the flows) on a virtual clock.
    Test {
        /// Test files or folders (default: flows).
        paths: Vec<PathBuf>,
        /// The flows under test (default: the folder holding the `tests` folder).
        #[arg(long)]
        flows: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: SimFormat,
    },
    /// Append events (JSON lines) durably to the store's log, de-duplicated by source id.
    Ingest {
        #[arg(long)]
        data: PathBuf,
        /// JSON lines: Shopify webhook envelopes or aftercart events (`-` reads stdin).
        file: PathBuf,
    },
    /// The durable runtime: process the log, fire timers, dispatch messages.
    Run {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "flows")]
        flows: PathBuf,
        /// Ingest this file first (as `aftercart ingest` does).
        #[arg(long)]
        events: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "wall")]
        clock: ClockArg,
        /// Stop when the log is processed, no timer is left and the outbox is empty.
        #[arg(long)]
        until_idle: bool,
        /// `file:PATH` (JSON lines, de-duplicated by message id), `stdout`, or `twilio`
        /// (configured by AFTERCART_TWILIO_* environment variables; docs/providers.md).
        #[arg(long, default_value = "stdout")]
        provider: String,
    },
    /// Per flow, step and A/B arm: entered, sent, segments, estimated cost, delivered, failed,
    /// clicks, replies, opt-outs, conversions and revenue; per split, which arm leads and
    /// whether it is significant yet (docs/reports.md).
    Report {
        #[arg(long)]
        data: PathBuf,
        /// Only from this UTC day on (YYYY-MM-DD or RFC 3339; counters are kept per UTC day).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// USD per SMS segment for the cost estimate (default: Twilio's US list price, 0.0083).
        #[arg(long)]
        price_per_segment: Option<String>,
    },
    /// The webhook server: Shopify and Twilio webhooks, tracked links, /metrics, /healthz,
    /// with the runtime (wall clock) running over the same store. Secrets come from the
    /// environment (AFTERCART_SHOPIFY_SECRET, AFTERCART_TWILIO_AUTH_TOKEN, AFTERCART_PUBLIC_URL)
    /// or the [server] table of aftercart.toml, never from flags. See docs/server.md.
    Serve {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "flows")]
        flows: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// `file:PATH` (JSON lines, de-duplicated by message id) or `stdout`.
        #[arg(long, default_value = "stdout")]
        provider: String,
    },
    /// Look inside a data directory.
    Inspect {
        #[arg(long)]
        data: PathBuf,
        #[command(subcommand)]
        what: InspectWhat,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Drop processed events received before DATE (RFC 3339 or YYYY-MM-DD) from the log.
    Compact {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        before: String,
    },
    /// Erase everything held on a person (`customer:ID` or `phone:+E164`).
    Forget {
        #[arg(long)]
        data: PathBuf,
        person: String,
    },
    /// Print everything held on a person as JSON.
    Export {
        #[arg(long)]
        data: PathBuf,
        person: String,
    },
    /// Deploy the flows to a data folder: people inside a flow stay on their version (default),
    /// are migrated where their step survives (--migrate), or are ended (--end).
    Deploy {
        #[arg(long)]
        data: PathBuf,
        /// The flows folder.
        flows: PathBuf,
        #[arg(long, conflicts_with = "end")]
        migrate: bool,
        #[arg(long)]
        end: bool,
    },
    /// Semantic diff of two program versions: flows, headers and steps added, removed or changed,
    /// and the step map a runtime uses to migrate waiting people. Exit 0: same, 1: changes.
    Diff {
        /// The old version: a flows folder (or .flow file), or a compiled IR JSON file.
        old: PathBuf,
        /// The new version, in either form.
        new: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: SimFormat,
        /// A data folder: show how many people wait at each affected step.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Work with WebAssembly plugins.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Count SMS encoding, units and segments of a text (`-` reads stdin).
    SmsCount {
        text: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Check {
            paths,
            format,
            fail_level,
        } => cmd_check(paths, format, fail_level),
        Command::Explain { code } => match codes::explanation(&code) {
            Some(text) => {
                print!("{text}");
                0
            }
            None => {
                eprintln!("error: unknown diagnostic code `{code}` (codes look like AC0101; see docs/diagnostics.md)");
                2
            }
        },
        Command::Fmt { paths, check } => cmd_fmt(paths, check),
        Command::Compile { paths, out } => cmd_compile(paths, out),
        Command::Graph {
            flow,
            flows,
            format,
        } => cmd_graph(flow, flows, format),
        Command::SmsCount { text, json } => cmd_sms_count(text, json),
        Command::Ingest { data, file } => cmd_ingest(data, file),
        Command::Run {
            data,
            flows,
            events,
            clock,
            until_idle,
            provider,
        } => cmd_run(data, flows, events, clock, until_idle, provider),
        Command::Serve {
            data,
            flows,
            listen,
            provider,
        } => cmd_serve(data, flows, listen, provider),
        Command::Inspect { data, what, json } => cmd_inspect(data, what, json),
        Command::Report {
            data,
            since,
            format,
            price_per_segment,
        } => cmd_report(data, since, format, price_per_segment),
        Command::Compact { data, before } => cmd_compact(data, before),
        Command::Forget { data, person } => cmd_forget(data, person),
        Command::Export { data, person } => cmd_export(data, person),
        Command::Diff {
            old,
            new,
            format,
            data,
        } => cmd_diff(old, new, format, data),
        Command::Plugin {
            action: PluginAction::Test { plugin, input },
        } => cmd_plugin_test(plugin, input),
        Command::Deploy {
            data,
            flows,
            migrate,
            end,
        } => cmd_deploy(data, flows, migrate, end),
        Command::Test {
            paths,
            flows,
            format,
        } => cmd_test(paths, flows, format),
        Command::Simulate {
            flows,
            events,
            from,
            until,
            format,
        } => cmd_simulate(flows, events, from, until, format),
    }
}

fn default_paths(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from("flows")]
    } else {
        paths
    }
}

fn color_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn cmd_check(paths: Vec<PathBuf>, format: OutFormat, fail_level: FailLevel) -> i32 {
    let checked = match check::check_paths(&default_paths(paths)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let fmt = match format {
        OutFormat::Human => Format::Human,
        OutFormat::Json => Format::Json,
        OutFormat::Sarif => Format::Sarif,
        OutFormat::Github => Format::Github,
    };
    let text = render::render(fmt, &checked.map, &checked.diagnostics, color_wanted());
    match format {
        OutFormat::Human => {
            eprint!("{text}");
            if checked.diagnostics.is_empty() {
                let flows = checked.program.as_ref().map(|p| p.flows.len()).unwrap_or(0);
                eprintln!(
                    "ok: {} files, {flows} flows, no problems",
                    checked.files.len()
                );
            }
        }
        _ => print!("{text}"),
    }
    let threshold = match fail_level {
        FailLevel::Note => Severity::Note,
        FailLevel::Warning => Severity::Warning,
        FailLevel::Error => Severity::Error,
    };
    if checked.diagnostics.iter().any(|d| d.severity >= threshold) {
        1
    } else {
        0
    }
}

fn cmd_fmt(paths: Vec<PathBuf>, check_only: bool) -> i32 {
    let (files, _) = match check::collect(&default_paths(paths)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut unformatted = 0;
    let mut failed = false;
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", f.display());
                return 2;
            }
        };
        match crate::syntax::format_source(&text) {
            Ok(out) if out == text => {}
            Ok(out) => {
                unformatted += 1;
                if check_only {
                    println!("{}: not formatted", f.display());
                } else if let Err(e) = write_atomic(&f, out.as_bytes()) {
                    eprintln!("error: cannot write {}: {e}", f.display());
                    return 2;
                } else {
                    println!("formatted {}", f.display());
                }
            }
            Err(diags) => {
                let mut map = crate::diagnostic::SourceMap::new();
                let id = map.add(check::display_path(&f), text.clone());
                let diags: Vec<_> = diags
                    .into_iter()
                    .map(|mut d| {
                        for l in &mut d.labels {
                            l.span.file = id;
                        }
                        d
                    })
                    .collect();
                eprint!(
                    "{}",
                    render::render(Format::Human, &map, &diags, color_wanted())
                );
                failed = true;
            }
        }
    }
    if failed {
        2
    } else if check_only && unformatted > 0 {
        1
    } else {
        0
    }
}

/// Write through a temporary file and rename, so a crash never leaves half a file.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("flow.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

fn compile_or_report(paths: Vec<PathBuf>) -> Result<crate::ir::Program, i32> {
    let checked = check::check_paths(&default_paths(paths)).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    if !checked.diagnostics.is_empty() {
        eprint!(
            "{}",
            render::render(
                Format::Human,
                &checked.map,
                &checked.diagnostics,
                color_wanted()
            )
        );
    }
    checked.program.ok_or_else(|| {
        eprintln!("error: the flows have errors; nothing compiled");
        1
    })
}

fn cmd_compile(paths: Vec<PathBuf>, out: Option<PathBuf>) -> i32 {
    let program = match compile_or_report(paths) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let json = serde_json::to_string_pretty(&program).expect("IR serialises") + "\n";
    match out {
        Some(path) => match std::fs::write(&path, json) {
            Ok(()) => {
                eprintln!(
                    "wrote {} ({} flows, hash {})",
                    path.display(),
                    program.flows.len(),
                    &program.hash[..16]
                );
                0
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                2
            }
        },
        None => {
            print!("{json}");
            0
        }
    }
}

fn cmd_graph(flow: String, flows: PathBuf, format: GraphFormat) -> i32 {
    let program = match compile_or_report(vec![flows]) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let Some(f) = program.flow(&flow) else {
        let names: Vec<&str> = program.flows.iter().map(|f| f.name.as_str()).collect();
        eprintln!("error: no flow named `{flow}`; flows: {}", names.join(", "));
        return 2;
    };
    match format {
        GraphFormat::Mermaid => print!("{}", crate::ir::graph::mermaid(f)),
        GraphFormat::Dot => print!("{}", crate::ir::graph::dot(f)),
    }
    0
}

fn cmd_sms_count(text: String, json: bool) -> i32 {
    let text = if text == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("error: cannot read stdin: {e}");
            return 2;
        }
        // A trailing newline from `echo` is not part of the message.
        s.strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t).to_string())
            .unwrap_or(s)
    } else {
        text
    };
    let count = crate::sms::count(&text);
    if json {
        println!("{}", count.to_json());
    } else {
        print!("{}", count.render_text(&text));
    }
    0
}

fn parse_time(s: &str, what: &str) -> Result<chrono::DateTime<chrono::Utc>, i32> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            eprintln!(
                "error: --{what} `{s}` is not an RFC 3339 time ({e}); e.g. 2026-03-02T00:00:00Z"
            );
            2
        })
}

fn read_input(path: &std::path::Path) -> Result<String, i32> {
    let res = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(path)
    };
    res.map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        2
    })
}

/// Compile a flows folder and build the schemas its project declares.
pub(crate) fn load_program(
    flows: &std::path::Path,
) -> Result<(crate::ir::Program, crate::schema::Schemas), i32> {
    load_project(flows).map(|(p, s, _)| (p, s))
}

/// [`load_program`] plus the project file it read (`serve` takes its `[server]` table).
fn load_project(
    flows: &std::path::Path,
) -> Result<
    (
        crate::ir::Program,
        crate::schema::Schemas,
        crate::project::Project,
    ),
    i32,
> {
    let checked = check::check_paths(&[flows.to_path_buf()]).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    if checked.has_errors() {
        eprint!(
            "{}",
            render::render(
                Format::Human,
                &checked.map,
                &checked.diagnostics,
                color_wanted()
            )
        );
        eprintln!("error: the flows have errors; fix them first (aftercart check)");
        return Err(1);
    }
    let schemas = crate::schema::Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .map_err(|e| {
            eprintln!("error: {e}");
            2
        })?;
    Ok((
        checked.program.expect("no errors means a program"),
        schemas,
        checked.project,
    ))
}

/// A bar over the lines of `text`. Only on a terminal (lines are counted only then: a scan of
/// the whole input) and only when the input is large enough to wait for.
fn progress_bar(text: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let len = text.lines().count() as u64;
    if len < 10_000 {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} inputs ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(pb)
}

fn cmd_simulate(
    flows: PathBuf,
    events: PathBuf,
    from: Option<String>,
    until: Option<String>,
    format: SimFormat,
) -> i32 {
    let (program, schemas) = match load_program(&flows) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let text = match read_input(&events) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let mut opts = crate::sim::Options::default();
    if let Some(f) = from {
        match parse_time(&f, "from") {
            Ok(t) => opts.from = Some(t),
            Err(c) => return c,
        }
    }
    if let Some(u) = until {
        match parse_time(&u, "until") {
            Ok(t) => opts.until = Some(t),
            Err(c) => return c,
        }
    }
    let pb = progress_bar(&text);
    let progress = |done: usize, _total: usize| {
        if let Some(pb) = &pb {
            pb.set_position(done as u64);
        }
    };
    let (out, mut write_failed) = if format == SimFormat::Json {
        // Stream: records are written as they happen (on a writer thread), never all held.
        crate::sim::simulate_json(program, schemas, &text, &opts, &progress, std::io::stdout())
    } else {
        let out = crate::sim::simulate(program, schemas, &text, &opts, &progress);
        (out, false)
    };
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    for r in &out.refused {
        if r.line > 0 {
            eprintln!("refused line {}: {}", r.line, r.reason);
        } else {
            eprintln!("refused {}", r.reason);
        }
    }
    if format == SimFormat::Text {
        let mut w = std::io::stdout().lock();
        write_failed |= w
            .write_all(crate::sim::render_text(&out).as_bytes())
            .is_err();
        write_failed |= w.flush().is_err();
    }
    // Freeing a large simulation's state record by record takes longer than the process exit.
    std::mem::forget(out);
    if write_failed {
        2
    } else {
        0
    }
}

fn cmd_test(paths: Vec<PathBuf>, flows: Option<PathBuf>, format: SimFormat) -> i32 {
    let paths = default_paths(paths);
    let flows = flows.unwrap_or_else(|| {
        let first = &paths[0];
        let mut dir = if first.is_file() {
            first.parent().map(PathBuf::from).unwrap_or_default()
        } else {
            first.clone()
        };
        // A tests folder (or a file in one) tests the flows of the folder above it.
        while dir.file_name().is_some_and(|n| n == "tests") {
            dir = dir.parent().map(PathBuf::from).unwrap_or_default();
        }
        if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        }
    });
    let (program, schemas) = match load_program(&flows) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let files = crate::flowtest::collect(&paths);
    if files.is_empty() {
        eprintln!(
            "error: no test files (tests/*.toml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return 2;
    }
    let results = match crate::flowtest::run_files(&program, &schemas, &files) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match format {
        SimFormat::Text => print!("{}", crate::flowtest::render_text(&results)),
        SimFormat::Json => {
            for r in &results {
                println!("{}", serde_json::to_string(r).expect("results serialise"));
            }
        }
    }
    if results.iter().all(|r| r.passed) {
        0
    } else {
        1
    }
}

// ------------------------------------------------------------------ the durable runtime

fn open_store(data: &std::path::Path) -> Result<std::sync::Arc<dyn crate::store::Store>, i32> {
    let mut opts = crate::store::OpenOptions::default();
    if let Some(v) = std::env::var_os(CHECKPOINT_ENV) {
        match v.to_str().and_then(parse_size) {
            Some(bytes) => opts.checkpoint_bytes = bytes,
            None => {
                eprintln!(
                    "error: {CHECKPOINT_ENV} must be a size such as 256M, 64K or 1G (0: never \
                     checkpoint), not {v:?}"
                );
                return Err(2);
            }
        }
    }
    crate::store::SledStore::open_with(data, opts)
        .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn crate::store::Store>)
        .map_err(|e| {
            eprintln!("error: {e}");
            2
        })
}

/// How much a store's writers hand sled between checkpoints (docs/storage.md, "Checkpoints"):
/// a restart replays at most this much, and each checkpoint pauses writers for about an open.
const CHECKPOINT_ENV: &str = "AFTERCART_CHECKPOINT_BYTES";

/// `256M`, `64K`, `1G` or plain bytes (binary units, an optional `iB`/`B`), as a byte count.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let shift = match s[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// For commands that read or maintain a store: a missing data directory is a mistake (a typo
/// in `--data`), not a request for a new empty store.
fn open_existing_store(
    data: &std::path::Path,
) -> Result<std::sync::Arc<dyn crate::store::Store>, i32> {
    if !data.join("db").is_dir() {
        eprintln!(
            "error: {} is not an aftercart data directory (no `db` inside); run \
             `aftercart run --data {}` first",
            data.display(),
            data.display()
        );
        return Err(2);
    }
    open_store(data)
}

fn ingest_and_report(store: &dyn crate::store::Store, file: &std::path::Path) -> i32 {
    let text = match read_input(file) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let pb = progress_bar(&text);
    let progress = |done: usize, _total: usize| {
        if let Some(pb) = &pb {
            pb.set_position(done as u64);
        }
    };
    let report = crate::runtime::ingest_text(store, &text, &progress);
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    for r in &report.refused {
        eprintln!("refused line {}: {}", r.line, r.reason);
    }
    // Re-ingesting a whole file is normal (replays, `run --events` on restart): name a few.
    for (line, seq) in report.duplicates.iter().take(5) {
        eprintln!("duplicate line {line}: already stored as event {seq}");
    }
    if report.duplicates.len() > 5 {
        eprintln!("... and {} more duplicates", report.duplicates.len() - 5);
    }
    let seqs = match (
        report.accepted.iter().map(|a| a.1).min(),
        report.accepted.iter().map(|a| a.1).max(),
    ) {
        (Some(a), Some(b)) => format!(" (events {a}..={b})"),
        _ => String::new(),
    };
    eprintln!(
        "ingested {}: {} accepted{seqs}, {} duplicate, {} refused",
        file.display(),
        report.accepted.len(),
        report.duplicates.len(),
        report.refused.len()
    );
    0
}

fn cmd_ingest(data: PathBuf, file: PathBuf) -> i32 {
    let store = match open_store(&data) {
        Ok(s) => s,
        Err(c) => return c,
    };
    ingest_and_report(&*store, &file)
}

fn cmd_run(
    data: PathBuf,
    flows: PathBuf,
    events: Option<PathBuf>,
    clock: ClockArg,
    until_idle: bool,
    provider: String,
) -> i32 {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let (program, schemas) = match load_program(&flows) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let provider = match crate::runtime::provider::from_spec(&provider) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let store = match open_store(&data) {
        Ok(s) => s,
        Err(c) => return c,
    };
    // SIGINT/SIGTERM set a flag; the loop finishes its batch (commit + flush) and returns.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("error: cannot install a signal handler: {e}");
            return 2;
        }
    }
    if let Some(file) = &events {
        let code = ingest_and_report(&*store, file);
        if code != 0 {
            return code;
        }
    }
    let opts = crate::runtime::Options {
        clock: match clock {
            ClockArg::Wall => crate::runtime::Clock::Wall,
            ClockArg::Virtual => crate::runtime::Clock::Virtual,
        },
        ..Default::default()
    };
    let mut rt = match crate::runtime::Runtime::new(store.clone(), program, schemas, opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = if until_idle || clock == ClockArg::Virtual {
        // The virtual clock has no "later": it runs to idle (the horizon bounds it).
        rt.run_until_idle(&*provider, &stop).map(|p| {
            eprintln!(
                "run: {} events, {} timers fired, {} messages sent, {} failed",
                p.entries, p.timers, p.sent, p.failed
            );
            report_checkpoints(&*store);
        })
    } else {
        eprintln!("running (wall clock); SIGINT or SIGTERM stops after the current batch");
        rt.run_forever(
            &*provider,
            &stop,
            std::time::Duration::from_millis(200),
            &mut |p| {
                eprintln!(
                    "{} events, {} timers, {} sent, {} failed",
                    p.entries, p.timers, p.sent, p.failed
                )
            },
        )
    };
    match result {
        Ok(()) => {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                report_checkpoints(&*store);
                eprintln!("stopped cleanly; the next run resumes from the store's cursor");
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// The store's checkpoints (docs/storage.md, "Checkpoints"), when it took any: each one held
/// its writers up, so an operator tuning `AFTERCART_CHECKPOINT_BYTES` sees count and pauses.
fn report_checkpoints(store: &dyn crate::store::Store) {
    let c = store.checkpoint_stats();
    if c.count > 0 {
        eprintln!(
            "store: {} checkpoints ({CHECKPOINT_ENV}), {} ms in all, longest {} ms",
            c.count,
            c.total.as_millis(),
            c.longest.as_millis()
        );
    }
}

fn cmd_serve(data: PathBuf, flows: PathBuf, listen: std::net::SocketAddr, provider: String) -> i32 {
    use crate::runtime::http;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (program, schemas, project) = match load_project(&flows) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let secrets = match http::Secrets::from_env_and_project(&project.server) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("error: cannot install a signal handler: {e}");
            return 2;
        }
    }
    let store = match open_store(&data) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut cfg = http::ServeConfig::new(listen, data.clone(), secrets);
    cfg.provider = provider;
    let server = match http::serve(store, program, schemas, cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    eprintln!(
        "serving on http://{} (data {}); SIGINT or SIGTERM stops after the current batch",
        server.addr(),
        data.display()
    );
    while !stop.load(Ordering::SeqCst) && server.runtime_error().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    match server.shutdown() {
        Ok(()) => {
            eprintln!("stopped cleanly; everything acknowledged is durable");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn cmd_inspect(data: PathBuf, what: InspectWhat, json: bool) -> i32 {
    use crate::runtime::inspect;
    let store = match open_existing_store(&data) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let out = match what {
        InspectWhat::Person { id } => inspect::person(&*store, &id).map(|v| {
            if json {
                return format!("{v:#}\n");
            }
            let mut s = format!("== {id}");
            if v["found"] != serde_json::json!(true) {
                return s + " (nothing stored)\n";
            }
            s += &format!("  consent {}\n", v["consent"].as_str().unwrap_or("?"));
            s += "events:\n";
            for e in v["events"].as_array().into_iter().flatten() {
                s += &format!(
                    "  #{:<6} {}  {}\n",
                    e["seq"],
                    e["received_at"].as_str().unwrap_or(""),
                    e["what"].as_str().unwrap_or("")
                );
            }
            s += "instances:\n";
            for i in v["instances"].as_array().into_iter().flatten() {
                s += &format!(
                    "  {} step {} waiting {}\n",
                    i["flow"].as_str().unwrap_or(""),
                    i["step"],
                    i["waiting"]
                );
            }
            s += "timers:\n";
            for t in v["timers"].as_array().into_iter().flatten() {
                s += &format!("  {} step {}\n", t["due"].as_str().unwrap_or(""), t["step"]);
            }
            s += "messages:\n";
            for m in v["messages"].as_array().into_iter().flatten() {
                s += &format!(
                    "  {} {} {} step {} [{}]: {}\n",
                    m["at"].as_str().unwrap_or(""),
                    m["message_id"].as_str().unwrap_or(""),
                    m["flow"].as_str().unwrap_or(""),
                    m["step"],
                    m["status"].as_str().unwrap_or(""),
                    m["body"]
                );
            }
            // A failed plugin call never stops a flow (the fallback applied); shown with its
            // reason so a merchant can see why a segment or recommendation fell back.
            let failures = v["plugin_failures"].as_array().cloned().unwrap_or_default();
            if !failures.is_empty() {
                s += "plugin failures (fallback used):\n";
                for f in &failures {
                    s += &format!(
                        "  {} {}: {}\n",
                        f["at"].as_str().unwrap_or(""),
                        f["plugin"].as_str().unwrap_or(""),
                        f["reason"].as_str().unwrap_or("")
                    );
                }
            }
            s
        }),
        InspectWhat::Instances { flow } => inspect::instances(&*store, flow.as_deref()).map(|v| {
            let footer = format!("-- {} live instances\n", v.len());
            listing(&v, json, &footer, |i| {
                format!(
                    "{}  {}  step {}  {} until {}",
                    i["person"].as_str().unwrap_or(""),
                    i["flow"].as_str().unwrap_or(""),
                    i["step"],
                    i["waiting"].as_str().unwrap_or("-"),
                    i["due"].as_str().unwrap_or("-")
                )
            })
        }),
        InspectWhat::Timers { limit } => inspect::timers(&*store, limit).map(|(v, total)| {
            listing(&v, json, &format!("-- {total} timers in all\n"), |t| {
                format!(
                    "{}  {}  step {}  {}",
                    t["due"].as_str().unwrap_or(""),
                    t["person"].as_str().unwrap_or(""),
                    t["step"],
                    t["instance"].as_str().unwrap_or("")
                )
            })
        }),
        InspectWhat::Stats => inspect::stats(&*store).map(|v| format!("{v:#}\n")),
    };
    match out {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// An `inspect` listing: one JSON object per line, or one text line per item and a footer.
fn listing(
    items: &[serde_json::Value],
    json: bool,
    footer: &str,
    line: impl Fn(&serde_json::Value) -> String,
) -> String {
    let mut s = String::new();
    for i in items {
        if json {
            s += &format!("{i}\n");
        } else {
            s += &line(i);
            s.push('\n');
        }
    }
    if !json {
        s += footer;
    }
    s
}

fn cmd_report(
    data: PathBuf,
    since: Option<String>,
    format: ReportFormat,
    price: Option<String>,
) -> i32 {
    use crate::runtime::report;
    let mut opts = report::Options::default();
    if let Some(since) = since {
        let t = if since.len() == 10 {
            parse_time(&format!("{since}T00:00:00Z"), "since")
        } else {
            parse_time(&since, "since")
        };
        let Ok(t) = t else { return 2 };
        opts.since = Some(t.date_naive());
    }
    if let Some(p) = price {
        match p.trim().parse::<rust_decimal::Decimal>() {
            Ok(d) if d >= rust_decimal::Decimal::ZERO => opts.price_per_segment = d,
            _ => {
                eprintln!(
                    "error: --price-per-segment: `{p}` is not a non-negative decimal amount in \
                     USD (e.g. 0.0083)"
                );
                return 2;
            }
        }
    }
    let store = match open_existing_store(&data) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let counters = match store.counters() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let rep = report::build(&counters, &opts);
    let out = match format {
        ReportFormat::Table => report::render_table(&rep),
        ReportFormat::Json => report::render_json(&rep),
        ReportFormat::Csv => report::render_csv(&rep),
    };
    let mut w = std::io::stdout().lock();
    if w.write_all(out.as_bytes()).and_then(|_| w.flush()).is_err() {
        return 2;
    }
    0
}

fn cmd_compact(data: PathBuf, before: String) -> i32 {
    let t = if before.len() == 10 {
        parse_time(&format!("{before}T00:00:00Z"), "before")
    } else {
        parse_time(&before, "before")
    };
    let Ok(t) = t else { return 2 };
    with_store(&data, |store| {
        let r = store.compact(t)?;
        eprintln!(
            "compacted: dropped {} events; the log now starts at {}",
            r.dropped, r.first_seq
        );
        Ok(())
    })
}

fn cmd_forget(data: PathBuf, person: String) -> i32 {
    with_store(&data, |store| {
        let r = crate::runtime::forget(store, &person)?;
        if r.found {
            eprintln!(
                "forgot {person}: {} events made unreadable, {} timers and {} messages deleted",
                r.events, r.timers, r.messages
            );
        } else {
            eprintln!("nothing stored on {person}");
        }
        Ok(())
    })
}

fn cmd_export(data: PathBuf, person: String) -> i32 {
    with_store(&data, |store| {
        println!("{:#}", crate::runtime::export(&**store, &person)?);
        Ok(())
    })
}

/// Open the store, run `f`, and turn its error into `error: ...` and exit code 2.
fn with_store(
    data: &std::path::Path,
    f: impl FnOnce(&std::sync::Arc<dyn crate::store::Store>) -> crate::runtime::Result<()>,
) -> i32 {
    let store = match open_existing_store(data) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match f(&store) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// A program version for `diff`: a compiled IR JSON file, or flows compiled on the spot.
fn load_version(path: &std::path::Path) -> Result<crate::ir::Program, i32> {
    let is_ir = path.is_file() && path.extension().is_some_and(|e| e == "json");
    if !is_ir {
        return compile_or_report(vec![path.to_path_buf()]).map_err(|_| 2);
    }
    let text = read_input(path)?;
    let program: crate::ir::Program = serde_json::from_str(&text).map_err(|e| {
        eprintln!(
            "error: {} is not a compiled program (aftercart compile output): {e}",
            path.display()
        );
        2
    })?;
    if program.ir_version != crate::ir::IR_VERSION {
        eprintln!(
            "error: {} has IR version {}, this aftercart reads version {}; recompile it",
            path.display(),
            program.ir_version,
            crate::ir::IR_VERSION
        );
        return Err(2);
    }
    Ok(program)
}

fn cmd_diff(old: PathBuf, new: PathBuf, format: SimFormat, data: Option<PathBuf>) -> i32 {
    let (a, b) = match (load_version(&old), load_version(&new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let mut d = crate::ir::diff::diff(&a, &b);
    // With a data folder: the people waiting at each (flow, old version, step), shown beside
    // each affected step.
    let waiting: Option<crate::ir::diff::Waiting> = match &data {
        None => None,
        Some(dir) => {
            let store = match open_existing_store(dir) {
                Ok(s) => s,
                Err(c) => return c,
            };
            match crate::runtime::deploy::waiting(&*store) {
                Ok(w) => Some(w),
                Err(e) => {
                    eprintln!("error: {e}");
                    return 2;
                }
            }
        }
    };
    if let Some(w) = &waiting {
        d.attach_waiting(w);
    }
    let text = match format {
        SimFormat::Text => d.render_text(),
        SimFormat::Json => d.to_json() + "\n",
    };
    if std::io::stdout().write_all(text.as_bytes()).is_err() {
        return 2;
    }
    if d.has_changes() {
        1
    } else {
        0
    }
}

fn cmd_deploy(data: PathBuf, flows: PathBuf, migrate: bool, end: bool) -> i32 {
    let (program, _) = match load_program(&flows) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let store = match open_store(&data) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let plan = if migrate {
        crate::runtime::deploy::Plan::Migrate
    } else if end {
        crate::runtime::deploy::Plan::End
    } else {
        crate::runtime::deploy::Plan::Keep
    };
    match crate::runtime::deploy::deploy(&*store, program, plan) {
        Ok(report) => {
            print!("{}", crate::runtime::deploy::render(&report, plan));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn cmd_plugin_test(plugin: PathBuf, input: Option<PathBuf>) -> i32 {
    let input = match input {
        Some(p) => match read_input(&p) {
            Ok(t) => Some(t),
            Err(c) => return c,
        },
        None => None,
    };
    match crate::plugins::plugin_test_report(&plugin, input.as_deref()) {
        Ok(report) => {
            print!("{report}");
            0
        }
        Err(report) => {
            eprint!("{report}");
            if !report.ends_with('\n') {
                eprintln!();
            }
            1
        }
    }
}
