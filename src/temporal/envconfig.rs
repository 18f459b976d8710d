//! Temporal's environment configuration, read the way its CLI and SDKs
//! read it: a profile of `temporal.toml` (`TEMPORAL_CONFIG_FILE`, else
//! `$XDG_CONFIG_HOME/temporalio/temporal.toml` when that is absolute,
//! else `~/.config/temporalio/temporal.toml`), then the `TEMPORAL_*`
//! variables over it, field by field.
//!
//! Where the implementations differ we follow the Go SDK and CLI: an
//! empty `TEMPORAL_API_KEY`, `TEMPORAL_ADDRESS` or `TEMPORAL_NAMESPACE`
//! counts as unset. A profile that is named (here or by
//! `TEMPORAL_PROFILE`) must exist; `default` may be missing, and so may
//! the file.

use crate::model::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The environment, as a map (the process's, or a test's).
pub type Env = BTreeMap<String, String>;

/// One profile, with the variables applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// `HOST:PORT`.
    pub address: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// API key (sent as `authorization: Bearer KEY`).
    pub api_key: Option<Secret>,
    /// TLS section; its presence means TLS unless `disabled`.
    pub tls: Option<TlsSection>,
    /// Headers of every call, names normalized (lowercase, `_` → `-`).
    pub grpc_meta: BTreeMap<String, Secret>,
}

/// `[profile.NAME.tls]`; strict (an unknown key is an error) where we
/// read it from our own file, lenient in Temporal's ([`FileProfile`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Explicitly off (or on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Client certificate file (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_path: Option<PathBuf>,
    /// Client certificate PEM text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_data: Option<String>,
    /// Client key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_path: Option<PathBuf>,
    /// Client key PEM text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// Server CA file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca_cert_path: Option<PathBuf>,
    /// Server CA PEM text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca_cert_data: Option<String>,
    /// Name to verify the server as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Skip host-name verification.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_host_verification: bool,
}

/// The file as written (unknown keys ignored, as Temporal does).
#[derive(Debug, Default, Deserialize)]
struct FileDoc {
    #[serde(default)]
    profile: BTreeMap<String, FileProfile>,
}

#[derive(Debug, Default, Deserialize)]
struct FileProfile {
    address: Option<String>,
    namespace: Option<String>,
    api_key: Option<String>,
    tls: Option<toml::Table>,
    #[serde(default)]
    grpc_meta: BTreeMap<String, String>,
}

/// Which profile of which file was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The profile, variables applied.
    pub profile: Profile,
    /// Its name.
    pub name: String,
    /// The file looked at (it may not exist).
    pub file: PathBuf,
    /// Whether the file exists.
    pub file_exists: bool,
}

/// Why the environment configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read Temporal's configuration {}: {error}", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        error: String,
    },
    /// The file is not valid TOML (or a value has the wrong type).
    #[error("Temporal's configuration {} is invalid: {error}", .file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        error: String,
    },
    /// A named profile that the file does not have.
    #[error(
        "Temporal profile {name:?} not found in {} (profiles there: {}); add it with `temporal config set --profile {name} --prop address --value HOST:PORT`",
        .file.display(),
        if .known.is_empty() { "none".to_string() } else { .known.join(", ") }
    )]
    NoProfile {
        /// The profile.
        name: String,
        /// The file.
        file: PathBuf,
        /// The profiles it has.
        known: Vec<String>,
    },
    /// A certificate or key given both as a file and as text.
    #[error("{0}")]
    Both(String),
}

/// The file Temporal's tools read, given the environment.
pub fn config_file(env: &Env) -> Option<PathBuf> {
    if let Some(f) = env.get("TEMPORAL_CONFIG_FILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(f));
    }
    let base = env
        .get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".config")))?;
    Some(base.join("temporalio").join("temporal.toml"))
}

