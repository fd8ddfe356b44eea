//! Software prefetch for the fan-out walk.
//!
//! A publish to 100k followers walks 100k accounts and sessions scattered
//! over the heap; each is a cache miss, and the walk is a chain of
//! dependent loads (account, then its session). Asking for the lines a few
//! followers ahead lets those misses overlap. Measured in
//! `results/BENCHMARKS.md`.

/// Hints the CPU to load the cache line at `addr`. Any address is allowed:
/// a prefetch never faults and never changes memory.
#[inline(always)]
pub fn prefetch<T>(addr: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: PREFETCHT0 is a hint. It does not dereference in the
    // language sense, cannot fault, and has no side effects on memory, so
    // it is sound for any pointer value, dangling or null included. SSE is
    // part of the x86_64 baseline, so the target feature is always present.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
