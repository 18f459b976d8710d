//! Where traces go, as OpenTelemetry's variables say (and `--otlp-endpoint`
//! over them): the endpoint, the protocol, and for `https://` the TLS the
//! specification names (`OTEL_EXPORTER_OTLP_CERTIFICATE`, `..._CLIENT_CERTIFICATE`,
//! `..._CLIENT_KEY`, each with a `TRACES_` form that wins). Checked before
//! anything starts: a certificate that cannot be read is a clear error,
//! not traces silently lost.

use crate::grpc::{self, Pem};

/// Where and how to export traces.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpTarget {
    /// The endpoint URL, when one is configured.
    pub endpoint: Option<String>,
    /// HTTP/protobuf instead of gRPC.
    pub http: bool,
    /// TLS, for an `https://` endpoint.
    pub tls: Option<grpc::Tls>,
}

/// The traces-specific variable, else the general one.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
        .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")))
        .filter(|v| !v.is_empty())
}

impl OtlpTarget {
    /// From `flag` (`--otlp-endpoint`) and the variables `env` gives.
    pub fn new(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> OtlpTarget {
        let endpoint = flag.map(str::to_string).or_else(|| var(env, "ENDPOINT"));
        let http = var(env, "PROTOCOL").is_some_and(|p| p.starts_with("http"));
        let https = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("https://"));
        let file = |name| var(env, name).map(|p| Pem::Path(p.into()));
        let tls = https.then(|| grpc::Tls {
            server_ca_cert: file("CERTIFICATE"),
            client_cert: file("CLIENT_CERTIFICATE"),
            client_key: file("CLIENT_KEY"),
            server_name: None,
        });
        OtlpTarget {
            endpoint,
            http,
            tls,
        }
    }

    /// From `flag` and this process's environment.
    pub fn from_env(flag: Option<&str>) -> OtlpTarget {
        OtlpTarget::new(flag, &|k| std::env::var(k).ok())
    }

    /// Can it be used: a gRPC endpoint when it is `https://`, with
    /// certificates that read and parse?
    pub fn check(&self) -> Result<(), String> {
        let (Some(endpoint), Some(tls)) = (&self.endpoint, &self.tls) else {
            return Ok(());
        };
        if self.http {
            return Err(format!(
                "{}: https with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf is not supported; use grpc (the default) or an http:// endpoint",
                crate::redact::url(endpoint)
            ));
        }
        let address = endpoint
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        grpc::Endpoint {
            address,
            tls: Some(tls.clone()),
            headers: Vec::new(),
        }
        .check()
        .map_err(|e| format!("{}: {e}", crate::redact::url(endpoint)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn https_takes_the_specifications_certificates_or_is_refused() {
        let t = OtlpTarget::new(Some("http://c:4317"), &env(&[]));
        assert!(t.tls.is_none() && t.check().is_ok());
        let vars = [
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/general.pem"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "/nonexistent/ca.pem",
            ),
        ];
        let t = OtlpTarget::new(Some("https://c:4317"), &env(&vars));
        assert_eq!(
            t.tls.as_ref().unwrap().server_ca_cert,
            Some(Pem::Path("/nonexistent/ca.pem".into())),
            "the traces variable wins"
        );
        let e = t.check().unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ];
        let e = OtlpTarget::new(None, &env(&vars)).check().unwrap_err();
        assert!(e.contains("http/protobuf"), "{e}");
    }
}
