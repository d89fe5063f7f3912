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

/// mimalloc's `mi_option_allow_thp` (index 43 in mimalloc v3's `mi_option_e`).
const MI_OPTION_ALLOW_THP: i32 = 43;

/// Settings for a process that runs the durable runtime over a store (`SledStore::open_with`
/// applies them, so every command that opens one and the runtime's benchmarks): no
/// transparent huge pages, unless the user set mimalloc's own `MIMALLOC_ALLOW_THP`.
///
/// Why: mimalloc asks the kernel for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), so
/// each first touch of fresh memory faults in and zeroes 2 MiB. The runtime keeps allocating
/// fresh memory (sled's page cache filling, leaf nodes cloned per insert, batches of records),
/// and `clear_page_erms` under `do_huge_pmd_anonymous_page` was 13% of the throughput
/// benchmark's main-thread samples; partly used huge pages also count whole in the RSS. With
/// them off (`MIMALLOC_ALLOW_THP=0`, alternated): sys CPU 0.79-0.87 s -> 0.35-0.41 s, max RSS
/// -30 MB, events/s +11% (docs/performance.md, "Session 9"). The simulator, which holds a
/// large in-memory working set and allocates it once, is 4% faster WITH them, so it keeps
/// them: this is not part of [`tune`].
///
/// mimalloc applies its option at start by `prctl(PR_SET_THP_DISABLE)`; by the time a
/// command knows it opens a store, mimalloc has started (and advised its first arena), so the
/// same `prctl` is made here: it covers every mapping's future faults, the advised ones too.
pub fn tune_for_store() {
    if !set_option("MIMALLOC_ALLOW_THP", MI_OPTION_ALLOW_THP, 0) {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this process's
    // memory descriptor. A kernel without it returns EINVAL, and THP then simply stays.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Give memory freed so far back to the OS now (mimalloc's `mi_collect(true)`), rather than
/// when the allocator next gets to it. Called once a store has opened: the open frees what it
/// built on the way (sled's decoded snapshot, the key file's read window), and mimalloc returns
/// freed memory only at a later allocation or free after the purge delay, so a daemon that
/// opened its store and waits for its first timer kept it. At a million people waiting, four
/// restarts in twelve held ~145 MiB more than the rest (506-511 against 361-366 MiB); with the
/// purge delay at 0, six in six held 361-362 (docs/performance.md, "Session 10"). Harmless
/// where mimalloc is not the global allocator (its heaps are then empty).
pub fn release_freed() {
    // SAFETY: `mi_collect` takes no pointers; it walks mimalloc's own heaps and arenas.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Set mimalloc's `option` to `value`, unless the user set its environment variable `env`
/// (which then wins, as mimalloc documents). Says whether it set it.
fn set_option(env: &str, option: i32, value: i64) -> bool {
    if std::env::var_os(env).is_some() {
        return false;
    }
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; mimalloc reads
    // the purge delay each time it decides to purge and whether to advise huge pages at each
    // new OS allocation, so a change after start takes effect.
    unsafe { libmimalloc_sys::mi_option_set(option, value as _) };
    true
}

/// Apply the settings, unless the user set mimalloc's own environment variable. Call first
/// thing in `main`; harmless to call twice.
pub fn tune() {
    set_option(
        "MIMALLOC_PURGE_DELAY",
        MI_OPTION_PURGE_DELAY,
        PURGE_DELAY_MS,
    );
}

#[cfg(test)]
mod tests {
    /// mimalloc's `option` after `tune`, or `None` when the user's `env` overrides it.
    fn after(tune: fn(), env: &str, option: i32) -> Option<i64> {
        if std::env::var_os(env).is_some() {
            return None;
        }
        tune();
        // SAFETY: reads an integer from mimalloc's option table.
        Some(unsafe { libmimalloc_sys::mi_option_get(option) } as i64)
    }

    #[test]
    fn the_purge_delay_is_set_in_mimalloc() {
        if let Some(got) = after(
            super::tune,
            "MIMALLOC_PURGE_DELAY",
            super::MI_OPTION_PURGE_DELAY,
        ) {
            assert_eq!(got, super::PURGE_DELAY_MS);
        }
    }

    #[test]
    fn a_store_process_turns_transparent_huge_pages_off() {
        let env = "MIMALLOC_ALLOW_THP";
        if let Some(got) = after(super::tune_for_store, env, super::MI_OPTION_ALLOW_THP) {
            assert_eq!(got, 0);
            #[cfg(target_os = "linux")]
            // SAFETY: PR_GET_THP_DISABLE only reads this process's flag.
            unsafe {
                assert_eq!(libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0), 1);
            }
        }
    }
}
