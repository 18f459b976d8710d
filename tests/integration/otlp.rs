//! A real OTLP trace receiver for tests: the collector's gRPC
//! `TraceService` (tonic, from opentelemetry-proto) and the HTTP/protobuf
//! `POST /v1/traces`, both on loopback, recording every span received.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct Received {
    pub name: String,
    pub service: String,
    pub attrs: HashMap<String, String>,
    pub links: usize,
    pub span_id: Vec<u8>,
    pub link_span_ids: Vec<Vec<u8>>,
}

#[derive(Clone, Default)]
pub struct Store(Arc<Mutex<Vec<Received>>>);

impl Store {
    pub fn spans(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }
    pub fn named(&self, name: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }
    fn add(&self, req: ExportTraceServiceRequest) {
        let mut out = self.0.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .map(|a| value(&a.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Received {
                        name: s.name.clone(),
                        service: service.clone(),
                        attrs: s
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), value(&a.value)))
                            .collect(),
                        links: s.links.len(),
                        span_id: s.span_id.clone(),
                        link_span_ids: s.links.iter().map(|l| l.span_id.clone()).collect(),
                    });
                }
            }
        }
    }
}

fn value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub store: Store,
    pub port: u16,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    /// OTLP/gRPC on a free loopback port.
    pub fn grpc() -> Receiver {
        Receiver::grpc_with(None)
    }

    /// OTLP/gRPC over TLS, with this certificate and key.
    pub fn grpc_tls(cert: &std::path::Path, key: &std::path::Path) -> Receiver {
        let identity = tonic::transport::Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        );
        Receiver::grpc_with(Some(
            tonic::transport::ServerTlsConfig::new().identity(identity),
        ))
    }

    fn grpc_with(tls: Option<tonic::transport::ServerTlsConfig>) -> Receiver {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = Store::default();
        let svc = TraceServiceServer::new(Grpc(store.clone()));
        rt.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let mut server = tonic::transport::Server::builder();
            if let Some(tls) = tls {
                server = server.tls_config(tls).unwrap();
            }
            server
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        Receiver {
            store,
            port,
            _rt: rt,
        }
    }

    /// OTLP/HTTP (protobuf) on a free loopback port.
    pub fn http() -> Receiver {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = Store::default();
        let s = store.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let s = s.clone();
                async move {
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(req) => {
                            s.add(req);
                            (
                                [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                                ExportTraceServiceResponse {
                                    partial_success: None,
                                }
                                .encode_to_vec(),
                            )
                                .into_response_ok()
                        }
                        Err(_) => {
                            (axum::http::StatusCode::BAD_REQUEST, Vec::new()).into_response_ok()
                        }
                    }
                }
            }),
        );
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            store,
            port,
            _rt: rt,
        }
    }
}

trait IntoResponseOk {
    fn into_response_ok(self) -> axum::response::Response;
}
impl<T: axum::response::IntoResponse> IntoResponseOk for T {
    fn into_response_ok(self) -> axum::response::Response {
        self.into_response()
    }
}
