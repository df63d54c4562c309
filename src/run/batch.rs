//! `parallel <batch>`: the model requests of a block's steps, gathered and sent as provider
//! batches ([`super::provider::batch`]), polled, and handed back to their steps.
//!
//! **Which requests go together.** Each batched block has one [`Batcher`]. While a step of
//! the block runs (or a region inside it, until its bodies have started their first steps),
//! it holds the batcher ([`Hold`]). A step's first attempt of each model call is queued
//! ([`Batcher::submit`]) instead of being sent. The queue is submitted when
//!
//! - it holds `max N` requests (the block's `max`), or
//! - every holder is waiting for an answer — queued here, or waiting for a batch a resumed
//!   run polls — so that no further request of the block can be queued before some answer
//!   comes: checked again after a short pause ([`GATHER_PAUSE`]), to let steps that were
//!   released at the same time join.
//!
//! A submission is one batch per provider — and per model for the OpenAI Batch API, whose
//! batches hold one model each ([`BatchApi::mixes_models`]).
//!
//! **Polling.** The first poll comes after the client's `batch_poll` (the provider's field,
//! 30 s by default), each later one after twice the last wait, up to 32 times the first (at
//! most [`MAX_POLL`]), each wait jittered by ±25 %. A poll that fails in a way worth retrying
//! is repeated at the next wait, up to [`POLL_FAILURES`] in a row.
//!
//! **Outcomes.** Each request's outcome goes to its step by `custom_id`. A request the batch
//! did not answer (errored, expired, cancelled, or the whole batch failed) fails that attempt
//! with [`ProviderError::Batch`]; so does a batch that cannot be created, polled or read (a
//! server without a batch API, a journalled batch the provider no longer has), worth retrying.
//! The step's `retry`, `fallback` and `timeout` rules then apply as for any failed attempt,
//! and its retries are ordinary requests at the ordinary price (one request is not worth
//! another day's wait).
//!
//! **Resume.** A submitted batch is journalled ([`super::journal::BatchRecord`]) before it is
//! polled. A resumed run whose step sends the same request again (same step, same request
//! identity) polls that batch for the answer instead of submitting it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::journal::{BatchItemRecord, BatchRecord, BatchRef, Journal};
use super::prepare::ModelClient;
use super::provider::batch::{BatchApi, BatchItem, BatchPoll, results_bytes};
use super::provider::{Completion, CompletionRequest, ProviderError};
use crate::plan::Plan;

/// The default first wait before a batch is polled: 30 s.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);

/// The longest wait between two polls: 10 minutes.
pub const MAX_POLL: Duration = Duration::from_secs(600);

/// How many polls in a row may fail (in a way worth retrying) before the batch's requests
/// fail.
pub const POLL_FAILURES: u32 = 10;

/// The pause before a queue whose holders all wait is submitted, so that steps released at the
/// same moment join it.
pub const GATHER_PAUSE: Duration = Duration::from_millis(20);

/// The batchers of a run, one per `parallel <batch>` block of its plan.
#[derive(Default)]
pub(super) struct Batches {
    blocks: Vec<Arc<Batcher>>,
}

impl Batches {
    /// One batcher per batched block of `plan`; with a journal, submitted batches are
    /// journalled and a resumed run's are polled.
    pub(super) fn new(plan: &Plan, journal: Option<&Journal>) -> Batches {
        let resumed = Arc::new(Resumed::default());
        Batches {
            blocks: plan
                .batches
                .iter()
                .map(|b| {
                    Arc::new(Batcher {
                        block: b.id,
                        max: b.max.map(|m| m.max(1) as usize),
                        journal: journal.cloned(),
                        resumed: resumed.clone(),
                        state: Mutex::new(State::default()),
                    })
                })
                .collect(),
        }
    }

    /// The batcher of block `id` ([`crate::plan::PlanNode::batch`]).
    pub(super) fn get(&self, id: usize) -> Option<&Arc<Batcher>> {
        self.blocks.get(id)
    }
}

/// The queue of one batched block.
pub(super) struct Batcher {
    /// Its index in the plan's batches (in `custom_id`s).
    block: usize,
    /// `max N`: the most requests of one submission.
    max: Option<usize>,
    journal: Option<Journal>,
    /// The batches of the run being resumed, polled once each.
    resumed: Arc<Resumed>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Steps (and starting regions) of the block that may still queue a request.
    holds: usize,
    /// Holders waiting for a journalled batch (a resumed run's).
    attached: usize,
    /// Requests waiting to be submitted.
    queue: Vec<Queued>,
    /// A check of the queue is pending (after [`GATHER_PAUSE`]).
    checking: bool,
    /// Requests queued so far: each one's number, in its `custom_id`.
    seq: u64,
}

