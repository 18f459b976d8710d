//! The Temporal the stack uses, resolved once by the CLI: the managed dev
//! server, or one to attach to — through a profile of Temporal's own
//! `temporal.toml` with the `TEMPORAL_*` variables over it, then the
//! `[temporal]` keys over both (`address`, `tls`, `api_key_env`) — and
//! what every service is told of it (its environment).
//!
//! A plain `TEMPORAL_ADDRESS` or `TEMPORAL_PROFILE` in the shell never
//! attaches by itself: developers keep them set for the CLI. Only
//! `profile`, `address` or `managed = false` do.

use super::options::{Namespace, Options, TlsDecl};
use crate::grpc::{self, Header, Pem};
use crate::model::Secret;
use crate::temporal::Connection;
use crate::temporal::envconfig::{self, Env, EnvConfigError, TlsSection};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// An external Temporal to attach to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attach {
    /// How every call reaches it.
    pub connection: Connection,
    /// The profile it came from, if any.
    pub profile: Option<ProfileRef>,
    /// What services are told beyond its address and namespace.
    pub env: Vec<(String, Secret)>,
    /// Whether the inherited `TEMPORAL_*` connection variables are
    /// dropped from services (no profile was read: they played no part).
    pub strip_inherited: bool,
}

/// A profile of a `temporal.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRef {
    /// Its name.
    pub name: String,
    /// The file (it may not exist: then the variables alone said it).
    pub file: PathBuf,
    /// Whether the file exists.
    pub file_exists: bool,
}

/// The write check of Temporal (the `persistence` layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistenceCheck {
    /// Between checks.
    pub interval: Duration,
    /// Restart Temporal after `failure_threshold` failures in a row.
    pub restart: bool,
    /// Where it writes.
    pub namespace: String,
}

/// The attached Temporal cannot be used as configured (exit code 14).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Temporal's own configuration.
    #[error(transparent)]
    EnvConfig(#[from] EnvConfigError),
    /// Nothing says where it is.
    #[error(
        "attaching to Temporal needs an address: {0} gives none; set [temporal] address (--temporal-address) or the profile's address"
    )]
    NoAddress(String),
    /// `api_key_env` names an unset variable.
    #[error("[temporal] api_key_env names ${0}, which is not set (or empty); export it")]
    KeyVarUnset(String),
    /// A key would go out in the clear.
    #[error(
        "an API key with TLS disabled would be sent in the clear; enable TLS or remove the key"
    )]
    KeyWithoutTls,
    /// Host verification cannot be skipped.
    #[error(
        "tls.disable_host_verification is not supported; give the server's CA (server_ca_cert_path) or its name (server_name) instead"
    )]
    NoHostVerification,
    /// A namespace Temporal would refuse.
    #[error("the profile's namespace: {0}")]
    Namespace(String),
    /// Certificates, keys or headers that cannot be used.
    #[error(transparent)]
    Endpoint(#[from] grpc::SetupError),
}

/// The namespace of a configuration that names none.
pub fn default_namespace() -> String {
    "default".to_string()
}

/// `attach` as this release hands it over, or as 0.1.0 did: a bare
/// plaintext address.
pub fn attach_or_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Attach>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Attach(Box<Attach>),
        Address(std::net::SocketAddr),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => None,
        Some(Either::Attach(a)) => Some(*a),
        Some(Either::Address(addr)) => Some(Attach {
            connection: Connection::local(addr, "default"),
            profile: None,
            env: Vec::new(),
            strip_inherited: true,
        }),
    })
}

/// The process's environment, as a map (non-UTF-8 entries left out).
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Does `a` attach (rather than run a dev server)?
pub fn attaches(a: &Options) -> bool {
    a.profile.is_some() || a.address.is_some() || !a.managed
}

