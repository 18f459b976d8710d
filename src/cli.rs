//! Command-line surface (clap). Every flag also reads a `STIGMER_*`
//! environment variable. Values are range-checked in [`crate::config`],
//! which reports every bad value at once.

use crate::config::options::Options;
use crate::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Lifecycle manager and supervisor for the local Temporal dev server.
#[derive(Debug, Parser)]
#[command(name = "stigmer", version, about)]
pub struct Cli {
    /// Debug logs (RUST_LOG overrides).
    #[arg(short, long, global = true, env = "STIGMER_VERBOSE")]
    pub verbose: bool,
    /// Log format of the daemon and of -v output.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "pretty",
        env = "STIGMER_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Top,
}

impl Cli {
    /// Parse the process arguments (exiting on a usage error, as clap
    /// does), and record which start options a flag or a variable set:
    /// those beat the configuration file.
    pub fn parse_args() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let Some(local) = matches.subcommand_matches("local") else {
            return cli;
        };
        let Top::Local(l) = &mut cli.command else {
            return cli;
        };
        match (&mut l.command, local.subcommand()) {
            (None, _) => l.start.explicit = explicit(local),
            (Some(LocalCommand::Start(a)), Some((_, m))) => a.explicit = explicit(m),
            (Some(LocalCommand::Restart(a)), Some((_, m))) => a.start.explicit = explicit(m),
            (Some(LocalCommand::Config(a)), Some((_, m))) => a.explicit = explicit(m),
            _ => {}
        }
        cli
    }
}

/// The start options whose value came from a flag or a variable.
fn explicit(m: &clap::ArgMatches) -> BTreeSet<String> {
    use clap::parser::ValueSource;
    Options::keys()
        .into_iter()
        .filter(|k| {
            matches!(
                m.value_source(k),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .collect()
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Top {
    /// Manage the local Temporal dev server and the services of its stack.
    Local(Box<Local>),
    /// Print the shell completion script (e.g. `stigmer completions bash >
    /// ~/.local/share/bash-completion/completions/stigmer`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (stigmer.1 and one per subcommand) into DIR
    /// (e.g. `stigmer man --dir ~/.local/share/man/man1`).
    Man {
        /// Where to write them.
        #[arg(long, default_value = ".", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Internal: the daemon's own entry points (run by `stigmer local
    /// start` and by an upgrade, never by hand).
    #[command(hide = true)]
    Daemon(DaemonArgs),
}

/// `stigmer daemon ...`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Which entry.
    #[command(subcommand)]
    pub command: DaemonCommand,
}

/// The daemon's entry points.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Run the daemon of HOME with the lock, the startup report pipe and
    /// the checked configuration the launching CLI hands over.
    Run(RunArgs),
    /// Check, or continue from, an upgrade's handover. Parsed by hand
    /// before these definitions (see `daemon::takeover`); declared here
    /// for `--help` and the man pages.
    Takeover(TakeoverArgs),
}

/// `stigmer daemon run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The state directory (`ps` shows whose daemon this is).
    #[arg(long, value_name = "DIR")]
    pub home: PathBuf,
    /// The held instance lock.
    #[arg(long, value_name = "FD")]
    pub lock_fd: i32,
    /// Where to send the startup report.
    #[arg(long, value_name = "FD")]
    pub report_fd: i32,
    /// The checked configuration (a memory file).
    #[arg(long, value_name = "FD")]
    pub config_fd: i32,
}

/// `stigmer daemon takeover`.
#[derive(Debug, Clone, Args)]
pub struct TakeoverArgs {
    /// The state directory (`ps` shows whose daemon this is).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Read a handover on stdin and answer the check.
    #[arg(long)]
    pub check: bool,
    /// The handover (a memory file).
    #[arg(long, value_name = "FD")]
    pub state_fd: Option<i32>,
    /// The previous binary, to hand back to.
    #[arg(long, value_name = "FD")]
    pub previous_fd: Option<i32>,
    /// Why the handover came back.
    #[arg(long, value_name = "WHY")]
    pub rollback: Option<String>,
}

/// `stigmer local [start|stop|status|restart|logs]`; bare `local` starts.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Local {
    /// Subcommand (default: start).
    #[command(subcommand)]
    pub command: Option<LocalCommand>,
    /// Start options when no subcommand is given.
    #[command(flatten)]
    pub start: StartArgs,
}

/// `stigmer local` subcommands. Each one's arguments are built only when
/// it is the one invoked ([`Lazy`]): every start option is declared for
/// four of them, and a `status` should not pay for building them all.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start Temporal under a supervising daemon (idempotent).
    Start(Lazy<StartArgs>),
    /// Stop the daemon and Temporal's whole process group (idempotent).
    Stop(Lazy<StopArgs>),
    /// Show state and health; exit 0 healthy, 1 not healthy, 3 not running.
    Status(Lazy<StatusArgs>),
    /// Restart Temporal or one service (new pid); starts everything if
    /// nothing runs.
    Restart(Lazy<RestartArgs>),
    /// Print Temporal's log, or a service's.
    Logs(Lazy<LogsArgs>),
    /// Print the effective configuration (flags, environment and the file
    /// merged) and check it, with start's errors and exit codes.
    Config(Lazy<StartArgs>),
    /// Replace the running daemon with this binary (or --binary), without
    /// restarting Temporal or any service.
    Upgrade(Lazy<UpgradeArgs>),
    /// Read stigmer.toml again and apply only the difference (added
    /// services start, removed ones stop, changed ones are replaced);
    /// also SIGHUP to the daemon.
    Reload(Lazy<ReloadArgs>),
}

