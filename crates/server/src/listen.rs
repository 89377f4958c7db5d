//! Accepting connections, with bounds: a cap on open connections, a deadline to send a
//! request's headers, and a short drain at shutdown.
//!
//! `axum::serve` has no header-read timeout: a client that opens a connection and never
//! finishes its headers holds a file descriptor for ever, and about 20,000 of them
//! stopped a server from answering even `/healthz`. Here hyper's own
//! `header_read_timeout` closes such connections (for every request of a keep-alive
//! connection, not only the first), and past `max_connections` a new connection is
//! accepted and closed at once, so that the kernel's backlog never fills with them and
//! the descriptors left keep the server itself working (the log, the database, agents'
//! long polls). Requests themselves are bounded in `http::limits`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Bounds on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections at most; more are closed as soon as accepted.
    pub max_connections: usize,
    /// How long a client has to send a request's headers (each request of a keep-alive
    /// connection, idle time included).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may finish at shutdown.
    pub drain: Duration,
}

impl Default for ConnLimits {
    /// 4,096 connections, 10 s for the headers (nginx's `client_header_timeout` is 60 s;
    /// API clients and agents send theirs at once), 10 s to drain.
    fn default() -> ConnLimits {
        ConnLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(10),
        }
    }
}

/// Counters of what the listener refused.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// Raises this process's soft limit on open files to its hard limit (as Go's runtime
/// does), and returns the soft limit in force. A server holds one descriptor per
/// connection.
#[must_use]
pub fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// TLS for the API: the operator's certificate chain and key (PEM files), served with
/// rustls (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN).
pub type Tls = tokio_rustls::TlsAcceptor;

/// Reads the certificate chain and private key (PEM) and makes the TLS acceptor.
///
/// # Errors
/// A file that cannot be read, holds no certificate or key, or a key that does not go
/// with the certificate: said with the file's name.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<Tls, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("--tls-cert {}: no PEM certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert and --tls-key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`): a burst
/// of connections waits there for `accept` instead of being dropped and retried a
/// second later by the client's TCP.
pub const BACKLOG: u32 = 4096;

/// Binds a listener on `addr` with [`BACKLOG`] (and `SO_REUSEADDR`, as std does).
///
/// # Errors
/// The address cannot be bound (in use, not local, no permission).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `app` on `listener` until `stop` resolves, then lets in-flight requests finish
/// for at most `limits.drain`.
///
/// # Errors
/// Never for a single connection's trouble; only if the listener itself fails in a way
/// that retrying cannot mend.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    counters: Arc<ConnCounters>,
    tls: Option<Tls>,
    stop: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let seats = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (EMFILE), or a connection reset before it was
                    // accepted: wait a little and go on; never spin, never stop.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = seats.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let counters = counters.clone();
        counters.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // hyper's header timeout starts once it knows the protocol, which takes a
            // first byte: a client that sends none gets the same deadline here.
            let mut first = [0u8; 1];
            let spoke = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await;
            if matches!(spoke, Ok(Ok(n)) if n > 0) {
                let ended = match tls {
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    // The handshake has the same deadline as the headers.
                    Some(tls) => match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    },
                };
                if let Err(e) = ended {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            }
            counters.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after {:?}; closing them", limits.drain);
    }
    Ok(())
}
