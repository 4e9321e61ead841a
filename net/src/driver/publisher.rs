//! The PUB task: publishes the driver's messages under their topics, sealed under the
//! publish key when the stream is.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use hypha_primitives::HostId;
use tokio::sync::mpsc;
use zeromq::{PubSocket, SocketSend};

use super::{frames, Shared, PLAIN, SEALED};

/// Publishes messages: `[topic, sender, PLAIN · message]`, or `[topic, sender, SEALED ·
/// sealed message]` (bound to the topic and sender) when a publish key is given.
pub(super) async fn run_publisher(
    mut socket: PubSocket,
    me: HostId,
    mut queue: mpsc::Receiver<(Vec<u8>, Vec<u8>)>,
    shared: Arc<Shared>,
) {
    let sender = Bytes::copy_from_slice(me.as_bytes());
    while let Some((topic, bytes)) = queue.recv().await {
        let payload = if shared.seal_publish.load(Ordering::Relaxed) {
            let aad = [topic.as_slice(), me.as_bytes()].concat();
            let key = shared.current_publish_key();
            [&[SEALED][..], &key.seal(&aad, &bytes)].concat()
        } else {
            [&[PLAIN][..], &bytes].concat()
        };
        shared.counters.published(payload.len());
        let Some(message) = frames(vec![topic.into(), sender.clone(), payload.into()]) else {
            continue;
        };
        if let Err(e) = socket.send(message).await {
            tracing::warn!(error = %e, "publishing");
        }
    }
}