/// A request waiting to be submitted.
struct Queued {
    seq: u64,
    step: String,
    client: ModelClient,
    req: CompletionRequest,
    reply: oneshot::Sender<Result<Completion, ProviderError>>,
}

/// The batches a resumed run finds in its journal: each is polled until it ends and its
/// results fetched, once, however many steps wait for it.
#[derive(Default)]
struct Resumed {
    batches: Mutex<HashMap<String, Arc<EndedCell>>>,
}

/// A journalled batch, once it has ended (or could not be read).
type EndedCell = tokio::sync::OnceCell<Result<Ended, ProviderError>>;

/// An ended batch: its last poll and the lines of its results, by `custom_id`.
type Ended = (BatchPoll, Arc<HashMap<String, serde_json::Value>>);

/// A holder of a batcher: while it lives, the batcher's queue is not submitted for want of
/// further requests (see the module doc). Dropping it may submit the queue.
pub(super) struct Hold {
    batcher: Arc<Batcher>,
}

impl Hold {
    /// Another hold of the same batcher (for a region's body).
    pub(super) fn another(&self) -> Hold {
        self.batcher.hold()
    }
}

/// A holder stepping away while it waits for something other than an answer (a permit of
/// `--max-concurrency` or of a block's `max N`): its batcher does not wait for it meanwhile,
/// so that requests queued by the steps holding those permits are submitted.
pub(super) struct Away {
    batcher: Arc<Batcher>,
}

impl Drop for Away {
    fn drop(&mut self) {
        self.batcher.lock().holds += 1;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let batcher = self.batcher.clone();
        let mut state = batcher.lock();
        state.holds = state.holds.saturating_sub(1);
        batcher.check(&mut state);
    }
}

/// Takes a waiting request (or a waiting step's count) off when the step stops waiting: its
/// answer came, or its attempt was dropped (a `timeout`, the run stopped).
struct Waiting<'b> {
    batcher: &'b Arc<Batcher>,
    seq: Option<u64>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.batcher.lock();
        match self.seq {
            Some(seq) => state.queue.retain(|q| q.seq != seq),
            None => state.attached = state.attached.saturating_sub(1),
        }
    }
}

