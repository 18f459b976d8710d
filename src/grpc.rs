//! gRPC as a client: an [`Endpoint`] (address, TLS, headers) and a
//! [`Client`] that keeps one lazily made connection to it, for the
//! standard health check and for unary calls with hand-written prost
//! messages. Temporal's frontend (plaintext locally; TLS, mTLS and API
//! keys when attached) and a service's `grpc` probe both go through here,
//! so every call we make uses the same TLS and credentials.

use crate::model::Secret;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `HOST:PORT` (a name is resolved at each connection).
    pub address: String,
    /// TLS; `None` for plaintext.
    pub tls: Option<Tls>,
    /// Sent with every call (credentials among them: never shown).
    #[serde(default)]
    pub headers: Vec<Header>,
}

/// One header of every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Lowercase name.
    pub name: String,
    /// Its value.
    pub value: Secret,
}

/// TLS as Temporal's environment configuration describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tls {
    /// The CA that signed the server's certificate; the system's roots
    /// when `None`.
    pub server_ca_cert: Option<Pem>,
    /// The client certificate (mTLS).
    pub client_cert: Option<Pem>,
    /// Its key.
    pub client_key: Option<Pem>,
    /// The name to verify the server's certificate against, instead of
    /// the address's host.
    pub server_name: Option<String>,
}

/// PEM text: a file, or the text itself (as `*_data` keys give it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pem {
    /// Read from this file when a connection is made.
    Path(PathBuf),
    /// Given inline.
    Data(Secret),
}

impl Pem {
    fn load(&self, what: &str) -> Result<Vec<u8>, SetupError> {
        match self {
            Pem::Path(p) => std::fs::read(p).map_err(|e| SetupError::Read {
                what: what.to_string(),
                path: p.clone(),
                error: e.to_string(),
            }),
            Pem::Data(d) => Ok(d.expose().as_bytes().to_vec()),
        }
    }

    /// Its certificates, checked: at least one, each well formed.
    fn certificates(&self, what: &str) -> Result<Vec<u8>, SetupError> {
        use rustls_pki_types::{CertificateDer, pem::PemObject};
        let pem = self.load(what)?;
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match certs {
            Ok(c) if !c.is_empty() => Ok(pem),
            Ok(_) => Err(self.invalid(what, "no certificate in it".into())),
            Err(e) => Err(self.invalid(what, e.to_string())),
        }
    }

    /// Its private key, checked.
    fn key(&self, what: &str) -> Result<Vec<u8>, SetupError> {
        use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
        let pem = self.load(what)?;
        PrivateKeyDer::from_pem_slice(&pem)
            .map(|_| pem)
            .map_err(|e| self.invalid(what, e.to_string()))
    }

    fn invalid(&self, what: &str, error: String) -> SetupError {
        SetupError::Pem {
            what: match self {
                Pem::Path(p) => format!("{what} {}", p.display()),
                Pem::Data(_) => format!("{what} (inline data)"),
            },
            error,
        }
    }
}

/// An endpoint that cannot be used as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// A certificate or key file cannot be read.
    #[error("cannot read the {what} {}: {error}", .path.display())]
    Read {
        /// Which file it is.
        what: String,
        /// Where.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A certificate or key that is not valid PEM.
    #[error("the {what} is not usable: {error}")]
    Pem {
        /// Which it is, and where.
        what: String,
        /// Why.
        error: String,
    },
    /// TLS cannot be set up with these certificates and keys.
    #[error("TLS settings for {address} are not usable: {error}")]
    Tls {
        /// The endpoint.
        address: String,
        /// Why (e.g. no certificate in the PEM text).
        error: String,
    },
    /// Not a `HOST:PORT`.
    #[error("{0:?} is not a HOST:PORT address")]
    Address(String),
    /// A header that gRPC cannot carry.
    #[error("header {0:?} is not a valid gRPC metadata name and ASCII value")]
    Header(String),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer in time.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The endpoint cannot be used.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The server (or a proxy) answered with an error status.
    #[error("{code:?}: {message}")]
    Status {
        /// The gRPC code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
}

impl CallError {
    fn from_status(s: tonic::Status) -> CallError {
        // tonic enforces the request's grpc-timeout on a timer of its own,
        // racing ours, and reports it as CANCELLED "Timeout expired": the
        // same thing as the server's DEADLINE_EXCEEDED.
        let expired = std::iter::successors(std::error::Error::source(&s), |e| e.source())
            .any(|e| e.is::<tonic::TimeoutExpired>());
        if expired {
            return CallError::Status {
                code: tonic::Code::DeadlineExceeded,
                message: "Timeout expired".into(),
            };
        }
        // A transport error has no message of its own: say what failed.
        let message = if s.message().is_empty() {
            std::error::Error::source(&s)
                .map(|e| e.to_string())
                .unwrap_or_default()
        } else {
            s.message().to_string()
        };
        CallError::Status {
            code: s.code(),
            message,
        }
    }

    /// The credentials were rejected: gRPC UNAUTHENTICATED or
    /// PERMISSION_DENIED, or a proxy's HTTP 401 or 403 (which tonic
    /// reports under other codes, naming the HTTP status).
    pub fn is_auth(&self) -> bool {
        match self {
            CallError::Status { code, message } => {
                matches!(
                    code,
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) || ["401 Unauthorized", "403 Forbidden"]
                    .iter()
                    .any(|m| message.contains(m))
            }
            _ => false,
        }
    }

    /// Its gRPC code, when the server answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CallError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl Endpoint {
    /// Plaintext, no headers.
    pub fn plain(addr: SocketAddr) -> Endpoint {
        Endpoint {
            address: addr.to_string(),
            tls: None,
            headers: Vec::new(),
        }
    }

    /// A channel to it that connects on first use (and again after an
    /// error), with TLS set up: certificate files are read now.
    pub fn channel(
        &self,
        connect_timeout: Duration,
    ) -> Result<tonic::transport::Channel, SetupError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", self.address))
                .map_err(|_| SetupError::Address(self.address.clone()))?
                .connect_timeout(connect_timeout);
        if let Some(tls) = &self.tls {
            let config = tls.client_config(&self.address)?;
            ep = ep.tls_config(config).map_err(|e| SetupError::Tls {
                address: self.address.clone(),
                error: source_chain(&e),
            })?;
        }
        Ok(ep.connect_lazy())
    }
}

