//! `hypha node`: opens the data folder and runs until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::{Context, Result};
use std::sync::Arc;

use hypha_bindings::api::NodeApi;
use hypha_bindings::server;

/// Announces the materialized records each views update wrote, as written.
type RecordChanges = tokio::sync::broadcast::Sender<hypha_views::RecordChange>;
use hypha_delta_store::{load_or_create_node_key, Durability, Store};
use hypha_net::{Encryption, Event, NetConfig, Network};
use hypha_primitives::KeyPair;
use hypha_views::Materializer;
use tokio::sync::watch;

use crate::cli::{DurabilityArg, EncryptArg, NodeArgs};

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

/// A peer address the dialer can use, `tcp://HOST:PORT`: anything else would be retried
/// forever in silence, so it is refused at start-up.
fn check_peer_address(peer: &str) -> Result<()> {
    let port = peer
        .strip_prefix("tcp://")
        .and_then(|rest| rest.rsplit_once(':'))
        .filter(|(host, _)| !host.is_empty())
        .map(|(_, port)| port.parse::<u16>());
    match port {
        Some(Ok(_)) => Ok(()),
        _ => anyhow::bail!("--peer {peer:?} is not a peer's ROUTER address, tcp://HOST:PORT"),
    }
}

pub(crate) fn run(data: &Path, token: Option<String>, args: NodeArgs) -> Result<()> {
    for peer in &args.peers {
        check_peer_address(peer)?;
    }
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
    runtime.block_on(serve(store.clone(), key, token, args))?;
    store.flush().context("flushing the journal")?;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(store: Store, key: KeyPair, token: Option<String>, args: NodeArgs) -> Result<()> {
    let (stop, shutdown) = Shutdown::new();
    let host = key.host_id();
    let replicate = args
        .replicate
        .as_deref()
        .map(hypha_primitives::Filter::from_json_str)
        .transpose()
        .context("--replicate")?;
    if let Some(slice) = &replicate {
        tracing::info!(%slice, "partial replica: replicating only this slice");
    }
    let config = NetConfig {
        listen: args.listen,
        publish: args.publish,
        peers: args.peers,
        replicate,
        max_learnt_peers: args.learn_peers,
        encryption: match args.encrypt {
            EncryptArg::Auto => Encryption::Auto,
            EncryptArg::On => Encryption::On,
            EncryptArg::Off => Encryption::Off,
        },
        ..NetConfig::default()
    };
    let network = Arc::new(
        Network::start(store.clone(), key.clone(), config)
            .await
            .context("starting the network")?,
    );
    let changes: RecordChanges = tokio::sync::broadcast::channel(4096).0;
    let api = Arc::new(
        NodeApi::new(store.clone(), key, Some(network.clone()))?
            .with_token(token)
            .with_confirm_at(args.confirm_at)
            .with_changes(changes.clone()),
    );
    let listener = tokio::net::TcpListener::bind(&args.http)
        .await
        .with_context(|| format!("binding the HTTP API to {}", args.http))?;
    let http = listener.local_addr().context("reading the HTTP address")?;
    let endpoints = network.endpoints().clone();
    tracing::info!(%host, data = %store.config().path.display(), last_arrival = ?store.last_arrival()?.map(|a| a.get()), http = %format!("http://{http}"), router = %endpoints.router, publish = %endpoints.publish, "node running");

    let views = store.clone();
    let views_shutdown = shutdown.clone();
    let feed_task = tokio::spawn(async move {
        if let Err(e) = keep_views_current(views, changes, views_shutdown).await {
            tracing::error!(
                error = format!("{e:#}"),
                "views stopped; reads show the last materialized state"
            );
        }
    });
    let mut http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(server::serve(listener, api, async move {
        http_shutdown.requested().await;
    }));
    let mut events = network.events();
    let mut events_shutdown = shutdown.clone();
    let events_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = events_shutdown.requested() => return,
                event = events.recv() => match event {
                    Ok(Event::PeerJoined(peer)) => tracing::info!(%peer, "peer joined"),
                    Ok(Event::PeerLeft(peer)) => tracing::info!(%peer, "peer left"),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    if let Err(e) = http_task.await.context("HTTP task")? {
        tracing::warn!(error = %e, "HTTP server");
    }
    events_task.await.context("events task")?;
    feed_task.await.context("views task")?;
    if let Ok(network) = Arc::try_unwrap(network) {
        network.stop().await;
    }
    Ok(())
}

/// Keeps the materialized views current: follows the journal from the views' cursor
/// (`Store::follow`), so the deltas come from the live feed as they are stored and are
/// read from the journal only at start or after the views fell behind the feed.
async fn keep_views_current(
    store: Store,
    changes: RecordChanges,
    mut shutdown: Shutdown,
) -> Result<()> {
    let mut views = Materializer::open(store.clone()).context("opening the views")?;
    let mut follower = store.follow(views.cursor().context("reading the views' cursor")?);
    let mut started = false;
    loop {
        let batch = match follower.ready_async(VIEWS_BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "reading the journal for the views failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if batch.is_empty() {
            if !started {
                started = true;
                tracing::info!("views up to date");
                // Only what changes from here on is announced to `changed` subscribers.
                views.track_changes();
            }
            tokio::select! {
                _ = shutdown.requested() => return Ok(()),
                more = follower.changed() => if !more { return Ok(()) },
            }
            continue;
        }
        if let Err(e) = tokio::task::block_in_place(|| views.apply(&batch)) {
            tracing::error!(error = %e, "updating the views failed; they resume from their cursor");
            // Follow again from what the views hold, so the failed deltas come back.
            follower = store.follow(views.cursor().context("reading the views' cursor")?);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        for change in views.take_changes() {
            // No subscriber is not an error.
            let _ = changes.send(change);
        }
    }
}

/// The most deltas the views apply in one write.
const VIEWS_BATCH: usize = 4_096;

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
