//! The web chat widget channel.
//!
//! Visitors reach it through the widget's HTTP and WebSocket endpoints, which
//! live in the web crate because they share its router, auth and rate limits.
//! What is left for the channel is what every channel has: turning a widget
//! frame into an [`Inbound`] and "delivering" outbound messages, which for the
//! web means nothing to do: the widget's WebSocket follows the event stream,
//! on whichever node the visitor is connected to.
//!
//! Architecture invariant: this crate depends on `baton-channel` and the
//! model only; it holds no state and does no IO.

pub mod normalize;

use async_trait::async_trait;
use baton_channel::{Channel, Delivered, Inbound, Outbound, RawInbound, Result};
use baton_model::ChannelKind;

/// `[channels.web]` has no settings yet; the widget is always on.
#[derive(Clone, Debug, Default)]
pub struct WebChannel;

#[async_trait]
impl Channel for WebChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Web
    }

    fn normalize(&self, raw: &RawInbound) -> Result<Vec<Inbound>> {
        normalize::widget_frame(raw).map(|i| i.into_iter().collect())
    }

    async fn deliver(&self, _out: Outbound<'_>) -> Result<Delivered> {
        Ok(Delivered::ViaEventStream)
    }

    fn reads_event_stream(&self) -> bool {
        true
    }
}
