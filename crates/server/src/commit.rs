//! Group commit for publishes.
//!
//! A publish is acknowledged only once its item is durable. One fsync per
//! post would cap a busy server at the disk's sync rate, so publishes queue
//! here and one thread applies everything queued in a single transaction:
//! one fsync per batch, however many posts it holds. A publisher that sent
//! several publishes at once hands them over as one job, so they share a
//! transaction even when the thread is idle when the first arrives.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::pubsub::NodeConfig;
use crate::store::{PublishError, PublishRequest, Store, StoreError};

/// Most publishes in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<NodeConfig, PublishError>>;
/// One publisher's publishes, in order, and where their results go.
type Job = (Vec<PublishRequest>, Vec<Reply>);

/// The handle publishers use. [`Committer::close`] stops the thread after
/// it has committed everything queued.
#[derive(Debug)]
pub(crate) struct Committer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Committer {
    pub(crate) fn start(store: Arc<dyn Store>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || {
                while let Ok((mut reqs, mut replies)) = rx.recv() {
                    // A job is never split: it may take a batch past
                    // MAX_BATCH by less than one job.
                    while reqs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok((r, p)) => {
                                reqs.extend(r);
                                replies.extend(p);
                            }
                            Err(_) => break,
                        }
                    }
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

    /// Stores several publishes in one transaction, in order; returns
    /// each one's result once they are durable.
    pub(crate) async fn publish_all(
        &self,
        reqs: Vec<PublishRequest>,
    ) -> Vec<Result<NodeConfig, PublishError>> {
        let n = reqs.len();
        let (replies, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| oneshot::channel()).unzip();
        let sent = match &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => tx.send((reqs, replies)).is_ok(),
            None => false,
        };
        let mut out = Vec::with_capacity(n);
        for rx in rxs {
            out.push(match sent {
                true => rx
                    .await
                    .unwrap_or(Err(PublishError::Store(StoreError::Closed))),
                false => Err(PublishError::Store(StoreError::Closed)),
            });
        }
        out
    }
}