/// Options of `reload`.
#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for the changed and added units to be ready.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub timeout: f64,
}

/// Options of `upgrade`.
#[derive(Debug, Clone, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// The binary that takes over [default: the one running this command].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

/// Arguments `T` of a subcommand, added to its `Command` only when that
/// subcommand is parsed (clap's `Command::defer`); otherwise `T` itself.
#[derive(Debug, Clone)]
pub struct Lazy<T>(pub T);

impl<T> std::ops::Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Lazy<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

/// The state directory.
#[derive(Debug, Clone, Args)]
pub struct HomeArg {
    /// State directory [default: $STIGMER_HOME, else ~/.stigmer].
    #[arg(long, env = "STIGMER_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
}

/// Options of `start` (and of the daemon).
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Configuration file [default: HOME/stigmer.toml when it exists].
    #[arg(long, env = "STIGMER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Every start option (also a `STIGMER_*` variable and a key of the
    /// file's `[temporal]` table).
    #[command(flatten)]
    pub options: Options,
    /// The options a flag or a variable set (they beat the file).
    #[arg(skip)]
    pub explicit: BTreeSet<String>,
    /// Run the daemon in this process (containers, systemd); logs to stderr.
    #[arg(long, env = "STIGMER_FOREGROUND")]
    pub foreground: bool,
}

/// Options of `stop`.
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Seconds to wait for everything to be gone.
    #[arg(
        long,
        default_value_t = 30.0,
        env = "STIGMER_STOP_TIMEOUT",
        value_name = "SECS"
    )]
    pub timeout: f64,
}

/// Options of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Print the status document as one JSON object.
    #[arg(long, env = "STIGMER_JSON")]
    pub json: bool,
}

/// Options of `restart`.
#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// `temporal` or a declared service [default: temporal].
    #[arg(value_name = "SERVICE")]
    pub service: Option<String>,
    /// Options used when nothing is running (restart then starts).
    #[command(flatten)]
    pub start: StartArgs,
}

/// Options of `logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// `temporal` or a declared service: its log alone [default: every
    /// unit's lines, interleaved in time order, each with its name].
    #[arg(value_name = "SERVICE", conflicts_with = "daemon")]
    pub service: Option<String>,
    /// Only these units in the interleaved log (comma-separated).
    #[arg(long = "service", value_name = "NAMES", value_delimiter = ',', conflicts_with_all = ["service", "daemon"])]
    pub services: Vec<String>,
    /// Only lines read since then: a duration ago (`90s`, `5m`, `2h`) or
    /// a time (`2026-12-02T07:00:00Z`).
    #[arg(long, value_name = "WHEN", conflicts_with = "daemon")]
    pub since: Option<String>,
    /// One JSON object per line: `unit`, `ts`, `stream`, `line`.
    #[arg(long, conflicts_with = "daemon")]
    pub json: bool,
    /// No colors (also when NO_COLOR is set or the output is no terminal).
    #[arg(long)]
    pub no_color: bool,
    #[command(flatten)]
    pub home: HomeArg,
    /// Keep printing new lines (across rotation).
    #[arg(short, long, env = "STIGMER_FOLLOW")]
    pub follow: bool,
    /// How many lines from the end.
    #[arg(short = 'n', long, default_value_t = 50, env = "STIGMER_LINES")]
    pub lines: usize,
    /// Show the daemon's own log instead.
    #[arg(long, env = "STIGMER_LOGS_DAEMON")]
    pub daemon: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_local_means_start() {
        let c = Cli::try_parse_from(["stigmer", "local", "--port", "7000", "--headless"]).unwrap();
        let Top::Local(l) = c.command else { panic!() };
        assert!(l.command.is_none());
        assert_eq!(l.start.options.port, 7000);
        assert!(l.start.options.headless);
    }

    #[test]
    fn flags_and_variables_are_told_apart_from_defaults() {
        let m = Cli::command()
            .try_get_matches_from(["stigmer", "local", "start", "--port", "7000"])
            .unwrap();
        let (_, start) = m.subcommand_matches("local").unwrap().subcommand().unwrap();
        let e = explicit(start);
        assert!(e.contains("port") && !e.contains("headless"), "{e:?}");
    }

    #[test]
    fn ui_port_conflicts_with_headless() {
        assert!(
            Cli::try_parse_from(["stigmer", "local", "start", "--ui-port", "1", "--headless"])
                .is_err()
        );
    }
}
