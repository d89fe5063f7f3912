//! Allocator settings the binaries apply at start (the `aftercart` binary, the benchmarks).

/// mimalloc's `mi_option_purge_delay` (index 15 in mimalloc v3's `mi_option_e`).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// How long freed memory stays with the process before mimalloc returns it to the OS, in ms.
///
/// mimalloc's default is 10 ms. The runtime frees and re-allocates megabytes every batch (sled
/// clones a leaf node per insert; a batch's person records, log entries and outbox messages are
/// built and dropped), and batches are tens to hundreds of milliseconds apart, so with 10 ms
/// the same pages went back to the kernel and were faulted in and zeroed again every batch:
/// 7-8% of the throughput benchmark's samples were the kernel clearing pages
/// (`clear_page_erms` under `mi_page_free_list_extend`). One second keeps a batch's memory for
/// the next one and still gives an idle daemon's memory back. docs/performance.md has the A/B.
const PURGE_DELAY_MS: i64 = 1000;

/// Apply the settings, unless the user set mimalloc's own environment variable (which then
/// wins, as mimalloc documents). Call first thing in `main`; harmless to call twice.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; mimalloc reads
    // the purge delay each time it decides to purge, so a change after start takes effect.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_is_set_in_mimalloc() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        super::tune();
        // SAFETY: reads an integer from mimalloc's option table.
        let got = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(got as i64, super::PURGE_DELAY_MS);
    }
}
