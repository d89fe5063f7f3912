//! The `aftercart` binary: a thin shim over `aftercart::cli`, which owns printing and exit codes.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(aftercart::cli::main());
}