/// Load profile `name` (else `TEMPORAL_PROFILE`, else `default`) and
/// apply the variables of `env`.
pub fn load(name: Option<&str>, env: &Env) -> Result<Loaded, EnvConfigError> {
    let file = config_file(env).unwrap_or_else(|| PathBuf::from("temporal.toml"));
    let named = name.map(str::to_string).or_else(|| {
        env.get("TEMPORAL_PROFILE")
            .filter(|p| !p.is_empty())
            .cloned()
    });
    let doc = match std::fs::read_to_string(&file) {
        Ok(text) => toml::from_str::<FileDoc>(&text).map_err(|e| EnvConfigError::Parse {
            file: file.clone(),
            error: e.message().lines().next().unwrap_or_default().to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileDoc::default(),
        Err(e) => {
            return Err(EnvConfigError::Read {
                file,
                error: e.to_string(),
            });
        }
    };
    let file_exists = file.exists();
    let profile_name = named.clone().unwrap_or_else(|| "default".to_string());
    let mut known: Vec<String> = doc.profile.keys().cloned().collect();
    let mut doc = doc;
    let from_file = match doc.profile.remove(&profile_name) {
        Some(p) => p,
        None if named.is_some() => {
            known.sort();
            return Err(EnvConfigError::NoProfile {
                name: profile_name,
                file,
                known,
            });
        }
        None => FileProfile::default(),
    };
    let mut profile = Profile {
        address: from_file.address.filter(|a| !a.is_empty()),
        namespace: from_file.namespace.filter(|n| !n.is_empty()),
        api_key: from_file.api_key.filter(|k| !k.is_empty()).map(Secret::new),
        tls: from_file
            .tls
            .map(lenient_tls)
            .transpose()
            .map_err(|e| EnvConfigError::Parse {
                file: file.clone(),
                error: format!("[profile.{profile_name}.tls]: {e}"),
            })?,
        grpc_meta: from_file
            .grpc_meta
            .into_iter()
            .map(|(k, v)| (meta_key(&k), Secret::new(v)))
            .collect(),
    };
    check_both(profile.tls.as_ref(), "the profile")?;
    apply_env(&mut profile, env)?;
    Ok(Loaded {
        profile,
        name: profile_name,
        file,
        file_exists,
    })
}

/// A TLS table with the keys we know, as Temporal reads it (others, which
/// newer versions may add, are ignored).
fn lenient_tls(mut t: toml::Table) -> Result<TlsSection, toml::de::Error> {
    const KNOWN: [&str; 9] = [
        "disabled",
        "client_cert_path",
        "client_cert_data",
        "client_key_path",
        "client_key_data",
        "server_ca_cert_path",
        "server_ca_cert_data",
        "server_name",
        "disable_host_verification",
    ];
    t.retain(|k: &str, _| KNOWN.contains(&k));
    t.try_into()
}

/// `Some_Key` → `some-key`, as Temporal normalizes gRPC metadata names.
fn meta_key(k: &str) -> String {
    k.to_lowercase().replace('_', "-")
}

/// `true`/`false`/`1`/`0`, any case.
fn env_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Every variable that configures TLS: any of them makes a TLS section.
const TLS_VARS: [&str; 9] = [
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
];

fn apply_env(p: &mut Profile, env: &Env) -> Result<(), EnvConfigError> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(a) = get("TEMPORAL_ADDRESS") {
        p.address = Some(a);
    }
    if let Some(n) = get("TEMPORAL_NAMESPACE") {
        p.namespace = Some(n);
    }
    if let Some(k) = get("TEMPORAL_API_KEY") {
        p.api_key = Some(Secret::new(k));
    }
    if TLS_VARS.iter().any(|v| env.contains_key(*v)) {
        let tls = p.tls.get_or_insert_with(TlsSection::default);
        if let Some(on) = env.get("TEMPORAL_TLS").and_then(|v| env_bool(v)) {
            tls.disabled = Some(!on);
        }
        let pairs: [(&str, &mut Option<PathBuf>, &mut Option<String>); 3] = [
            (
                "CLIENT_CERT",
                &mut tls.client_cert_path,
                &mut tls.client_cert_data,
            ),
            (
                "CLIENT_KEY",
                &mut tls.client_key_path,
                &mut tls.client_key_data,
            ),
            (
                "SERVER_CA_CERT",
                &mut tls.server_ca_cert_path,
                &mut tls.server_ca_cert_data,
            ),
        ];
        for (what, path, data) in pairs {
            let pv = get(&format!("TEMPORAL_TLS_{what}_PATH"));
            let dv = get(&format!("TEMPORAL_TLS_{what}_DATA"));
            if pv.is_some() && dv.is_some() {
                return Err(EnvConfigError::Both(format!(
                    "both TEMPORAL_TLS_{what}_PATH and TEMPORAL_TLS_{what}_DATA are set; unset one"
                )));
            }
            if let Some(v) = pv {
                *path = Some(PathBuf::from(v));
                *data = None;
            }
            if let Some(v) = dv {
                *data = Some(v);
                *path = None;
            }
        }
        if let Some(n) = get("TEMPORAL_TLS_SERVER_NAME") {
            tls.server_name = Some(n);
        }
        if let Some(b) = env
            .get("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION")
            .and_then(|v| env_bool(v))
        {
            tls.disable_host_verification = b;
        }
    }
    for (k, v) in env {
        if let Some(name) = k.strip_prefix("TEMPORAL_GRPC_META_") {
            let name = meta_key(name);
            if v.is_empty() {
                p.grpc_meta.remove(&name);
            } else {
                p.grpc_meta.insert(name, Secret::new(v.clone()));
            }
        }
    }
    Ok(())
}

fn check_both(tls: Option<&TlsSection>, where_: &str) -> Result<(), EnvConfigError> {
    let Some(t) = tls else { return Ok(()) };
    for (what, both) in [
        (
            "client_cert",
            t.client_cert_path.is_some() && t.client_cert_data.is_some(),
        ),
        (
            "client_key",
            t.client_key_path.is_some() && t.client_key_data.is_some(),
        ),
        (
            "server_ca_cert",
            t.server_ca_cert_path.is_some() && t.server_ca_cert_data.is_some(),
        ),
    ] {
        if both {
            return Err(EnvConfigError::Both(format!(
                "{where_} gives tls.{what}_path and tls.{what}_data; keep one"
            )));
        }
    }
    Ok(())
}

impl TlsSection {
    /// Is TLS on, given whether there is an API key? A section means on
    /// unless disabled; a key alone means on too.
    pub fn on(tls: Option<&TlsSection>, has_key: bool) -> bool {
        match tls {
            Some(t) => t.disabled != Some(true),
            None => has_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_file(text: &str) -> (tempfile::TempDir, Env) {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("temporal.toml");
        std::fs::write(&f, text).unwrap();
        let e = env(&[("TEMPORAL_CONFIG_FILE", f.to_str().unwrap())]);
        (d, e)
    }

    #[test]
    fn the_file_is_found_where_temporal_looks() {
        let e = env(&[("HOME", "/home/u")]);
        assert_eq!(
            config_file(&e).unwrap(),
            Path::new("/home/u/.config/temporalio/temporal.toml")
        );
        let e = env(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/x")]);
        assert_eq!(
            config_file(&e).unwrap(),
            Path::new("/x/temporalio/temporal.toml")
        );
        let e = env(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "rel")]);
        assert!(config_file(&e).unwrap().starts_with("/home/u/.config"));
        let e = env(&[("HOME", "/home/u"), ("TEMPORAL_CONFIG_FILE", "/t.toml")]);
        assert_eq!(config_file(&e).unwrap(), Path::new("/t.toml"));
    }

    #[test]
    fn variables_override_the_profile_field_by_field() {
        let (_d, mut e) = with_file(
            "[profile.default]\naddress = 'file:7233'\nnamespace = 'ns'\n\
             [profile.cloud]\naddress = 'c:7233'\napi_key = 'k1'\n\
             [profile.cloud.grpc_meta]\nSome_Key = 'v'\n",
        );
        let l = load(None, &e).unwrap();
        assert_eq!(l.name, "default");
        assert_eq!(l.profile.address.as_deref(), Some("file:7233"));
        assert!(!TlsSection::on(l.profile.tls.as_ref(), false));
        let l = load(Some("cloud"), &e).unwrap();
        assert_eq!(l.profile.api_key.as_ref().unwrap().expose(), "k1");
        assert!(
            TlsSection::on(l.profile.tls.as_ref(), true),
            "a key means TLS"
        );
        assert!(l.profile.grpc_meta.contains_key("some-key"));
        e.insert("TEMPORAL_ADDRESS".into(), "env:1".into());
        e.insert("TEMPORAL_TLS".into(), "false".into());
        e.insert("TEMPORAL_GRPC_META_SOME_KEY".into(), String::new());
        e.insert("TEMPORAL_API_KEY".into(), String::new());
        let l = load(Some("cloud"), &e).unwrap();
        assert_eq!(l.profile.address.as_deref(), Some("env:1"));
        assert_eq!(
            l.profile.api_key.as_ref().unwrap().expose(),
            "k1",
            "empty is unset"
        );
        assert_eq!(l.profile.tls.as_ref().unwrap().disabled, Some(true));
        assert!(
            l.profile.grpc_meta.is_empty(),
            "an empty value removes a header"
        );
        e.insert("TEMPORAL_PROFILE".into(), "cloud".into());
        assert_eq!(load(None, &e).unwrap().name, "cloud");
    }

    #[test]
    fn a_named_profile_must_exist_the_default_need_not() {
        let (_d, e) = with_file("[profile.a]\naddress = 'x:1'\n");
        assert_eq!(load(None, &e).unwrap().profile, Profile::default());
        let err = load(Some("nope"), &e).unwrap_err();
        assert!(err.to_string().contains("\"nope\" not found"), "{err}");
        assert!(err.to_string().contains("profiles there: a"), "{err}");
        let e = env(&[("TEMPORAL_CONFIG_FILE", "/nonexistent/t.toml")]);
        assert!(load(None, &e).is_ok(), "no file is no error");
        assert!(load(Some("x"), &e).is_err());
        let (_d, e) = with_file("[profile.a\n");
        assert!(matches!(load(None, &e), Err(EnvConfigError::Parse { .. })));
    }

    #[test]
    fn a_certificate_is_a_file_or_text_not_both() {
        let (_d, mut e) = with_file("[profile.default.tls]\nserver_ca_cert_path = '/ca.pem'\n");
        assert!(load(None, &e).is_ok());
        e.insert("TEMPORAL_TLS_SERVER_CA_CERT_DATA".into(), "PEM".into());
        let l = load(None, &e).unwrap();
        let t = l.profile.tls.unwrap();
        assert_eq!(t.server_ca_cert_data.as_deref(), Some("PEM"));
        assert!(
            t.server_ca_cert_path.is_none(),
            "the variable replaces the file's"
        );
        e.insert("TEMPORAL_TLS_SERVER_CA_CERT_PATH".into(), "/other".into());
        assert!(matches!(load(None, &e), Err(EnvConfigError::Both(_))));
    }
}
