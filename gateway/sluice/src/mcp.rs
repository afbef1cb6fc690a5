//! `sluice mcp`: MCP on stdio for hosts that start a command, as a Flight SQL client of a
//! running gateway, with the credential from the environment.

use base64::Engine;

use crate::cli::McpArgs;

type BoxError = Box<dyn std::error::Error>;

/// The `authorization` value of every call: SLUICE_TOKEN, else SLUICE_USER and
/// SLUICE_PASSWORD.
fn authorization(env: impl Fn(&str) -> Option<String>) -> Result<String, BoxError> {
    if let Some(token) = env("SLUICE_TOKEN").filter(|t| !t.is_empty()) {
        return Ok(format!("Bearer {token}"));
    }
    match (env("SLUICE_USER"), env("SLUICE_PASSWORD")) {
        (Some(user), Some(password)) if !user.is_empty() => {
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Ok(format!("Basic {pair}"))
        }
        _ => Err(
            "sluice mcp needs a credential in the environment: SLUICE_TOKEN (a token or \
                  JWT), or SLUICE_USER and SLUICE_PASSWORD"
                .into(),
        ),
    }
}

pub(crate) fn run(args: McpArgs) -> Result<(), BoxError> {
    let authorization = authorization(|name| std::env::var(name).ok())?;
    let caps = sluice_mcp::Caps {
        default_rows: args.default_rows,
        max_rows: args.max_rows,
        max_bytes: args.max_bytes,
    }
    .checked()
    .map_err(|e| format!("sluice mcp: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(sluice_mcp::serve_stdio(sluice_mcp::StdioOptions {
        url: args.url,
        authorization,
        tls_ca: args.tls_ca,
        caps,
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_token_comes_first_then_a_user_and_password() {
        assert_eq!(
            authorization(env(&[("SLUICE_TOKEN", "t1"), ("SLUICE_USER", "u")])).unwrap(),
            "Bearer t1"
        );
        assert_eq!(
            authorization(env(&[
                ("SLUICE_USER", "u0001"),
                ("SLUICE_PASSWORD", "u0001")
            ]))
            .unwrap(),
            "Basic dTAwMDE6dTAwMDE="
        );
        let e = authorization(env(&[("SLUICE_USER", "u")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SLUICE_TOKEN"), "{e}");
    }
}