/// Resolve the Temporal to attach to, when `a` attaches.
pub fn resolve(a: &Options, env: &Env) -> Result<Option<Attach>, SettingsError> {
    if !attaches(a) {
        return Ok(None);
    }
    // An address alone is a plaintext Temporal; a profile, named or
    // implied by managed = false, is read like Temporal's tools read it.
    let loaded = if a.profile.is_some() || a.address.is_none() {
        Some(envconfig::load(a.profile.as_deref(), env)?)
    } else {
        None
    };
    let mut p = loaded
        .as_ref()
        .map(|l| l.profile.clone())
        .unwrap_or_default();
    if let Some(addr) = &a.address {
        p.address = Some(addr.clone());
    }
    match &a.tls {
        None => {}
        Some(TlsDecl::Enabled(on)) => {
            p.tls.get_or_insert_with(TlsSection::default).disabled = Some(!on)
        }
        Some(TlsDecl::Settings(t)) => p.tls = Some(t.clone()),
    }
    if let Some(var) = &a.api_key_env {
        let key = env
            .get(var)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| SettingsError::KeyVarUnset(var.clone()))?;
        p.api_key = Some(Secret::new(key.clone()));
    }
    let address = p.address.clone().ok_or_else(|| {
        SettingsError::NoAddress(match &loaded {
            Some(l) => format!("profile {:?} of {}", l.name, l.file.display()),
            None => "nothing".into(),
        })
    })?;
    let tls_on = TlsSection::on(p.tls.as_ref(), p.api_key.is_some());
    if p.api_key.is_some() && !tls_on {
        return Err(SettingsError::KeyWithoutTls);
    }
    let tls = match (&p.tls, tls_on) {
        (Some(t), true) if t.disable_host_verification => {
            return Err(SettingsError::NoHostVerification);
        }
        (t, true) => Some(grpc_tls(t.as_ref())),
        (_, false) => None,
    };
    let mut headers: Vec<Header> = p
        .grpc_meta
        .iter()
        .map(|(k, v)| Header {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    if let Some(key) = &p.api_key
        && !p.grpc_meta.contains_key("authorization")
    {
        headers.push(Header {
            name: "authorization".into(),
            value: Secret::new(format!("Bearer {}", key.expose())),
        });
    }
    let endpoint = grpc::Endpoint {
        address,
        tls,
        headers,
    };
    endpoint.check()?;
    let namespace = match (&a.namespace, &p.namespace) {
        (Some(n), _) => n.to_string(),
        (None, Some(n)) => n
            .parse::<Namespace>()
            .map_err(|e| SettingsError::Namespace(e.0))?
            .to_string(),
        (None, None) => "default".to_string(),
    };
    let env_out = service_env(a, &endpoint, &p.api_key, &loaded);
    Ok(Some(Attach {
        connection: Connection {
            endpoint,
            namespace,
        },
        profile: loaded.map(|l| ProfileRef {
            name: l.name,
            file: l.file,
            file_exists: l.file_exists,
        }),
        env: env_out,
        strip_inherited: a.profile.is_none() && a.address.is_some(),
    }))
}

fn grpc_tls(t: Option<&TlsSection>) -> grpc::Tls {
    let t = t.cloned().unwrap_or_default();
    let pem = |path: Option<PathBuf>, data: Option<String>| {
        path.map(Pem::Path)
            .or_else(|| data.map(|d| Pem::Data(Secret::new(d))))
    };
    grpc::Tls {
        server_ca_cert: pem(t.server_ca_cert_path, t.server_ca_cert_data),
        client_cert: pem(t.client_cert_path, t.client_cert_data),
        client_key: pem(t.client_key_path, t.client_key_data),
        server_name: t.server_name,
    }
}

/// What services are told beyond address and namespace: the profile by
/// name (not its key copied into every environment), and what the
/// `[temporal]` keys changed over it.
fn service_env(
    a: &Options,
    endpoint: &grpc::Endpoint,
    key: &Option<Secret>,
    loaded: &Option<envconfig::Loaded>,
) -> Vec<(String, Secret)> {
    let mut v: Vec<(String, Secret)> = Vec::new();
    let mut set = |k: &str, val: String| v.push((k.to_string(), Secret::new(val)));
    if let Some(l) = loaded
        && l.file_exists
    {
        set("TEMPORAL_CONFIG_FILE", l.file.display().to_string());
        set("TEMPORAL_PROFILE", l.name.clone());
    }
    if a.tls.is_some() || loaded.is_none() {
        set("TEMPORAL_TLS", endpoint.tls.is_some().to_string());
        if let Some(t) = &endpoint.tls {
            for (name, pem) in [
                ("SERVER_CA_CERT", &t.server_ca_cert),
                ("CLIENT_CERT", &t.client_cert),
                ("CLIENT_KEY", &t.client_key),
            ] {
                match pem {
                    Some(Pem::Path(p)) => set(
                        &format!("TEMPORAL_TLS_{name}_PATH"),
                        p.display().to_string(),
                    ),
                    Some(Pem::Data(d)) => {
                        set(&format!("TEMPORAL_TLS_{name}_DATA"), d.expose().to_string())
                    }
                    None => {}
                }
            }
            if let Some(n) = &t.server_name {
                set("TEMPORAL_TLS_SERVER_NAME", n.clone());
            }
        }
    }
    if (a.api_key_env.is_some() || loaded.is_none())
        && let Some(k) = key
    {
        set("TEMPORAL_API_KEY", k.expose().to_string());
    }
    v
}

/// The inherited variables a service's Temporal client would read that
/// must not reach it: with the managed plaintext dev server (an API key or
/// TLS variable would turn TLS on against it), or attached by address
/// alone. `names` are the daemon's variables.
pub fn stripped<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names
        .filter(|n| {
            matches!(
                *n,
                "TEMPORAL_API_KEY" | "TEMPORAL_PROFILE" | "TEMPORAL_CONFIG_FILE" | "TEMPORAL_TLS"
            ) || n.starts_with("TEMPORAL_TLS_")
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(f: impl FnOnce(&mut Options)) -> Options {
        let mut o = Options::defaults();
        f(&mut o);
        o
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_shell_alone_never_attaches() {
        let e = env(&[
            ("TEMPORAL_ADDRESS", "elsewhere:7233"),
            ("TEMPORAL_PROFILE", "cloud"),
        ]);
        assert_eq!(resolve(&opts(|_| {}), &e), Ok(None));
    }

    #[test]
    fn a_profile_with_a_key_means_tls_and_a_bearer_header() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("temporal.toml");
        std::fs::write(
            &f,
            "[profile.cloud]\naddress = 'ns.acct.tmprl.cloud:7233'\nnamespace = 'ns.acct'\napi_key = 'k1'\n",
        )
        .unwrap();
        let e = env(&[("TEMPORAL_CONFIG_FILE", f.to_str().unwrap())]);
        let at = resolve(&opts(|o| o.profile = Some("cloud".into())), &e)
            .unwrap()
            .unwrap();
        let c = &at.connection;
        assert_eq!(c.namespace, "ns.acct");
        assert!(c.tls() && c.has_credentials());
        let auth = c
            .endpoint
            .headers
            .iter()
            .find(|h| h.name == "authorization")
            .unwrap();
        assert_eq!(auth.value.expose(), "Bearer k1");
        let names: Vec<&str> = at.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["TEMPORAL_CONFIG_FILE", "TEMPORAL_PROFILE"],
            "the key is not copied"
        );
        assert!(!format!("{at:?}").contains("k1"), "never shown");
        let err = resolve(
            &opts(|o| {
                o.profile = Some("cloud".into());
                o.tls = Some(TlsDecl::Enabled(false));
            }),
            &e,
        )
        .unwrap_err();
        assert_eq!(err, SettingsError::KeyWithoutTls);
        let err = resolve(&opts(|o| o.profile = Some("nope".into())), &e).unwrap_err();
        assert!(err.to_string().contains("\"nope\" not found"), "{err}");
    }

    #[test]
    fn explicit_keys_override_and_are_passed_on() {
        let e = env(&[("MY_KEY", "s3cret"), ("TEMPORAL_API_KEY", "ignored")]);
        let at = resolve(
            &opts(|o| {
                o.address = Some("127.0.0.1:7443".into());
                o.api_key_env = Some("MY_KEY".into());
            }),
            &e,
        )
        .unwrap()
        .unwrap();
        assert!(at.connection.tls(), "a key turns TLS on");
        assert!(at.strip_inherited);
        let get = |k: &str| {
            at.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.expose().to_string())
        };
        assert_eq!(get("TEMPORAL_API_KEY").as_deref(), Some("s3cret"));
        assert_eq!(get("TEMPORAL_TLS").as_deref(), Some("true"));
        let err = resolve(
            &opts(|o| {
                o.address = Some("127.0.0.1:7443".into());
                o.api_key_env = Some("UNSET_VAR".into());
            }),
            &e,
        )
        .unwrap_err();
        assert_eq!(err, SettingsError::KeyVarUnset("UNSET_VAR".into()));
        let plain = resolve(&opts(|o| o.address = Some("127.0.0.1:7233".into())), &e)
            .unwrap()
            .unwrap();
        assert!(!plain.connection.tls() && !plain.connection.has_credentials());
    }

    #[test]
    fn inherited_connection_variables_are_named_for_removal() {
        let names = [
            "PATH",
            "TEMPORAL_API_KEY",
            "TEMPORAL_TLS",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
            "TEMPORAL_PROFILE",
            "TEMPORAL_CONFIG_FILE",
            "TEMPORAL_ADDRESS",
            "TEMPORAL_SERVICE_ADDRESS",
        ];
        assert_eq!(
            stripped(names.into_iter()),
            [
                "TEMPORAL_API_KEY",
                "TEMPORAL_TLS",
                "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
                "TEMPORAL_PROFILE",
                "TEMPORAL_CONFIG_FILE"
            ]
        );
    }
}