impl Batcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One holder steps away until the guard is dropped ([`Away`]).
    pub(super) fn away(self: &Arc<Self>) -> Away {
        let mut state = self.lock();
        state.holds = state.holds.saturating_sub(1);
        self.check(&mut state);
        Away {
            batcher: self.clone(),
        }
    }

    /// A hold of this batcher (see the module doc).
    pub(super) fn hold(self: &Arc<Self>) -> Hold {
        self.lock().holds += 1;
        Hold {
            batcher: self.clone(),
        }
    }

    /// Sends `req` of step `step` to `client`'s provider in a batch, and waits for its
    /// outcome. With a journal of a resumed run that submitted this request (same step and
    /// request), that batch is polled instead. The caller holds this batcher while it waits.
    ///
    /// # Errors
    /// The request's failure in the batch, or the batch's ([`ProviderError::Batch`], or the
    /// error of a call that created or polled it).
    pub(super) async fn submit(
        self: &Arc<Self>,
        step: &str,
        client: &ModelClient,
        api: BatchApi<'_>,
        req: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let hash = request_hash(req);
        if let Some((batch, custom_id)) = self
            .journal
            .as_ref()
            .and_then(|j| j.batched(step, &hash))
            .filter(|(b, _)| b.provider == client.provider_name && b.api == api.kind())
        {
            self.lock().attached += 1;
            let _waiting = Waiting {
                batcher: self,
                seq: None,
            };
            {
                // Attaching may complete "every holder waits".
                let mut state = self.lock();
                self.check(&mut state);
            }
            return self.resume(&batch, &custom_id, client, api, req).await;
        }
        let (tx, rx) = oneshot::channel();
        let seq = {
            let mut state = self.lock();
            state.seq += 1;
            let seq = state.seq;
            state.queue.push(Queued {
                seq,
                step: step.to_string(),
                client: client.clone(),
                req: req.clone(),
                reply: tx,
            });
            self.check(&mut state);
            seq
        };
        let _waiting = Waiting {
            batcher: self,
            seq: Some(seq),
        };
        rx.await.unwrap_or_else(|_| {
            Err(ProviderError::Batch {
                provider: api.kind(),
                message: "the batch was dropped before it ended".into(),
                retryable: true,
            })
        })
    }

    /// Submits the queue when it is full, or (after [`GATHER_PAUSE`], if still so) when every
    /// holder waits.
    fn check(self: &Arc<Self>, state: &mut State) {
        if state.queue.is_empty() {
            return;
        }
        if self.max.is_some_and(|m| state.queue.len() >= m) {
            self.submit_queue(state);
            return;
        }
        if state.queue.len() + state.attached >= state.holds && !state.checking {
            state.checking = true;
            let batcher = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(GATHER_PAUSE).await;
                let mut state = batcher.lock();
                state.checking = false;
                if !state.queue.is_empty() && state.queue.len() + state.attached >= state.holds {
                    batcher.submit_queue(&mut state);
                }
            });
        }
    }

    /// Takes the queue (at most `max N` of it) and submits it: one batch per provider (and
    /// per model where a batch holds one model), each on a task of its own.
    fn submit_queue(self: &Arc<Self>, state: &mut State) {
        let take = self.max.unwrap_or(usize::MAX).min(state.queue.len());
        let mut groups: Vec<Vec<Queued>> = Vec::new();
        for q in state.queue.drain(..take) {
            let mixes = q
                .client
                .provider
                .batch_api()
                .is_some_and(|a| a.mixes_models());
            let same = |g: &Vec<Queued>| {
                g[0].client.provider_name == q.client.provider_name
                    && (mixes || g[0].req.model == q.req.model)
            };
            match groups.iter_mut().find(|g| same(g)) {
                Some(g) => g.push(q),
                None => groups.push(vec![q]),
            }
        }
        for group in groups {
            let batcher = self.clone();
            tokio::spawn(async move { batcher.run_batch(group).await });
        }
        // The rest of a full queue may fill the next one.
        self.check(state);
    }

    /// Creates one batch of `items` (same provider), journals it, polls it until it ends and
    /// hands each request's outcome to its step.
    async fn run_batch(self: Arc<Self>, items: Vec<Queued>) {
        let client = items[0].client.clone();
        let Some(api) = client.provider.batch_api() else {
            return;
        };
        let ids: Vec<String> = items
            .iter()
            .map(|q| format!("orch-b{}-r{}", self.block, q.seq))
            .collect();
        let batch_items: Vec<BatchItem<'_>> = items
            .iter()
            .zip(&ids)
            .map(|(q, id)| BatchItem {
                custom_id: id,
                req: &q.req,
            })
            .collect();
        let outcome = async {
            let batch_id = api.create(&batch_items).await?;
            if let Some(journal) = &self.journal {
                let record = BatchRecord {
                    provider: client.provider_name.clone(),
                    api: api.kind().to_string(),
                    batch_id: batch_id.clone(),
                    items: items
                        .iter()
                        .zip(&ids)
                        .map(|(q, id)| BatchItemRecord {
                            custom_id: id.clone(),
                            step: q.step.clone(),
                            request: request_hash(&q.req),
                        })
                        .collect(),
                    at_ms: super::journal::now_ms(),
                };
                journal
                    .batch(record)
                    .await
                    .map_err(|e| ProviderError::NotRecorded(e.to_string()))?;
            }
            let poll = poll_until_ended(api, &batch_id, client.batch_poll).await?;
            let results = api.results(&poll, &batch_items).await?;
            Ok::<_, ProviderError>((poll, results))
        }
        .await;
        match outcome {
            Ok((poll, mut results)) => {
                for (q, id) in items.into_iter().zip(&ids) {
                    let outcome = results
                        .remove(id)
                        .unwrap_or_else(|| Err(unanswered(api.kind(), &poll)));
                    let outcome = note(&client, &q.req, outcome);
                    let _ = q.reply.send(outcome);
                }
            }
            Err(e) => {
                let e = batch_failed(api.kind(), "batch", e);
                for q in items {
                    let _ = q.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// The outcome of request `custom_id` of journalled batch `batch`: polled until it ends
    /// (once for every step that waits for it), then read.
    async fn resume(
        &self,
        batch: &BatchRef,
        custom_id: &str,
        client: &ModelClient,
        api: BatchApi<'_>,
        req: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let cell = {
            let mut batches = self
                .resumed
                .batches
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            batches.entry(batch.batch_id.clone()).or_default().clone()
        };
        let item = BatchItem { custom_id, req };
        // The results of the whole batch, each answer at most as long as this request's may
        // be (the requests of one block mostly share their agent's bounds).
        let limit = results_bytes(&vec![item; batch.items.max(1)]);
        let (poll, lines) = cell
            .get_or_init(|| async {
                let poll = poll_until_ended(api, &batch.batch_id, client.batch_poll).await?;
                let lines = api.raw_results(&poll, limit).await?;
                Ok((poll, Arc::new(lines)))
            })
            .await
            .clone()
            .map_err(|e| {
                batch_failed(
                    api.kind(),
                    &format!("batch `{}` of the earlier run", batch.batch_id),
                    e,
                )
            })?;
        let outcome = api.read(item, lines.get(custom_id), &poll);
        note(client, req, outcome)
    }
}

/// When recording, writes `outcome` of `req` to the cassette.
fn note(
    client: &ModelClient,
    req: &CompletionRequest,
    outcome: Result<Completion, ProviderError>,
) -> Result<Completion, ProviderError> {
    match client.provider.note_batch_outcome(req, &outcome) {
        Ok(()) => outcome,
        Err(e) => Err(e),
    }
}

/// The failure of each request of a batch that could not be created, polled or read (`what`:
/// which batch): worth sending again as an ordinary request (a provider without a batch API
/// answers those), unless the journal or the cassette could not be written.
fn batch_failed(provider: &'static str, what: &str, e: ProviderError) -> ProviderError {
    match e {
        ProviderError::NotRecorded(_) | ProviderError::Batch { .. } => e,
        other => ProviderError::Batch {
            provider,
            message: format!("the {what} failed: {other}"),
            retryable: true,
        },
    }
}

/// The failure of a request an ended batch has no outcome for.
fn unanswered(provider: &'static str, poll: &BatchPoll) -> ProviderError {
    ProviderError::Batch {
        provider,
        message: format!(
            "the batch ended `{}` without an answer to it{}",
            poll.status,
            poll.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        retryable: true,
    }
}

/// Polls batch `id` until it ends, waiting `first`, then twice as long each time up to 32 times
/// `first` (at most [`MAX_POLL`]), each wait jittered by ±25 %.
///
/// # Errors
/// A poll's error that is not worth retrying, or the last of [`POLL_FAILURES`] in a row.
async fn poll_until_ended(
    api: BatchApi<'_>,
    id: &str,
    first: Duration,
) -> Result<BatchPoll, ProviderError> {
    let cap = first.saturating_mul(32).min(MAX_POLL).max(first);
    let mut wait = first;
    let mut failures = 0;
    loop {
        tokio::time::sleep(jittered(wait, fastrand::f64())).await;
        match api.poll(id).await {
            Ok(poll) if poll.ended => return Ok(poll),
            Ok(_) => failures = 0,
            Err(e) if e.is_retryable() && failures + 1 < POLL_FAILURES => failures += 1,
            Err(e) => return Err(e),
        }
        wait = wait.saturating_mul(2).min(cap);
    }
}

/// `wait` scaled by a factor between 0.75 and 1.25, from `unit` in `[0, 1)`.
fn jittered(wait: Duration, unit: f64) -> Duration {
    wait.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
}

/// SHA-256 (hex) of a request's identity: what a cassette matches it by
/// ([`super::cassette::identity`]).
pub(super) fn request_hash(req: &CompletionRequest) -> String {
    let identity = super::cassette::identity(req);
    super::cache_key::sha256_hex(identity.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        let w = Duration::from_secs(40);
        assert_eq!(jittered(w, 0.0), Duration::from_secs(30));
        assert_eq!(jittered(w, 0.5), Duration::from_secs(40));
        assert!(jittered(w, 0.999_999) <= Duration::from_secs(50));
    }

    #[test]
    fn requests_hash_by_identity() {
        let a = CompletionRequest {
            model: "m".into(),
            prompt: "p".into(),
            max_tokens: 10,
            ..Default::default()
        };
        let mut b = a.clone();
        assert_eq!(request_hash(&a), request_hash(&b));
        b.prompt = "q".into();
        assert_ne!(request_hash(&a), request_hash(&b));
    }
}
