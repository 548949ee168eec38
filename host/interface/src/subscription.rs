//! Subscriptions to membership updates.
//!
//! A WIT function cannot take a closure, so the host owns subscribers: each
//! subscription is a channel whose sending half the host keeps and whose
//! receiving half the Mesh VPN holds. Because the host owns them,
//! subscriptions survive a hot swap of the component.

use std::sync::mpsc;
use std::time::Duration;

use crate::MembershipUpdate;

/// The host's half of a subscription.
#[derive(Clone, Debug)]
pub struct SubscriptionSender {
    /// The subscriber handle.
    pub handle: u64,
    sender: mpsc::Sender<MembershipUpdate>,
}

impl SubscriptionSender {
    /// Delivers one update; returns false when the subscriber is gone.
    pub fn send(&self, update: MembershipUpdate) -> bool {
        self.sender.send(update).is_ok()
    }
}

type OnDrop = Box<dyn FnOnce(u64) + Send>;

/// The Mesh VPN's half of a subscription. Updates arrive in view-version
/// order; dropping it unsubscribes.
pub struct Subscription {
    handle: u64,
    receiver: mpsc::Receiver<MembershipUpdate>,
    on_drop: Option<OnDrop>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("handle", &self.handle)
            .finish()
    }
}

impl Subscription {
    /// A connected pair for handle `handle`; `on_drop` runs when the
    /// subscription is dropped (to unsubscribe at the source).
    pub fn channel(
        handle: u64,
        on_drop: impl FnOnce(u64) + Send + 'static,
    ) -> (SubscriptionSender, Subscription) {
        let (sender, receiver) = mpsc::channel();
        (
            SubscriptionSender { handle, sender },
            Subscription {
                handle,
                receiver,
                on_drop: Some(Box::new(on_drop)),
            },
        )
    }

    /// The subscriber handle.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// The next update if one is waiting.
    pub fn try_recv(&self) -> Option<MembershipUpdate> {
        self.receiver.try_recv().ok()
    }

    /// The next update, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<MembershipUpdate> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// Every update waiting now, in order.
    pub fn drain(&self) -> Vec<MembershipUpdate> {
        self.receiver.try_iter().collect()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop(self.handle);
        }
    }
}
