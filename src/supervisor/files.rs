//! A service's watched files: inotify (through `notify`) on every
//! directory under its `cwd` that is not ignored (so `node_modules` or
//! `target` cost no watch), globs matched on paths relative to it
//! (`globset`), and a trailing debounce: a burst of saves is one change,
//! reported [`DEBOUNCE`] after the last event, naming the first file that
//! changed. The env files are watched by name wherever they are.
//!
//! Idle, it costs nothing: the kernel queues events; a thread of
//! `notify`'s sleeps in `read`. Running out of inotify watches
//! (`fs.inotify.max_user_watches`) is reported as a warning, not hidden.

use crate::config::services::WatchSpec;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last event before a change is reported: editors
/// write a file in several steps (truncate, write, rename), and a save of
/// several files is one change.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Watched files changed; the first one, relative to the root.
    Changed(String),
    /// Something is not watched as asked (e.g. no inotify watches left).
    Problem(String),
}

/// A running watch; stops when dropped.
pub struct Watching {
    _watcher: Shared,
}

type Shared = std::sync::Arc<std::sync::Mutex<notify::RecommendedWatcher>>;

/// Which paths count.
#[derive(Clone)]
struct Filter {
    root: PathBuf,
    include: GlobSet,
    ignore: GlobSet,
    files: Vec<PathBuf>,
}

fn globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g: Glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{p:?} is not a glob: {e}"))?;
        b.add(g);
    }
    b.build().map_err(|e| e.to_string())
}

impl Filter {
    fn relative<'a>(&self, p: &'a Path) -> Option<&'a Path> {
        p.strip_prefix(&self.root).ok()
    }

    /// Is this path (or a directory above it) ignored?
    fn ignored(&self, rel: &Path) -> bool {
        rel.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| self.ignore.is_match(a))
    }

    /// Does a change of `p` count? Its name, relative to the root.
    fn counts(&self, p: &Path) -> Option<String> {
        if self.files.iter().any(|f| f == p) {
            return Some(p.display().to_string());
        }
        let rel = self.relative(p)?;
        (!self.ignored(rel) && self.include.is_match(rel)).then(|| rel.display().to_string())
    }
}

/// Watch `spec` (and `files`, the env files) and report changes on the
/// returned channel, debounced.
pub fn watch(
    spec: &WatchSpec,
    files: &[PathBuf],
) -> Result<(Watching, mpsc::UnboundedReceiver<Seen>), String> {
    let filter = Filter {
        root: spec.root.clone(),
        include: globs(&spec.include)?,
        ignore: globs(&spec.ignore)?,
        files: files.to_vec(),
    };
    let (raw_tx, raw_rx) = mpsc::unbounded_channel::<Result<notify::Event, notify::Error>>();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = raw_tx.send(ev);
    })
    .map_err(|e| format!("cannot watch files: {e}"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut problems = Vec::new();
    add_tree(&mut watcher, &filter, &filter.root, &mut problems);
    for f in &filter.files {
        // An env file's directory: its events name the file.
        if let Some(dir) = f.parent()
            && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
        {
            problems.push(format!("{}: {e}", dir.display()));
        }
    }
    for p in problems {
        let _ = tx.send(Seen::Problem(p));
    }
    let watcher: Shared = std::sync::Arc::new(std::sync::Mutex::new(watcher));
    tokio::spawn(debounce(
        raw_rx,
        tx,
        filter,
        std::sync::Arc::downgrade(&watcher),
    ));
    Ok((Watching { _watcher: watcher }, rx))
}

/// Watch `dir` and every directory below it that is not ignored.
fn add_tree(
    w: &mut notify::RecommendedWatcher,
    f: &Filter,
    dir: &Path,
    problems: &mut Vec<String>,
) {
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            e.file_type().is_dir() && f.relative(e.path()).is_some_and(|r| !f.ignored(r))
        });
    for entry in walk.flatten() {
        if let Err(e) = w.watch(entry.path(), RecursiveMode::NonRecursive) {
            let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch);
            problems.push(if limit {
                format!(
                    "no inotify watches left for {} (raise fs.inotify.max_user_watches): changes below it are not seen",
                    entry.path().display()
                )
            } else {
                format!("cannot watch {}: {e}", entry.path().display())
            });
            if limit {
                return;
            }
        }
    }
}

