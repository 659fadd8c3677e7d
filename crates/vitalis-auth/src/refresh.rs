//! Group commit for refresh-token writes. Grants queue their operation; one task applies
//! whatever is queued (up to `MAX_BATCH`) in a single transaction and answers each grant.
//! Under load many rotations share one durable commit; when idle a batch is one operation,
//! so latency stays that of a single write.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use vitalis_core::timefmt::now_millis;
use vitalis_store::{RefreshOp, RefreshOutcome, Store, StoreError};

const MAX_BATCH: usize = 256;
const QUEUE_DEPTH: usize = 4096;

type Reply = oneshot::Sender<Result<RefreshOutcome, Arc<StoreError>>>;

/// Handle on the writer task; cheap to clone.
#[derive(Clone)]
pub struct RefreshWriter {
    queue: mpsc::Sender<(RefreshOp, Reply)>,
}

impl RefreshWriter {
    /// Starts the writer on the current runtime. It stops when every handle is dropped.
    pub fn start(store: Store, grace_ms: i64) -> Self {
        let (queue, mut jobs) = mpsc::channel::<(RefreshOp, Reply)>(QUEUE_DEPTH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (ops, replies): (Vec<RefreshOp>, Vec<Reply>) = std::mem::take(&mut batch).into_iter().unzip();
                metrics::histogram!("vitalis_refresh_batch_size").record(ops.len() as f64);
                match store.apply_refresh_ops(&ops, now_millis(), grace_ms).await {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %err, batch = ops.len(), "refresh token batch failed");
                        let err = Arc::new(err);
                        for reply in replies {
                            let _ = reply.send(Err(err.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Queues one operation and waits for its outcome (after the batch committed).
    pub async fn apply(&self, op: RefreshOp) -> Result<RefreshOutcome, Arc<StoreError>> {
        let (reply, outcome) = oneshot::channel();
        let closed = || Arc::new(StoreError::Corrupt("the refresh token writer stopped".into()));
        self.queue.send((op, reply)).await.map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }
}
