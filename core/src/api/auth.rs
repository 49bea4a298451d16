//! The API's bearer token: where it comes from (a file, or an environment
//! variable) and the check in front of every route but `/health`.
//!
//! A request carries it as `Authorization: Bearer TOKEN`, or, for a browser
//! opening the graph page, as `?token=TOKEN` (the page passes it on to its
//! own requests in the header).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::AgentConfig;

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The token every guarded request must carry.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

/// Why the token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read the API token from {path} (`agent {{ api_token_file }}`): {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The variable is not set.
    #[error("the API token variable `{name}` (`agent {{ api_token_env }}`) is not set")]
    Unset {
        /// Its name.
        name: String,
    },
    /// Too short to be a secret.
    #[error("the API token from {from} has {len} characters; it needs at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort {
        /// Where it came from.
        from: String,
        /// Its length.
        len: usize,
    },
}

impl ApiToken {
    /// A token of this text (trimmed).
    pub fn new(text: &str, from: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort {
                from: from.to_string(),
                len: text.len(),
            });
        }
        Ok(ApiToken(text.into()))
    }

    /// The token the agent block names, if any.
    pub fn from_config(agent: &AgentConfig) -> Result<Option<Self>, TokenError> {
        if let Some(path) = &agent.api_token_file {
            let text = std::fs::read_to_string(path).map_err(|source| TokenError::File {
                path: path.clone(),
                source,
            })?;
            return Self::new(&text, &path.display().to_string()).map(Some);
        }
        if let Some(name) = &agent.api_token_env {
            let text = std::env::var(name).map_err(|_| TokenError::Unset { name: name.clone() })?;
            return Self::new(&text, &format!("${name}")).map(Some);
        }
        Ok(None)
    }

    /// Whether `given` is the token, in time that does not depend on where
    /// they differ.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
    }
}

/// The token a request carries, from its header or its query.
fn carried(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string());
    }
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

/// Lets a request through only with the token: 401 otherwise.
pub(super) async fn require(State(token): State<ApiToken>, request: Request, next: Next) -> Response {
    match carried(&request) {
        Some(given) if token.matches(&given) => next.run(request).await,
        given => {
            let why = if given.is_some() {
                "wrong token"
            } else {
                "missing token"
            };
            tracing::debug!(path = %request.uri().path(), why, "API request refused");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"sonde\"")],
                format!("{why}: this agent API needs `Authorization: Bearer TOKEN` (sonde tap/top: --token-file or SONDE_API_TOKEN)\n"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let token = ApiToken::new(" 0123456789abcdef\n", "test").unwrap();
        assert!(token.matches("0123456789abcdef"));
        assert!(!token.matches("0123456789abcdeF"));
        assert!(!token.matches("0123456789abcde"));
        assert!(matches!(
            ApiToken::new("short", "x"),
            Err(TokenError::TooShort { len: 5, .. })
        ));
    }
}
