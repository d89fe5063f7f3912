//! The `aftercart` binary: a thin shim over `aftercart::cli`, which owns printing and exit codes.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    aftercart::alloc::tune();
    std::process::exit(aftercart::cli::main());
}
