//! `hypha node`: opens the data folder and runs until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::{Context, Result};
use hypha_delta_store::{load_or_create_node_key, Durability, Store};
use hypha_views::Materializer;
use tokio::sync::watch;

use crate::cli::{DurabilityArg, NodeArgs};

/// The shutdown signal every task of the node holds; it fires once.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    fn new() -> (watch::Sender<bool>, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (sender, Shutdown { receiver })
    }

    /// Resolves when shutdown has been requested.
    pub(crate) async fn requested(&mut self) {
        // An error means the sender is gone, which also means shutting down.
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}

pub(crate) fn run(data: &Path, args: NodeArgs) -> Result<()> {
    let key = load_or_create_node_key(data)?;
    let durability = match args.durability {
        DurabilityArg::Fsync => Durability::Fsync,
        DurabilityArg::Buffered => Durability::Buffered,
    };
    let store = Store::builder(data)
        .durability(durability)
        .max_delta_bytes(args.max_delta_bytes)
        .open()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(store.clone(), key.host_id().to_string()))?;
    store.flush().context("flushing the journal")?;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(store: Store, host: String) -> Result<()> {
    let (stop, shutdown) = Shutdown::new();
    tracing::info!(%host, data = %store.config().path.display(), last_arrival = ?store.last_arrival()?.map(|a| a.get()), "node running");
    let views = store.clone();
    let views_shutdown = shutdown.clone();
    let feed_task = tokio::spawn(async move {
        if let Err(e) = keep_views_current(views, views_shutdown).await {
            tracing::error!(
                error = format!("{e:#}"),
                "views stopped; reads show the last materialized state"
            );
        }
    });
    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    feed_task.await.context("views task")?;
    Ok(())
}

/// Keeps the materialized views current: catches up at start, then applies what each
/// wake-up of the live feed announces (everything after the views' cursor, so a lagged
/// feed loses nothing).
async fn keep_views_current(store: Store, mut shutdown: Shutdown) -> Result<()> {
    let mut feed = store.subscribe();
    let mut views = Materializer::open(store.clone()).context("opening the views")?;
    let applied =
        tokio::task::block_in_place(|| views.apply_pending()).context("catching the views up")?;
    tracing::info!(applied, "views up to date");
    loop {
        tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            received = feed.recv() => {
                match received {
                    Ok(stored) => tracing::debug!(id = %stored.delta.id(), arrival = %stored.arrival, "stored"),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::debug!(skipped = n, "feed lagged; views catch up from their cursor"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                }
                if let Err(e) = tokio::task::block_in_place(|| views.apply_pending()) {
                    tracing::error!(error = %e, "updating the views failed; they catch up on the next delta or restart");
                }
            }
        }
    }
}

async fn wait_for_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
