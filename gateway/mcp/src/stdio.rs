//! MCP over stdio, for hosts that start a command: the same tools, as a Flight SQL client of
//! a running gateway, every call made with one credential from the environment.

use std::path::PathBuf;

use rmcp::ServiceExt;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tracing::info;

use crate::capped::Caps;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::tools::SluiceTools;

/// Where the gateway is and who is asking.
#[derive(Debug, Clone)]
pub struct StdioOptions {
    /// `grpc://host:port` or `grpc+tls://host:port`.
    pub url: String,
    /// The `authorization` value of every call (`Bearer ...` or `Basic ...`).
    pub authorization: String,
    /// The CA (PEM) that signed the gateway's certificate, for `grpc+tls`.
    pub tls_ca: Option<PathBuf>,
    pub caps: Caps,
}

/// Serves the tools on stdin and stdout until the host closes them.
pub async fn serve_stdio(options: StdioOptions) -> Result<()> {
    let endpoint = endpoint(&options)?;
    // Lazy: the host's handshake succeeds even while the gateway is away, and each tool
    // call then says why it could not reach it.
    let channel = endpoint.connect_lazy();
    let tools = SluiceTools::new(
        Gateway::new(channel),
        options.caps,
        Some(options.authorization.clone()),
    );
    info!(url = %options.url, "serving MCP on stdio");
    let running = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::Serve(format!("starting MCP on stdio: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::Serve(format!("MCP on stdio: {e}")))?;
    Ok(())
}

fn endpoint(options: &StdioOptions) -> Result<Endpoint> {
    let connect = |reason: String| Error::Connect {
        url: options.url.clone(),
        reason,
    };
    let (scheme, rest) = options
        .url
        .split_once("://")
        .ok_or_else(|| connect("expected grpc://host:port or grpc+tls://host:port".into()))?;
    let endpoint = match scheme {
        "grpc" | "http" => {
            Endpoint::from_shared(format!("http://{rest}")).map_err(|e| connect(e.to_string()))?
        }
        "grpc+tls" | "https" => {
            let ca = options.tls_ca.as_ref().ok_or_else(|| {
                connect("grpc+tls needs the gateway's CA: set SLUICE_TLS_CA (a PEM file)".into())
            })?;
            let pem = std::fs::read(ca)
                .map_err(|e| connect(format!("reading the CA {}: {e}", ca.display())))?;
            let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
            Endpoint::from_shared(format!("https://{rest}"))
                .map_err(|e| connect(e.to_string()))?
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(pem))
                        .domain_name(host),
                )
                .map_err(|e| connect(e.to_string()))?
        }
        other => {
            return Err(connect(format!(
                "unknown scheme {other}; use grpc or grpc+tls"
            )));
        }
    };
    Ok(endpoint.tcp_nodelay(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> StdioOptions {
        StdioOptions {
            url: url.into(),
            authorization: "Bearer t".into(),
            tls_ca: None,
            caps: Caps::default(),
        }
    }

    #[test]
    fn a_plain_url_is_taken_and_a_wrong_one_is_named() {
        assert!(endpoint(&options("grpc://127.0.0.1:32010")).is_ok());
        let e = endpoint(&options("ftp://x:1")).unwrap_err().to_string();
        assert!(e.contains("ftp://x:1") && e.contains("grpc+tls"), "{e}");
        let e = endpoint(&options("grpc+tls://x:1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SLUICE_TLS_CA"), "{e}");
    }
}