impl Tls {
    /// tonic's TLS settings for a connection to `address`: certificates
    /// and key read and checked now; the system's roots when no CA is
    /// given.
    pub fn client_config(
        &self,
        address: &str,
    ) -> Result<tonic::transport::ClientTlsConfig, SetupError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let tls = self;
        let mut c = ClientTlsConfig::new();
        c = match &tls.server_ca_cert {
            Some(ca) => c.ca_certificate(Certificate::from_pem(
                ca.certificates("server CA certificate")?,
            )),
            None => c.with_native_roots(),
        };
        match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => {
                c = c.identity(Identity::from_pem(
                    cert.certificates("client certificate")?,
                    key.key("client key")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(SetupError::Tls {
                    address: address.to_string(),
                    error: "a client certificate needs its key, and a key its certificate".into(),
                });
            }
        }
        if let Some(name) = &tls.server_name {
            c = c.domain_name(name.clone());
        }
        Ok(c)
    }
}

impl Endpoint {
    /// Can it be used as given: certificates readable and valid, headers
    /// well formed? (Nothing is connected.)
    pub fn check(&self) -> Result<(), SetupError> {
        self.metadata()?;
        // Building the channel parses the certificates and keys; it needs
        // a runtime for the connection task it would start.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SetupError::Tls {
                address: self.address.clone(),
                error: e.to_string(),
            })?;
        let _enter = rt.enter();
        self.channel(Duration::from_secs(1)).map(drop)
    }

    fn metadata(&self) -> Result<Vec<(AsciiMetadataKey, AsciiMetadataValue)>, SetupError> {
        self.headers
            .iter()
            .map(|h| {
                let bad = || SetupError::Header(h.name.clone());
                Ok((
                    AsciiMetadataKey::from_bytes(h.name.as_bytes()).map_err(|_| bad())?,
                    AsciiMetadataValue::try_from(h.value.expose()).map_err(|_| bad())?,
                ))
            })
            .collect()
    }
}

/// `e` and its sources, as one line.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// A connection to one endpoint, made on first use and kept between calls
/// (a call is then one request, not a TCP, TLS and HTTP/2 handshake). It
/// reconnects by itself after an error; [`Client::reset`] drops it, e.g.
/// when a new server process is spawned.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Arc<std::sync::RwLock<Arc<Endpoint>>>,
    channel: Arc<std::sync::Mutex<Option<tonic::transport::Channel>>>,
}

impl Client {
    /// A client of `endpoint`, not connected yet.
    pub fn new(endpoint: Endpoint) -> Self {
        Client {
            endpoint: Arc::new(std::sync::RwLock::new(Arc::new(endpoint))),
            channel: Arc::default(),
        }
    }

