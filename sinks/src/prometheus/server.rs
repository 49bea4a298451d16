//! The scrape endpoint: `GET /metrics` renders the store in the format the
//! scraper asks for.
//!
//! On reload a changed sink is built while the old one still runs, so both
//! must listen on the same address for a moment. They share one socket:
//! the first sink of an address binds it, and a later one takes a
//! duplicate of its descriptor (`dup`), so both accept from the same queue
//! and the socket closes only when the last of them stops.
//!
//! `SO_REUSEPORT` (two sockets on one port) was tried first and rejected:
//! when the old sink's socket closes, the kernel resets the connections
//! still queued on it, so a scrape racing a reload failed (the endpoint
//! tests caught it); and it would let a second sonde *process* bind the
//! same port and silently split the scrapes between two agents. With a
//! plain bind (`SO_REUSEADDR` only, as std sets it) a foreign listener is
//! an error.
//!
//! A stopping endpoint first stops accepting (the new one takes the queue)
//! and only [`DRAIN`] later asks its open connections to close. Closing at
//! once reset a connection accepted an instant before the stop, whose
//! request had not been read yet (hyper closes a connection that has not
//! started a request): a scrape racing a reload failed about once in
//! 10,000.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sonde_core::ComponentInfo;
use tokio_util::sync::CancellationToken;

use super::encode::{render, Format};
use super::store::SeriesStore;

/// How long a stopping endpoint still answers the connections it accepted
/// before it closes the idle ones.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Path of the scrape endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// The scrape endpoint could not listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another process listens on the address.
    #[error("cannot listen on {address}: another process is listening there")]
    InUse {
        /// The address.
        address: SocketAddr,
    },
    /// A socket call failed.
    #[error("cannot listen on {address}: {call}: {source}")]
    Socket {
        /// The address.
        address: SocketAddr,
        /// The failing step (`bind`, `dup`, …).
        call: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// A socket this process listens on, and how many endpoints share it.
struct Shared {
    socket: TcpListener,
    users: usize,
}

/// The scrape sockets of this process, by the address they were asked for.
fn shared_sockets() -> &'static Mutex<HashMap<SocketAddr, Shared>> {
    static SHARED: OnceLock<Mutex<HashMap<SocketAddr, Shared>>> = OnceLock::new();
    SHARED.get_or_init(Default::default)
}

/// A listening socket; leaves the shared table when its last user drops it.
pub struct Listener {
    socket: TcpListener,
    address: SocketAddr,
    shared: bool,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.shared {
            return;
        }
        let mut table = shared_sockets().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = table.get_mut(&self.address) {
            entry.users -= 1;
            if entry.users == 0 {
                table.remove(&self.address);
            }
        }
    }
}

/// A socket listening on `address`: the one this process already has
/// there, duplicated, or a new one (see the module doc).
pub fn bind(address: SocketAddr) -> Result<Listener, BindError> {
    let error = |call| move |source| BindError::Socket { address, call, source };
    // Port 0 asks for a new port each time: nothing to share.
    if address.port() == 0 {
        let socket = TcpListener::bind(address).map_err(error("bind"))?;
        let address = socket.local_addr().map_err(error("getsockname"))?;
        socket.set_nonblocking(true).map_err(error("O_NONBLOCK"))?;
        return Ok(Listener {
            socket,
            address,
            shared: false,
        });
    }
    let mut table = shared_sockets().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = table.get_mut(&address) {
        let socket = entry.socket.try_clone().map_err(error("dup"))?;
        entry.users += 1;
        return Ok(Listener {
            socket,
            address,
            shared: true,
        });
    }
    let socket = TcpListener::bind(address).map_err(|source| match source.kind() {
        std::io::ErrorKind::AddrInUse => BindError::InUse { address },
        _ => error("bind")(source),
    })?;
    socket.set_nonblocking(true).map_err(error("O_NONBLOCK"))?;
    let kept = socket.try_clone().map_err(error("dup"))?;
    table.insert(address, Shared { socket: kept, users: 1 });
    Ok(Listener {
        socket,
        address,
        shared: true,
    })
}

#[derive(Clone)]
struct ServerState {
    store: Arc<Mutex<SeriesStore>>,
    /// Size of the last rendering, to allocate the next one at once.
    last_len: Arc<std::sync::atomic::AtomicUsize>,
}

/// Serves `store` on `listener` (from [`bind`]) until `shutdown`.
pub fn spawn(
    listener: Listener,
    store: Arc<Mutex<SeriesStore>>,
    info: ComponentInfo,
    shutdown: CancellationToken,
) -> Result<(), BindError> {
    let address = listener.address;
    // tokio takes ownership of a descriptor; `listener` itself stays with
    // the server task, to leave the shared table when the server stops.
    let socket = listener.socket.try_clone().map_err(|source| BindError::Socket {
        address,
        call: "dup",
        source,
    })?;
    let accept = tokio::net::TcpListener::from_std(socket).map_err(|source| BindError::Socket {
        address,
        call: "register with tokio",
        source,
    })?;
    let state = ServerState {
        store,
        last_len: Default::default(),
    };
    let app = Router::new()
        .route(METRICS_PATH, get(metrics))
        .fallback(not_found)
        .with_state(state);
    tokio::spawn(async move {
        // Held until the server stops: the last holder closes the socket.
        let _listener = listener;
        tracing::info!(component = %info, %address, "serving Prometheus metrics");
        let accepting = Accepting {
            listener: accept,
            stop: shutdown.clone(),
        };
        let drained = async move {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        };
        let server = axum::serve(accepting, app).with_graceful_shutdown(drained);
        if let Err(error) = server.await {
            tracing::error!(component = %info, %error, "Prometheus endpoint stopped");
        }
    });
    Ok(())
}

/// The endpoint's socket, accepting until `stop`: then it waits forever,
/// leaving queued connections to the endpoint that replaces it.
struct Accepting {
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
}

impl axum::serve::Listener for Accepting {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => std::future::pending::<()>().await,
                accepted = self.listener.accept() => match accepted {
                    Ok(connection) => return connection,
                    // Out of descriptors or a connection reset before it
                    // was accepted: wait a moment, as axum's own loop does.
                    Err(error) => {
                        tracing::debug!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

async fn metrics(State(state): State<ServerState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    // Rendering 100k series takes milliseconds of CPU: off the async
    // workers, so that the pipeline keeps moving meanwhile.
    let rendered = tokio::task::spawn_blocking(move || {
        use std::sync::atomic::Ordering;
        let mut out = String::with_capacity(state.last_len.load(Ordering::Relaxed) + 1024);
        {
            let mut store = state.store.lock().unwrap_or_else(|e| e.into_inner());
            let now = store.now_ms();
            store.sweep(now);
            render(&store, format, &mut out);
        }
        state.last_len.store(out.len(), Ordering::Relaxed);
        out
    })
    .await;
    match rendered {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        format!("not found: metrics are on {METRICS_PATH}\n"),
    )
}
