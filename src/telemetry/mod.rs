//! Logs and traces. Everything goes through `tracing`: by default the CLI
//! prints only its own few lines and warnings, `-v` or `RUST_LOG` turns on
//! debug logs, and the daemon logs at info (pretty or JSON). When an OTLP
//! endpoint is configured (`--otlp-endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), spans are exported over gRPC, or over
//! HTTP/protobuf when `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, with
//! `service.name=stigmer-local`; [`spans`] turns supervisor events into
//! spans. The returned [`Guard`] flushes them on shutdown.

pub mod spans;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log output format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Where and how to export traces.
pub type Otlp = crate::config::otlp::OtlpTarget;

/// Traces are on when `--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or the traces-specific variable) is set.
pub fn otlp_from_env(flag: Option<&str>) -> Option<Otlp> {
    let t = Otlp::from_env(flag);
    t.endpoint.is_some().then_some(t)
}

/// Keeps the exporter and the daemon's log writer alive; flushes both
/// when dropped.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    // The gRPC exporter's connection worker runs here.
    _runtime: Option<tokio::runtime::Runtime>,
    // The daemon's log writer thread; flushed when dropped.
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.force_flush() {
                eprintln!("warning: cannot flush traces: {e}");
            }
            let _ = p.shutdown();
        }
    }
}

static TRACES_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Is a trace exporter installed (so spans are worth building)?
pub fn traces_on() -> bool {
    TRACES_ON.load(std::sync::atomic::Ordering::Relaxed)
}

static SETTINGS: std::sync::OnceLock<(bool, LogFormat)> = std::sync::OnceLock::new();

/// The `(verbose, format)` the subscriber was installed with (what an
/// upgrade's next daemon logs with too).
pub fn settings() -> (bool, LogFormat) {
    SETTINGS
        .get()
        .copied()
        .unwrap_or((false, LogFormat::Pretty))
}

/// The daemon's log: stderr, written by a thread of its own (a stalled
/// disk or journal never blocks the supervisor; lines are dropped while
/// its queue is full). When stderr is the detached daemon's `daemon.log`,
/// it rotates like the other logs: the file moves to `.1` (`.2`) and a
/// new one takes its place on fd 2, so a panic message lands there too.
struct DaemonLog {
    /// The log file stderr writes to, when it rotates.
    path: Option<std::path::PathBuf>,
    size: u64,
}

impl DaemonLog {
    /// Rotate when stderr is the file at `path` (the detached daemon).
    fn new(path: Option<&std::path::Path>) -> DaemonLog {
        use std::os::unix::fs::MetadataExt;
        let stderr = nix::sys::stat::fstat(std::io::stderr());
        let rotating = match (path, stderr) {
            (Some(p), Ok(st)) => std::fs::metadata(p)
                .is_ok_and(|m| (m.dev(), m.ino()) == (st.st_dev, st.st_ino))
                .then(|| (p.to_path_buf(), st.st_size as u64)),
            _ => None,
        };
        match rotating {
            Some((p, size)) => DaemonLog {
                path: Some(p),
                size,
            },
            None => DaemonLog {
                path: None,
                size: 0,
            },
        }
    }

    fn rotate(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        crate::disk::shift_generations(path, false);
        std::fs::rename(path, crate::disk::generation(path, 1))?;
        let file = crate::disk::open_append(path)?;
        nix::unistd::dup2_stderr(file)?;
        self.size = 0;
        Ok(())
    }
}