/// Turn raw events into one [`Seen::Changed`] per burst: reported once
/// no counting event came for [`DEBOUNCE`] (events that do not count, such
/// as reads, do not extend the wait), and at most [`MAX_BURST`] after the
/// first, so a file rewritten without pause still restarts its service.
async fn debounce(
    mut raw: mpsc::UnboundedReceiver<Result<notify::Event, notify::Error>>,
    tx: mpsc::UnboundedSender<Seen>,
    filter: Filter,
    watcher: std::sync::Weak<std::sync::Mutex<notify::RecommendedWatcher>>,
) {
    // The first file of the burst, when the burst started, and when it ends.
    let mut burst: Option<(String, tokio::time::Instant, tokio::time::Instant)> = None;
    loop {
        let next = match &burst {
            Some((_, _, until)) => match tokio::time::timeout_at(*until, raw.recv()).await {
                Ok(ev) => ev,
                Err(_) => {
                    let (first, ..) = burst.take().expect("a burst is open");
                    if tx.send(Seen::Changed(first)).is_err() {
                        return;
                    }
                    continue;
                }
            },
            None => raw.recv().await,
        };
        let Some(ev) = next else { return };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                let _ = tx.send(Seen::Problem(e.to_string()));
                continue;
            }
        };
        if matches!(ev.kind, EventKind::Access(_)) {
            continue;
        }
        // A new directory is watched too (unless ignored).
        if matches!(ev.kind, EventKind::Create(_))
            && let Some(w) = watcher.upgrade()
        {
            let mut problems = Vec::new();
            for dir in ev.paths.iter().filter(|p| p.is_dir()) {
                let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                add_tree(&mut w, &filter, dir, &mut problems);
            }
            for p in problems {
                let _ = tx.send(Seen::Problem(p));
            }
        }
        let Some(path) = ev.paths.iter().find_map(|p| filter.counts(p)) else {
            continue;
        };
        let now = tokio::time::Instant::now();
        burst = Some(match burst.take() {
            None => (path, now, now + DEBOUNCE),
            Some((first, since, _)) => (first, since, (now + DEBOUNCE).min(since + MAX_BURST)),
        });
    }
}

/// The longest a burst of changes delays its restart.
pub const MAX_BURST: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], ignore: &[&str]) -> Filter {
        let mut ig: Vec<String> = crate::config::services::DEFAULT_IGNORES
            .iter()
            .map(|d| format!("**/{d}"))
            .collect();
        ig.extend(ignore.iter().map(|s| s.to_string()));
        Filter {
            root: PathBuf::from("/app"),
            include: globs(&include.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
            ignore: globs(&ig).unwrap(),
            files: vec![PathBuf::from("/etc/app.env")],
        }
    }

    #[test]
    fn globs_match_relative_paths_and_ignores_win() {
        let f = filter(&["src/**/*.py", "*.toml"], &["src/generated/**"]);
        assert_eq!(
            f.counts(Path::new("/app/src/a/b.py")).as_deref(),
            Some("src/a/b.py")
        );
        assert_eq!(
            f.counts(Path::new("/app/src/b.py")).as_deref(),
            Some("src/b.py")
        );
        assert!(f.counts(Path::new("/app/pyproject.toml")).is_some());
        assert!(
            f.counts(Path::new("/app/sub/x.toml")).is_none(),
            "* stops at /"
        );
        assert!(f.counts(Path::new("/app/src/generated/x.py")).is_none());
        assert!(f.counts(Path::new("/app/src/__pycache__/x.py")).is_none());
        assert!(f.counts(Path::new("/app/node_modules/x.toml")).is_none());
        assert!(f.counts(Path::new("/elsewhere/src/b.py")).is_none());
        assert!(
            f.counts(Path::new("/etc/app.env")).is_some(),
            "env files by name"
        );
    }

    #[tokio::test]
    async fn a_burst_of_saves_is_one_change_and_ignored_files_none() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src")).unwrap();
        std::fs::create_dir_all(d.path().join("node_modules/pkg")).unwrap();
        let spec = WatchSpec {
            root: d.path().to_path_buf(),
            include: vec!["src/**".into(), "node_modules/**".into()],
            ignore: vec!["**/node_modules".into()],
        };
        let (_w, mut rx) = watch(&spec, &[]).unwrap();
        for i in 0..5 {
            std::fs::write(d.path().join("src/app.py"), format!("v{i}")).unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(Seen::Changed("src/app.py".into())));
        std::fs::write(d.path().join("node_modules/pkg/x.js"), "x").unwrap();
        let quiet = tokio::time::timeout(DEBOUNCE * 4, rx.recv()).await;
        assert!(quiet.is_err(), "nothing for an ignored file: {quiet:?}");
    }
}
