//! The configuration file (`stigmer.toml`): `[temporal]` takes every
//! start option by its name, `[services.NAME]` declares the stack. Its
//! values sit between the environment and the defaults (flag, then
//! environment, then file, then default). Every problem names the file,
//! the line where there is one, and the table and key.

use super::options::Options;
use super::services::ServiceDecl;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    temporal: BTreeMap<String, toml::Spanned<toml::Value>>,
    #[serde(default)]
    services: BTreeMap<String, ServiceDecl>,
}

/// A problem with the configuration file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}: {message}", .line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct FileError {
    /// The file.
    pub file: PathBuf,
    /// The line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong, naming the table and key.
    pub message: String,
    /// The file may not be read at all: another user owns it or can
    /// write it (a distinct exit code).
    #[doc(hidden)]
    pub untrusted: bool,
}

/// Where each `[temporal]` value came from, to name it in messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    /// The file, when one was read.
    pub file: Option<PathBuf>,
    /// Keys the file set (and kept: no flag or variable overrode them),
    /// with their lines.
    pub from_file: BTreeMap<String, usize>,
}

impl Sources {
    /// How to name option `key` to the user: its flag, or where the file
    /// sets it.
    pub fn name(&self, key: &str) -> String {
        match (&self.file, self.from_file.get(key)) {
            (Some(f), Some(line)) => format!("{} line {line}: [temporal] {key}", f.display()),
            _ => format!("--{}", key.replace('_', "-")),
        }
    }

    /// Did the file supply `key`?
    pub fn in_file(&self, key: &str) -> bool {
        self.from_file.contains_key(key)
    }
}

/// A parsed file: the `[temporal]` values to merge and the services.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    temporal: BTreeMap<String, toml::Spanned<toml::Value>>,
    /// The `[services.NAME]` tables, by name.
    pub services: BTreeMap<String, ServiceDecl>,
}

impl ConfigFile {
    /// Read and parse `path` (syntax, unknown keys, value types).
    pub fn read(path: &Path) -> Result<ConfigFile, FileError> {
        // What another user can write, we do not run: checked before a
        // byte of it is read.
        if path.exists()
            && let Err(why) = crate::paths::trusted(path)
        {
            return Err(FileError {
                file: path.to_path_buf(),
                line: None,
                message: format!("not trusted: {why}"),
                untrusted: true,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read it: {e}"),
            untrusted: false,
        })?;
        let doc: FileDoc = toml::from_str(&text).map_err(|e| FileError {
            file: path.to_path_buf(),
            line: e.span().map(|s| line_of(&text, s.start)),
            message: one_line(e.message()),
            untrusted: false,
        })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            text,
            temporal: doc.temporal,
            services: doc.services,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory relative paths in the file are relative to.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// A problem at the line of `[services.NAME]`, naming the key.
    pub fn service_error(&self, name: &str, message: &str) -> FileError {
        let header = format!("[services.{name}]");
        let line = self
            .text
            .lines()
            .position(|l| l.trim_start().starts_with(&header))
            .map(|i| i + 1);
        FileError {
            file: self.path.clone(),
            line,
            message: one_line(&format!("{header} {message}")),
            untrusted: false,
        }
    }

    /// `options` (from flags, environment and defaults) with every
    /// `[temporal]` key of the file applied that neither a flag nor a
    /// variable set (`explicit`).
    pub fn merge(
        &self,
        options: &Options,
        explicit: &BTreeSet<String>,
    ) -> Result<(Options, Sources), FileError> {
        let keys = Options::keys();
        let mut merged = serde_json::to_value(options).expect("options serialize");
        let mut sources = Sources {
            file: Some(self.path.clone()),
            from_file: BTreeMap::new(),
        };
        for (key, value) in &self.temporal {
            let line = line_of(&self.text, value.span().start);
            let err = |message: String| FileError {
                file: self.path.clone(),
                line: Some(line),
                message,
                untrusted: false,
            };
            if !keys.contains(key) {
                return Err(err(format!(
                    "[temporal] unknown key `{key}` (known: {})",
                    keys.join(", ")
                )));
            }
            if explicit.contains(key) {
                continue;
            }
            let json = serde_json::to_value(value.get_ref())
                .map_err(|e| err(format!("[temporal] {key}: {e}")))?;
            merged[key.as_str()] = json;
            // Check the value now, so a bad one is blamed on its own key.
            serde_json::from_value::<Options>(merged.clone())
                .map_err(|e| err(format!("[temporal] {key}: {e}")))?;
            sources.from_file.insert(key.clone(), line);
        }
        let merged = serde_json::from_value(merged).expect("checked key by key");
        Ok((merged, sources))
    }
}

/// `text` on one line: its non-empty lines joined with "; ".
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "^")
        .collect::<Vec<_>>()
        .join("; ")
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stigmer.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn file_values_sit_between_flags_and_defaults() {
        let (_d, p) = file("[temporal]\nport = 7400\nheadless = true\nnamespaces = ['a']\n");
        let f = ConfigFile::read(&p).unwrap();
        let explicit: BTreeSet<String> = ["port".to_string()].into();
        let mut flags = Options::defaults();
        flags.port = 7500;
        let (o, sources) = f.merge(&flags, &explicit).unwrap();
        assert_eq!(o.port, 7500, "the flag wins");
        assert!(o.headless, "the file beats the default");
        assert_eq!(o.temporal.namespaces.len(), 1);
        assert!(sources.in_file("headless") && !sources.in_file("port"));
        assert!(
            sources
                .name("headless")
                .ends_with("line 3: [temporal] headless")
        );
        assert_eq!(sources.name("port"), "--port");
    }

    #[test]
    fn problems_name_the_file_line_and_key() {
        for (text, line, want) in [
            (
                "[temporal]\nport = 7400\nprot = 1\n",
                Some(3),
                "unknown key `prot`",
            ),
            ("[temporal]\n\nport = 'x'\n", Some(3), "port"),
            (
                "[temporal]\nsearch_attributes = ['K=Float']\n",
                Some(2),
                "Float",
            ),
            ("[temporal\nport = 1\n", Some(1), ""),
            (
                "[services.a]\ncommand = ['x']\nbogus = 1\n",
                Some(3),
                "bogus",
            ),
            ("[extra]\n", Some(1), "extra"),
        ] {
            let (_d, p) = file(text);
            let e = ConfigFile::read(&p)
                .and_then(|f| f.merge(&Options::defaults(), &BTreeSet::new()).map(|_| ()))
                .unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(want), "{text}: {e}");
            assert!(e.to_string().contains("stigmer.toml line"), "{e}");
        }
    }
}
