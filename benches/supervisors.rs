//! `cargo bench --bench supervisors -- [--cycles 20] [--contenders …]`:
//! `stigmer local` against supervisord, runit, s6 and bare Temporal
//! restarted by hand (the floor), on the same real Temporal dev server.
//! See `docs/benchmark.md` for the method and the latest results, and
//! `--help` for the flags.

mod harness;

fn main() {
    std::process::exit(harness::main());
}