impl std::io::Write for DaemonLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = std::io::stderr().write(buf)?;
        self.size += n as u64;
        if let Some(path) = self.path.clone()
            && self.size > crate::logfile::DEFAULT_MAX_BYTES
            && let Err(e) = self.rotate(&path)
        {
            // Keep writing where we are; try again at the next line.
            self.size = 0;
            let _ = writeln!(std::io::stderr(), "cannot rotate {}: {e}", path.display());
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Install the global subscriber. `daemon` raises the default level to
/// info (the daemon's log is its record of what happened) and writes
/// through a thread of its own, rotating `daemon_log` when stderr is that
/// file.
pub fn init(
    verbose: bool,
    format: LogFormat,
    daemon: bool,
    daemon_log: Option<&std::path::Path>,
    otlp: Option<Otlp>,
) -> Guard {
    let _ = SETTINGS.set((verbose, format));
    // RUST_LOG takes a full EnvFilter; without it a fixed Targets filter
    // does (EnvFilter compiles regular expressions at start, which every
    // short CLI command would pay for).
    let env_filter = EnvFilter::try_from_default_env().ok();
    let targets = env_filter.is_none().then(|| {
        use tracing::level_filters::LevelFilter;
        let (ours, rest) = match (verbose, daemon) {
            (true, _) => (LevelFilter::DEBUG, LevelFilter::INFO),
            (false, true) => (LevelFilter::INFO, LevelFilter::WARN),
            (false, false) => (LevelFilter::WARN, LevelFilter::WARN),
        };
        tracing_subscriber::filter::Targets::new()
            .with_target("stigmer", ours)
            .with_default(rest)
    });
    let (writer, writer_guard) = writer(daemon, daemon_log);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    let mut guard = Guard {
        provider: None,
        _runtime: None,
        _writer: writer_guard,
    };
    let otel_layer = match otlp.map(build_provider) {
        Some(Ok((provider, rt))) => {
            let tracer = provider.tracer("stigmer-local");
            TRACES_ON.store(true, std::sync::atomic::Ordering::Relaxed);
            guard.provider = Some(provider);
            guard._runtime = Some(rt);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        Some(Err(e)) => {
            eprintln!("warning: traces disabled: {e}");
            None
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(env_filter)
        .with(targets)
        .with(fmt)
        .with(otel_layer)
        .try_init();
    guard
}

/// Where log lines go: the daemon's through a writer thread of its own
/// ([`DaemonLog`], rotating `daemon_log` when stderr is that file), the
/// CLI's straight to stderr.
fn writer(
    daemon: bool,
    daemon_log: Option<&std::path::Path>,
) -> (
    tracing_subscriber::fmt::writer::BoxMakeWriter,
    Option<tracing_appender::non_blocking::WorkerGuard>,
) {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    if !daemon {
        return (BoxMakeWriter::new(std::io::stderr), None);
    }
    // The queue of lines not yet written is allocated whole up front:
    // tracing-appender's default of 128,000 lines was 4 MB of the idle
    // daemon's 4.7 MB of heap. The daemon logs a few lines per event, so
    // 2,048 is room for a burst of restarts while the disk lags; past
    // it lines are dropped (lossy), never the supervisor blocked.
    let (w, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(DAEMON_LOG_QUEUE)
        .lossy(true)
        .thread_name("stigmer-log")
        .finish(DaemonLog::new(daemon_log));
    (BoxMakeWriter::new(w), Some(g))
}

use tracing_subscriber::Layer as _;

/// Lines of the daemon's log that may wait for its writer thread.
const DAEMON_LOG_QUEUE: usize = 2048;

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    /// No runtime for the exporter.
    #[error("cannot start the exporter's runtime: {0}")]
    Runtime(std::io::Error),
    /// The exporter refused its settings.
    #[error(transparent)]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    /// TLS cannot be set up.
    #[error(transparent)]
    Tls(#[from] crate::grpc::SetupError),
    /// The target cannot be used (see [`Otlp::check`]).
    #[error("{0}")]
    Target(String),
}

fn build_provider(o: Otlp) -> Result<(SdkTracerProvider, tokio::runtime::Runtime), ExportError> {
    o.check().map_err(ExportError::Target)?;
    // The tonic channel spawns its connection worker on the current
    // runtime; give it a small one of its own so exports never depend on
    // (or block) the supervisor's.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("stigmer-otlp")
        .enable_all()
        .build()
        .map_err(ExportError::Runtime)?;
    let _enter = rt.enter();
    let exporter = if o.http {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        if let Some(ep) = &o.endpoint {
            let ep = ep.trim_end_matches('/');
            let full = if ep.ends_with("/v1/traces") {
                ep.to_string()
            } else {
                format!("{ep}/v1/traces")
            };
            b = b.with_endpoint(full);
        }
        b.build()
    } else {
        use opentelemetry_otlp::WithTonicConfig;
        let mut b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
        if let Some(ep) = &o.endpoint {
            b = b.with_endpoint(ep.clone());
        }
        if let (Some(tls), Some(ep)) = (&o.tls, &o.endpoint) {
            b = b.with_tls_config(tls.client_config(ep)?);
        }
        b.build()
    }?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("stigmer-local")
                .build(),
        )
        .build();
    drop(_enter);
    Ok((provider, rt))
}
