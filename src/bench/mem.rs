//! This process's peak and current resident memory (`/proc/self/status`) and CPU time.
fn field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status.lines())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Peak resident bytes since the start or the last [`reset_peak`] (`VmHWM`).
pub fn peak() -> u64 {
    field("VmHWM")
}

/// Resident bytes now (`VmRSS`).
pub fn rss() -> u64 {
    field("VmRSS")
}

/// CPU time this process used so far, all threads, user and system (`/proc/self/stat`,
/// in ticks of 1/100 s).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command name (which is in parentheses): utime is the 14th
    // field of the line, stime the 15th
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = (rest.split_whitespace())
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11)
        .zip(f.get(12))
        .map_or(0.0, |(u, s)| (u + s) as f64 / 100.0)
}

/// Resets the peak to the current resident size (Linux: `5` to `clear_refs`).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Returns the allocator's free memory to the system (glibc's `malloc_trim`), so that
/// a later peak counts what is in use rather than what was freed and kept.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free pages of the allocator's
        // arenas; it has no preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}
