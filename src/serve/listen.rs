//! Accepting connections: each served by hyper (HTTP/1.1) with a header-read timeout (which also
//! closes connections idle between requests), at most `max_connections` at once, and a
//! graceful end: after the shutdown signal the server keeps answering (`/health` says
//! "draining", new completions get a 503) until no completion runs or the grace is over.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, Instant};

use super::state::Life;
use super::Limits;

/// How often a draining server looks whether its last completion has ended.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Serves `app` on `listener` until `shutdown` completes and then the completions running
/// end (or `limits.shutdown_grace` passes).
pub(super) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    life: Arc<Life>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    let mut grace_ends: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown, if grace_ends.is_none() => {
                life.start_draining();
                grace_ends = Some(Instant::now() + limits.shutdown_grace);
                eprintln!(
                    "shutting down: refusing new completions, {} running (up to {:.0} s more)",
                    life.running(),
                    limits.shutdown_grace.as_secs_f64()
                );
            }
            _ = wait_until(grace_ends) => {
                eprintln!("shutdown grace over: cancelling {} running completions", life.running());
                break;
            }
            _ = drained(&life), if grace_ends.is_some() => break,
            accepted = accept(&listener, &connections) => {
                let Some((stream, permit)) = accepted else { continue };
                serve_connection(stream, permit, app.clone(), &limits, &graceful);
            }
        }
    }
    // connections with no request in flight close now; the rest end with the process
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = sleep(Duration::from_millis(200)) => {}
    }
    Ok(())
}

/// The next connection once fewer than the most are open; None after an accept error
/// (out of file descriptors, a reset before accept), which waits a little first.
async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let permit = connections
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, permit)),
        Err(e) => {
            eprintln!("accepting a connection: {e}");
            sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Serves one connection on its own task; its permit goes with it.
fn serve_connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    app: Router,
    limits: &Limits,
    graceful: &GracefulShutdown,
) {
    let header_timeout = (!limits.header_timeout.is_zero()).then_some(limits.header_timeout);
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        // errors are the client's (a reset, a timed-out header): nothing to answer
        let _ = conn.await;
        drop(permit);
    });
}

async fn wait_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn drained(life: &Life) {
    while life.running() > 0 {
        sleep(DRAIN_POLL).await;
    }
}
