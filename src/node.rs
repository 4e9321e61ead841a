//! `hypha node`: opens the data folder and runs until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::{Context, Result};
use hypha_delta_store::{load_or_create_node_key, Durability, Store};
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
    let feed_task = tokio::spawn(log_feed(store.clone(), shutdown.clone()));
    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    feed_task.await.context("feed task")?;
    Ok(())
}

/// Logs each newly stored delta at debug level (views and peers subscribe the same way).
async fn log_feed(store: Store, mut shutdown: Shutdown) {
    let mut feed = store.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            received = feed.recv() => match received {
                Ok(stored) => tracing::debug!(id = %stored.delta.id(), arrival = %stored.arrival, "stored"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(skipped = n, "feed lagged"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
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
