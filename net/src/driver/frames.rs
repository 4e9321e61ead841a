//! The frames on the driver's sockets: the tags of ROUTER/DEALER frames and the first
//! byte of PUB payloads.

use bytes::Bytes;
use zeromq::ZmqMessage;

/// Frame tags on ROUTER/DEALER links.
pub(super) const HELLO: &[u8] = b"h";
pub(super) const WELCOME: &[u8] = b"w";
pub(super) const PROOF: &[u8] = b"p";
pub(super) const MESSAGE: &[u8] = b"m";
/// The listener's publish key, sealed under the link's key (empty: the link is plain).
pub(super) const PUBLISH_KEY: &[u8] = b"k";
/// A dialler's keepalive on an idle link, answered with [`PONG`] by a listener that still
/// knows the connection (one that forgot it, after a ban, stays silent and the dialler
/// redials).
pub(super) const PING: &[u8] = b"i";
pub(super) const PONG: &[u8] = b"o";
/// First byte of a PUB payload: the message as is, or sealed under the publish key.
pub(super) const PLAIN: u8 = 0;
pub(super) const SEALED: u8 = 1;

/// A multipart ZeroMQ message of `parts` (`None` if there are none).
pub(super) fn frames(parts: Vec<Bytes>) -> Option<ZmqMessage> {
    ZmqMessage::try_from(parts).ok()
}
