//! MCP over Streamable HTTP at `/mcp`: every request needs `Authorization: Bearer` with a
//! credential the gateway accepts (a static token, a JWT of a configured principal, or a
//! session token); anything else is 401 before MCP sees it. The checked credential rides in
//! the request's extensions to the tools, which send it on with each Flight SQL call.
//! Stateless: no MCP session is kept, so any replica behind a balancer can answer any request.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use sluice_auth::Authenticator;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower_service::Service;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::gateway::FlightTransport;
use crate::tools::{Credential, SluiceTools};

/// The path MCP is served at.
const PATH: &str = "/mcp";

/// How the HTTP endpoint is served.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// PEM certificate and key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `Host` values accepted (DNS-rebinding protection); empty accepts any.
    pub allowed_hosts: Vec<String>,
}

type Body = BoxBody<Bytes, Infallible>;

/// The server of `tools` on `listener`, each request checked by `auth`: run the future it
/// returns until the process ends. Its TLS files are read here, so that a bad one fails
/// before serving starts.
pub fn serve_http<T: FlightTransport>(
    listener: TcpListener,
    tools: SluiceTools<T>,
    auth: Arc<Authenticator>,
    options: HttpOptions,
) -> Result<impl Future<Output = ()> + Send> {
    let tls = options
        .tls
        .as_ref()
        .map(|(c, k)| acceptor(c, k))
        .transpose()?;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(options.allowed_hosts.clone());
    let mcp = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Ok(async move { accept(listener, mcp, auth, tls).await })
}

async fn accept<T: FlightTransport>(
    listener: TcpListener,
    mcp: StreamableHttpService<SluiceTools<T>, NeverSessionManager>,
    auth: Arc<Authenticator>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accepting an MCP connection");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mcp = mcp.clone();
        let auth = Arc::clone(&auth);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, mcp.clone(), Arc::clone(&auth)));
            let served = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => {
                        http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Err(e) => {
                        debug!(%peer, error = %e, "MCP TLS handshake failed");
                        return;
                    }
                },
                None => {
                    http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = served {
                debug!(%peer, error = %e, "MCP connection ended");
            }
        });
    }
}

/// One request: `/mcp` with an accepted Bearer credential goes to MCP; the rest is refused.
async fn answer<T: FlightTransport>(
    mut req: Request<Incoming>,
    mut mcp: StreamableHttpService<SluiceTools<T>, NeverSessionManager>,
    auth: Arc<Authenticator>,
) -> std::result::Result<Response<Body>, Infallible> {
    if req.uri().path() != PATH {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            format!("not found: MCP is served at {PATH}\n"),
        ));
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(header) = header.filter(|h| is_bearer(h)) else {
        return Ok(unauthorized(
            "MCP needs 'Authorization: Bearer <token>': a principal's token or JWT",
        ));
    };
    let principal = match auth.authenticate(Some(&header)) {
        Ok((principal, _session)) => principal,
        Err(e) => return Ok(unauthorized(&e.to_string())),
    };
    info!(principal = %principal.name(), method = %req.method(), "mcp request");
    req.extensions_mut().insert(Credential(header));
    mcp.call(req).await
}

fn is_bearer(header: &str) -> bool {
    header
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn unauthorized(why: &str) -> Response<Body> {
    let mut r = plain(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer realm=\"sluice\""),
    );
    r
}

/// A TLS acceptor from PEM files (the same files as Flight SQL's `[tls]`).
fn acceptor(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor> {
    let tls = |what: &str, e: &dyn std::fmt::Display| Error::Serve(format!("MCP TLS {what}: {e}"));
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls(&format!("certificate {}", cert.display()), &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls(&format!("certificate {}", cert.display()), &e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls(&format!("key {}", key.display()), &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls("protocol versions", &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls("certificate and key", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_is_taken() {
        assert!(is_bearer("Bearer abc"));
        assert!(is_bearer("bearer abc"));
        assert!(!is_bearer("Basic dTp1"));
        assert!(!is_bearer("Bear"));
    }
}
