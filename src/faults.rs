//! Test builds only (`--features test-faults`): faults a test names in
//! the file `EXE.fault` beside the executable, one per line (a takeover
//! that fails at a given step, a unit's supervisor that panics). The
//! shipped binary has none: without the feature, nothing is ever active
//! and no file is read.

/// The faults named now.
#[cfg(feature = "test-faults")]
pub fn named() -> Vec<String> {
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    let mut f = exe.into_os_string();
    f.push(".fault");
    std::fs::read_to_string(f)
        .map(|s| s.lines().map(|l| l.trim().to_string()).collect())
        .unwrap_or_default()
}

/// The faults named now: none outside test builds.
#[cfg(not(feature = "test-faults"))]
pub fn named() -> Vec<String> {
    Vec::new()
}

/// Is `fault` named?
#[cfg_attr(not(feature = "test-faults"), allow(dead_code))]
pub fn active(fault: &str) -> bool {
    named().iter().any(|f| f == fault)
}
