//! Group commit for publishes.
//!
//! A publish is acknowledged only once its item is durable. One fsync per
//! post would cap a busy server at the disk's sync rate, so publishes queue
//! here and one thread applies everything queued in a single transaction:
//! one fsync per batch, however many posts it holds.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::pubsub::NodeConfig;
use crate::store::{PublishError, PublishRequest, Store, StoreError};

/// Most publishes in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<NodeConfig, PublishError>>;

/// The handle publishers use. [`Committer::close`] stops the thread after
/// it has committed everything queued.
#[derive(Debug)]
pub(crate) struct Committer {
    tx: Mutex<Option<mpsc::Sender<(PublishRequest, Reply)>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Committer {
    pub(crate) fn start(store: Arc<dyn Store>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let (tx, rx) = mpsc::channel::<(PublishRequest, Reply)>();
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    let (reqs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let started = std::time::Instant::now();
                    let result = store.publish_batch(&reqs);
                    metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics.commit_batch.observe(reqs.len() as f64);
                    match result {
                        Ok(results) => {
                            for (reply, r) in replies.into_iter().zip(results) {
                                let _ = reply.send(r);
                            }
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            for reply in replies {
                                let _ = reply
                                    .send(Err(PublishError::Store(StoreError::Batch(e.clone()))));
                            }
                        }
                    }
                }
            })
            .expect("spawn the store commit thread");
        Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Refuses new publishes, waits for the queued ones to commit, and
    /// stops the thread (which releases its handle on the store).
    pub(crate) fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }

    /// Stores one publish; returns once it is durable.
    pub(crate) async fn publish(&self, req: PublishRequest) -> Result<NodeConfig, PublishError> {
        let (reply, rx) = oneshot::channel();
        let sent = match &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => tx.send((req, reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(PublishError::Store(StoreError::Closed));
        }
        rx.await
            .map_err(|_| PublishError::Store(StoreError::Closed))?
    }
}
