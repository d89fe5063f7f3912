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