    /// Its endpoint.
    pub fn endpoint(&self) -> Arc<Endpoint> {
        self.endpoint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Point it (and every clone) at `endpoint` from the next call on
    /// (a configuration reload moved the server).
    pub fn retarget(&self, endpoint: Endpoint) {
        *self.endpoint.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(endpoint);
        self.reset();
    }

    /// The channel, made now (on the caller's runtime) if there is none.
    fn get(&self, timeout: Duration) -> Result<tonic::transport::Channel, SetupError> {
        let mut slot = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let channel = self.endpoint().channel(timeout)?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Forget the connection; the next call makes a new one.
    pub fn reset(&self) {
        *self.channel.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A request carrying the endpoint's headers and `extra`.
    fn request<T>(
        &self,
        msg: T,
        extra: &[(&'static str, &str)],
        timeout: Duration,
    ) -> Result<tonic::Request<T>, CallError> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        let md = req.metadata_mut();
        for (k, v) in self.endpoint().metadata()? {
            md.insert(k, v);
        }
        for (k, v) in extra {
            if let Ok(v) = AsciiMetadataValue::try_from(*v) {
                md.insert(*k, v);
            }
        }
        Ok(req)
    }

    /// `grpc.health.v1.Health/Check` of `service` ("" = the server).
    pub async fn health(
        &self,
        service: &str,
        timeout: Duration,
    ) -> Result<ServingStatus, CallError> {
        let call = async {
            let req = self.request(
                HealthCheckRequest {
                    service: service.into(),
                },
                &[],
                timeout,
            )?;
            HealthClient::new(self.get(timeout)?)
                .check(req)
                .await
                .map(|r| r.into_inner().status())
                .map_err(CallError::from_status)
        };
        within(timeout, call).await
    }

    /// One unary call of `path` (`/package.Service/Method`) with `extra`
    /// headers, answered within `timeout`.
    pub async fn unary<Q, R>(
        &self,
        path: &'static str,
        msg: Q,
        extra: &[(&'static str, &str)],
        timeout: Duration,
    ) -> Result<R, CallError>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let call = async {
            let req = self.request(msg, extra, timeout)?;
            let mut grpc = tonic::client::Grpc::new(self.get(timeout)?);
            grpc.ready().await.map_err(|e| CallError::Status {
                code: tonic::Code::Unavailable,
                message: source_chain(&e),
            })?;
            grpc.unary(
                req,
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<Q, R>::default(),
            )
            .await
            .map(tonic::Response::into_inner)
            .map_err(CallError::from_status)
        };
        within(timeout, call).await
    }
}

/// `call`, answered within `timeout`. Three timers watch a call: ours,
/// tonic's (the request's grpc-timeout) and the server's deadline. Whichever
/// fires first, no answer in time is [`CallError::Timeout`]: the health
/// checks treat a timeout (perhaps a starved server: asked again under CPU
/// pressure) unlike an error the server chose to send.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Err(CallError::Status {
            code: tonic::Code::DeadlineExceeded,
            ..
        }))
        | Err(_) => Err(CallError::Timeout(timeout)),
        Ok(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_deadline_that_passes_is_a_timeout() {
        let t = Duration::from_millis(100);
        // tonic's own grpc-timeout timer.
        let tonics = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(
            tonics.code(),
            tonic::Code::Cancelled,
            "how tonic reports it"
        );
        let e = CallError::from_status(tonics);
        assert_eq!(e.code(), Some(tonic::Code::DeadlineExceeded));
        let r: Result<(), _> = within(t, async { Err(e) }).await;
        assert!(matches!(r, Err(CallError::Timeout(d)) if d == t), "{r:?}");
        // The server's deadline.
        let server = CallError::from_status(tonic::Status::deadline_exceeded(
            "context deadline exceeded",
        ));
        let r: Result<(), _> = within(t, async { Err(server) }).await;
        assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
        // Ours.
        let r: Result<(), CallError> =
            within(Duration::from_millis(5), std::future::pending()).await;
        assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
        // An error the server chose to send stays one.
        let other = CallError::from_status(tonic::Status::cancelled("shutting down"));
        let r: Result<(), _> = within(t, async { Err(other) }).await;
        assert!(
            matches!(
                r,
                Err(CallError::Status {
                    code: tonic::Code::Cancelled,
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn endpoints_check_what_they_carry() {
        assert!(
            Endpoint::plain("127.0.0.1:1".parse().unwrap())
                .check()
                .is_ok()
        );
        let mut e = Endpoint::plain("127.0.0.1:1".parse().unwrap());
        e.tls = Some(Tls {
            server_ca_cert: Some(Pem::Data(Secret::new("not a certificate"))),
            ..Tls::default()
        });
        let err = e.check().unwrap_err();
        assert!(matches!(err, SetupError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("no certificate"), "{err}");
        e.tls = Some(Tls {
            server_ca_cert: Some(Pem::Path("/nonexistent/ca.pem".into())),
            ..Tls::default()
        });
        assert!(
            e.check()
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/ca.pem")
        );
        e.tls = None;
        e.headers.push(Header {
            name: "bad header".into(),
            value: Secret::new("x"),
        });
        assert!(matches!(e.check(), Err(SetupError::Header(_))));
    }

    #[test]
    fn auth_failures_are_recognised_however_they_come() {
        let s = |code, message: &str| CallError::Status {
            code,
            message: message.into(),
        };
        assert!(s(tonic::Code::Unauthenticated, "bad key").is_auth());
        assert!(s(tonic::Code::PermissionDenied, "").is_auth());
        assert!(s(tonic::Code::Internal, "status: 401 Unauthorized").is_auth());
        assert!(!s(tonic::Code::Unavailable, "connection refused").is_auth());
        assert!(!CallError::Timeout(Duration::from_secs(1)).is_auth());
    }
}
