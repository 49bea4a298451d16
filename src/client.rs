//! A small client of the agent API for `sonde tap` and `sonde top`: HTTP/1
//! over TCP or over the agent's unix socket, with the bearer token when
//! one is given.

use std::path::PathBuf;
use std::str::FromStr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The environment variable `sonde tap` and `sonde top` read the token from.
pub const TOKEN_ENV: &str = "SONDE_API_TOKEN";

/// Where the agent API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiAddress {
    /// `HOST:PORT` (an `http://` prefix is allowed).
    Tcp(String),
    /// `unix:PATH`, or a path starting with `/`.
    Unix(PathBuf),
}

impl FromStr for ApiAddress {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(ApiAddress::Unix(path.into()));
        }
        if text.starts_with('/') {
            return Ok(ApiAddress::Unix(text.into()));
        }
        let host_port = text.strip_prefix("http://").unwrap_or(text).trim_end_matches('/');
        if host_port.starts_with("https://") || !host_port.contains(':') {
            return Err(format!(
                "`{text}`: give HOST:PORT (127.0.0.1:8686) or unix:PATH (the agent's `api_socket`)"
            ));
        }
        Ok(ApiAddress::Tcp(host_port.to_string()))
    }
}

impl std::fmt::Display for ApiAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiAddress::Tcp(address) => f.write_str(address),
            ApiAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there.
    #[error("cannot reach the agent API at {address}: {source} (is `sonde run` running, with `agent {{ api }}` or `api_socket` there?)")]
    Connect {
        /// Where.
        address: ApiAddress,
        /// Why.
        source: std::io::Error,
    },
    /// HTTP failed.
    #[error("agent API at {address}: {source}")]
    Http {
        /// Where.
        address: ApiAddress,
        /// Why.
        source: hyper::Error,
    },
    /// The agent said no.
    #[error("agent API at {address} answered {status}: {body}")]
    Status {
        /// Where.
        address: ApiAddress,
        /// The status.
        status: StatusCode,
        /// What it said.
        body: String,
    },
    /// The answer was not what was expected.
    #[error("agent API at {address}: unexpected answer: {source}")]
    Decode {
        /// Where.
        address: ApiAddress,
        /// Why.
        source: serde_json::Error,
    },
    /// The token file.
    #[error("cannot read the API token from {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A client of one agent.
#[derive(Clone, Debug)]
pub struct ApiClient {
    address: ApiAddress,
    token: Option<String>,
}

impl ApiClient {
    /// A client of the agent at `address`, with the token of `token_file`,
    /// else of `$SONDE_API_TOKEN`, else none.
    pub fn new(address: ApiAddress, token_file: Option<&std::path::Path>) -> Result<Self, ClientError> {
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| ClientError::TokenFile {
                        path: path.to_path_buf(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()),
        };
        Ok(ApiClient { address, token })
    }

    /// Where the agent is.
    pub fn address(&self) -> &ApiAddress {
        &self.address
    }

    /// `GET path`: the response, whose body streams; an error unless 200.
    pub async fn get(&self, path: &str) -> Result<Response<Incoming>, ClientError> {
        let http = |source| ClientError::Http {
            address: self.address.clone(),
            source,
        };
        let connect = |source| ClientError::Connect {
            address: self.address.clone(),
            source,
        };
        let mut sender = match &self.address {
            ApiAddress::Tcp(address) => {
                let stream = tokio::net::TcpStream::connect(address).await.map_err(connect)?;
                handshake(stream).await.map_err(http)?
            }
            ApiAddress::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(connect)?;
                handshake(stream).await.map_err(http)?
            }
        };
        let host = match &self.address {
            ApiAddress::Tcp(address) => address.as_str(),
            ApiAddress::Unix(_) => "localhost",
        };
        let mut request = Request::get(path).header(hyper::header::HOST, host);
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::<Bytes>::new()).expect("a valid request");
        let response = sender.send_request(request).await.map_err(http)?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_default();
            return Err(ClientError::Status {
                address: self.address.clone(),
                status,
                body,
            });
        }
        Ok(response)
    }

    /// `GET path` as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.get(path).await?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Http {
                address: self.address.clone(),
                source,
            })?;
        serde_json::from_slice(&body.to_bytes()).map_err(|source| ClientError::Decode {
            address: self.address.clone(),
            source,
        })
    }
}

async fn handshake<S>(stream: S) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends with the response (one request per connection).
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!("127.0.0.1:8686".parse(), Ok(ApiAddress::Tcp("127.0.0.1:8686".into())));
        assert_eq!(
            "http://10.0.0.1:8686/".parse(),
            Ok(ApiAddress::Tcp("10.0.0.1:8686".into()))
        );
        assert_eq!(
            "unix:/run/sonde.sock".parse(),
            Ok(ApiAddress::Unix("/run/sonde.sock".into()))
        );
        assert_eq!(
            "/run/sonde.sock".parse(),
            Ok(ApiAddress::Unix("/run/sonde.sock".into()))
        );
        assert!("localhost".parse::<ApiAddress>().is_err());
    }
}
