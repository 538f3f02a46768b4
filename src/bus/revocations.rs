//! Credential revocations across nodes (with `REDIS_URL`). Each node caches sessions and API
//! keys (`store::cache`); revoking one evicts it on this node at once and publishes its id on
//! `{stream}:revocations`, and every node's subscriber evicts it too. A subscriber that
//! (re)connects forgets every cached credential, since it may have missed announcements while
//! away; a cached credential is re-checked after `CREDENTIAL_CACHE_AGE_MAX` in any case.

use crate::store::Store;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Revocations waiting to be published at most; past it they are dropped (the cache age bound
/// still holds) rather than growing memory while Redis is away.
const ANNOUNCEMENTS_QUEUED_MAX: usize = 10_000;
const SUBSCRIBE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The running announcer and subscriber; dropping it stops neither (call `stop`).
pub struct Revocations {
    tasks: Vec<JoinHandle<()>>,
    subscriber: SubscriberClient,
    listening: Arc<AtomicBool>,
}

impl Revocations {
    /// Connects a subscriber to Redis (never blocking start-up), announces this node's
    /// revocations through `publisher`, and evicts what other nodes announce.
    pub fn start(url: &str, publisher: Client, stream: &str, store: Store) -> anyhow::Result<Self> {
        let channel = format!("{stream}:revocations");
        let subscriber = super::redis::builder(url)?.build_subscriber_client()?;
        subscriber.connect();
        let listening = Arc::new(AtomicBool::new(false));
        let (announce, mut announcements) =
            tokio::sync::mpsc::channel::<String>(ANNOUNCEMENTS_QUEUED_MAX);
        store.caches().announce_revocations_to(announce);

        let mut tasks = Vec::new();
        let publish_channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(credential) = announcements.recv().await {
                let published: Result<i64, Error> =
                    publisher.publish(&publish_channel, credential).await;
                if let Err(error) = published {
                    tracing::warn!(%error, "could not announce a revocation; other nodes re-check within the cache age bound");
                }
            }
        }));
        let on_message = store.clone();
        tasks.push(spawn_listener(subscriber.on_message(move |message| {
            if let Some(credential) = message.value.as_str() {
                on_message.caches().evict_credential_here(&credential);
            }
            async { Ok(()) }
        })));
        let on_reconnect = store.clone();
        tasks.push(spawn_listener(subscriber.on_reconnect(move |_| {
            on_reconnect.caches().forget_credentials();
            async { Ok(()) }
        })));
        tasks.push(subscriber.manage_subscriptions());
        let (subscribing, subscribed) = (subscriber.clone(), Arc::clone(&listening));
        tasks.push(tokio::spawn(async move {
            loop {
                match subscribing.subscribe(channel.as_str()).await {
                    Ok(()) => {
                        subscribed.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "subscribing to revocations; retrying");
                        tokio::time::sleep(SUBSCRIBE_RETRY_DELAY).await;
                    }
                }
            }
        }));
        Ok(Revocations {
            tasks,
            subscriber,
            listening,
        })
    }

    /// Whether this node has subscribed (announcements from now on reach it).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
        let subscriber = self.subscriber.clone();
        tokio::spawn(async move {
            let _ = subscriber.quit().await;
        });
    }
}

/// fred's listener tasks return a result; ours never fail.
fn spawn_listener(task: JoinHandle<Result<(), Error>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = task.await;
    })
}
