//! Link flags for the `stigmer` binary that make its short commands start
//! faster (`status` and an idempotent `start` are a few milliseconds, and
//! process start-up is half of that; docs/benchmark.md, "Start and status").
//! The glibc build only: the musl build is static and non-PIE through
//! `.cargo/config.toml`.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu") {
        return;
    }
    // Non-PIE: no relocation of the binary's own pointers at each start.
    println!("cargo:rustc-link-arg-bins=-no-pie");
    // The unwinder linked in (libgcc_eh), so `--as-needed` drops
    // libgcc_s.so: one shared library less to map and relocate, and no run
    // of its constructor, which probes the CPU with `cpuid` (a trap to the
    // hypervisor in a VM, ~5 µs each). `stigmer --version` 1.33 -> 1.06 ms.
    // Panics still unwind, run destructors and print backtraces.
    println!("cargo:rustc-link-arg-bins=-Wl,--push-state,--whole-archive,-lgcc_eh,--pop-state");
}
