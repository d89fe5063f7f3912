//! The `aftercart` binary: a thin shim over `aftercart::cli`, which owns printing and exit codes.
fn main() {
    std::process::exit(aftercart::cli::main());
}
