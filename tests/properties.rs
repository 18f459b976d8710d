//! Property tests of every parser of on-disk or user input: the PID file,
//! `/proc/PID/stat`, `/proc/net/tcp`, and the command line (flags and env
//! values through config validation). 100,000+ cases each: whatever the
//! input, parsing never panics and never yields something unsafe to act on.

use clap::Parser as _;
use proptest::prelude::*;
use stigmer::cli::{Cli, LocalCommand, Top};
use stigmer::config::Config;
use stigmer::pidfile::{self, PidFile};
use stigmer::process::proc::{parse_stat, parse_tcp_listeners};

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const VALID: &str = r#"{"version":1,"daemon":{"pid":10,"pgid":10,"start_time":5,"exe":"/bin/stigmer"},"temporal":{"pid":11,"pgid":11,"start_time":6,"exe":"/bin/temporal"},"frontend":"127.0.0.1:7233","ui_url":null,"http_addr":"127.0.0.1:9233","db_file":"/x/t.db","temporal_bin":"/bin/temporal","started_at":1}"#;

proptest! {
    #![proptest_config(cfg(100_000))]

    /// Arbitrary text: classified, never a panic; a record always has the
    /// current format version.
    #[test]
    fn pid_file_arbitrary_text(text in ".{0,300}") {
        match pidfile::parse(&text) {
            PidFile::Record(r) => prop_assert_eq!(r.version, pidfile::FORMAT_VERSION),
            PidFile::BarePid(_) | PidFile::Corrupt(_) | PidFile::Absent => {}
        }
    }

    /// Mutations of a valid record (truncation, byte flips, numbers out of
    /// range): never a panic; what parses keeps its pids as given, and a
    /// non-positive pid can never verify (so is never signalled).
    #[test]
    fn pid_file_mutated_record(
        cut in 0usize..VALID.len(),
        flip in 0usize..VALID.len(),
        byte in any::<u8>(),
        // Half the cases near the edge (0, 1, negatives: must never
        // verify), half anywhere an i64 reaches.
        pid in prop_oneof![-3i64..=3, any::<i64>()],
    ) {
        let mut bytes = VALID.as_bytes()[..cut.max(1)].to_vec();
        if flip < bytes.len() { bytes[flip] = byte; }
        let _ = pidfile::parse(&String::from_utf8_lossy(&bytes));
        let with_pid = VALID.replace("\"pid\":11", &format!("\"pid\":{pid}"));
        if let PidFile::Record(r) = pidfile::parse(&with_pid) {
            let t = &r.units["temporal"];
            prop_assert_eq!(i64::from(t.pid), pid);
            if t.pid <= 1 {
                prop_assert!(t.verify() != stigmer::process::Verdict::Match);
            }
        }
    }

    /// /proc/PID/stat with any command name and any tail.
    #[test]
    fn stat_lines(comm in ".{0,40}", tail in "[ 0-9A-Za-z()-]{0,200}") {
        let line = format!("123 ({comm}) {tail}");
        if let Some(st) = parse_stat(&line) {
            prop_assert!(!st.state.is_whitespace());
        }
    }

    /// /proc/net/tcp tables with arbitrary lines.
    #[test]
    fn net_tcp_tables(lines in proptest::collection::vec("[ 0-9A-Fa-f:]{0,120}", 0..6), port in any::<u16>()) {
        let table = format!("header\n{}", lines.join("\n"));
        let _ = parse_tcp_listeners(&table, port);
    }
}

proptest! {
    #![proptest_config(cfg(100_000))]

    /// Flags: any values for the numeric and address options either parse
    /// into a configuration whose values are all in range, or are rejected
    /// with at least one message per bad value.
    #[test]
    fn flags_validate_or_reject(
        interval in prop_oneof![Just("1".to_string()), "-?[0-9]{0,6}(\\.[0-9]{0,3})?", Just("NaN".into()), Just("inf".into())],
        timeout in prop_oneof![Just("60".to_string()), "-?[0-9]{0,6}(\\.[0-9]{0,3})?"],
        threshold in prop_oneof![Just("3".to_string()), "-?[0-9]{1,12}"],
        port in "[0-9]{1,6}",
        http in prop_oneof![Just("127.0.0.1:9233".to_string()), ".{0,25}", "[0-9.]{1,15}:[0-9]{1,6}"],
    ) {
        let args = [
            "stigmer", "local", "start", "--home", "/tmp/prop",
            "--health-interval", &interval, "--timeout", &timeout,
            "--failure-threshold", &threshold, "--port", &port, "--http-addr", &http,
        ];
        let Ok(cli) = Cli::try_parse_from(args) else { return Ok(()) };
        let Top::Local(l) = cli.command else { panic!("local expected") };
        let Some(LocalCommand::Start(a)) = l.command else { panic!("start expected") };
        match Config::new(stigmer::paths::StateDir::new("/tmp/prop"), &a.options, &Default::default()) {
            Ok(c) => {
                prop_assert!(c.health_interval.as_secs_f64() > 0.0 && c.health_interval.as_secs_f64() <= 86_400.0);
                prop_assert!(c.timeout.as_secs_f64() > 0.0);
                prop_assert!((1..=1000).contains(&c.failure_threshold));
                prop_assert!(c.port != 0);
                prop_assert!(c.http_addr.ip().is_loopback());
            }
            Err(stigmer::config::LoadError::Values(e)) => prop_assert!(!e.0.is_empty()),
            Err(e) => prop_assert!(false, "only values are checked here: {e}"),
        }
    }
}
