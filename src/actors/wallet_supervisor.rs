//! `WalletSupervisor`: starts the node's wallet shards (`wallet::WalletShard`, linked) and
//! restarts a failed one (its wallets reload from the database on their next op), and asks
//! them every half idle timeout to drop their idle wallets.
//!
//! `Wallets` is the handle the rest of the crate uses: it sends an op to the shard that hosts
//! the account and waits with a timeout, retrying when the wallet failed before answering
//! (safe: every op carries an op key and is applied at most once).

use super::wallet::{
    Chain, Chained, KIND as WALLET, LiveWallets, OpOutcome, ShardArgs, WalletLimits, WalletMsg,
    WalletOp, WalletShard,
};
use crate::domain::AccountId;
use crate::metrics::Metrics;
use crate::store::Store;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const KIND: &str = "wallet_supervisor";

/// Times a wallet call is tried while the wallet fails before answering.
const APPLY_ATTEMPTS_MAX: u32 = 20;
const APPLY_RETRY_DELAY_MS: u64 = 5;

/// The running shard of each index: written only by the supervisor (at start and when it
/// restarts a shard), read by `Wallets` without a trip through the supervisor's mailbox.
#[derive(Clone, Default)]
pub struct WalletShards(Arc<RwLock<Vec<ActorRef<WalletMsg>>>>);

impl WalletShards {
    /// The shard hosting `account` (`None` only before the supervisor has started).
    pub(super) fn of(&self, account: AccountId) -> Option<ActorRef<WalletMsg>> {
        let shards = self.0.read().ok()?;
        if shards.is_empty() {
            return None;
        }
        let index = (account.as_uuid().as_u128() % shards.len() as u128) as usize;
        shards.get(index).cloned()
    }
}

pub struct SupervisorArgs {
    pub shards: WalletShards,
    pub store: Store,
    pub ledger: super::ledger_writer::Ledger,
    pub metrics: Arc<Metrics>,
    pub limits: WalletLimits,
}

pub struct SupervisorState {
    store: Store,
    ledger: super::ledger_writer::Ledger,
    metrics: Arc<Metrics>,
    limits: WalletLimits,
    shards: WalletShards,
    live: LiveWallets,
    index_by_actor: HashMap<ActorId, usize>,
}

pub enum SupervisorMsg {
    /// Asks every shard to drop its idle wallets (one timer here instead of one per wallet).
    SweepIdle,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("account not found")]
    AccountNotFound,
    #[error("wallet unavailable: {0}")]
    Unavailable(String),
    #[error("wallet call timed out")]
    Timeout,
}

pub struct WalletSupervisor;

impl Actor for WalletSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        args.metrics.actors_live.with_label_values(&[KIND]).inc();
        let count = args.limits.shards.max(1);
        let mut state = SupervisorState {
            store: args.store,
            ledger: args.ledger,
            metrics: args.metrics,
            limits: args.limits,
            shards: args.shards,
            live: (0..count).map(|_| AtomicUsize::new(0)).collect(),
            index_by_actor: HashMap::new(),
        };
        let mut shards = Vec::with_capacity(count);
        for index in 0..count {
            shards.push(spawn_shard(&myself, &mut state, index).await?);
        }
        if let Ok(mut registry) = state.shards.0.write() {
            *registry = shards;
        }
        let sweep_period = (state.limits.idle_timeout / 2).max(Duration::from_millis(10));
        myself.send_interval(sweep_period, || SupervisorMsg::SweepIdle);
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        match message {
            SupervisorMsg::SweepIdle => {
                let shards = state
                    .shards
                    .0
                    .read()
                    .map(|shards| shards.clone())
                    .unwrap_or_default();
                for shard in shards {
                    let _ = shard.send_message(WalletMsg::IdleCheck);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        state.metrics.actors_live.with_label_values(&[KIND]).dec();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            let Some(index) = state.index_by_actor.remove(&cell.get_id()) else {
                return Ok(());
            };
            // The shard died with its wallets (a panic: wallet failures do not kill it).
            let lost = state.live[index].swap(0, Ordering::Relaxed);
            state
                .metrics
                .actors_live
                .with_label_values(&[WALLET])
                .sub(lost as i64);
            tracing::warn!(shard = index, wallets = lost, error = %error, "wallet shard failed; restarting");
            state
                .metrics
                .record_restart(WALLET, format!("wallet shard {index}: {error}"));
            match spawn_shard(&myself, state, index).await {
                Ok(shard) => {
                    if let Ok(mut shards) = state.shards.0.write()
                        && let Some(slot) = shards.get_mut(index)
                    {
                        *slot = shard;
                    }
                }
                Err(error) => {
                    tracing::error!(shard = index, %error, "wallet shard restart failed");
                }
            }
        }
        // Never stop because a child failed: that is exactly what supervision is for.
        Ok(())
    }
}

async fn spawn_shard(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    index: usize,
) -> Result<ActorRef<WalletMsg>, ActorProcessingErr> {
    let args = ShardArgs {
        index,
        store: state.store.clone(),
        ledger: state.ledger.clone(),
        metrics: Arc::clone(&state.metrics),
        limits: state.limits,
        live: Arc::clone(&state.live),
        shards: state.shards.clone(),
    };
    let (shard, _) = Actor::spawn_linked(None, WalletShard, args, myself.get_cell()).await?;
    state.index_by_actor.insert(shard.get_id(), index);
    Ok(shard)
}

/// The handle through which HTTP handlers and sagas reach wallets: an op goes straight to the
/// shard hosting the account, found in the supervisor's registry.
#[derive(Clone)]
pub struct Wallets {
    supervisor: ActorRef<SupervisorMsg>,
    shards: WalletShards,
    call_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Wallets {
    pub fn new(
        supervisor: ActorRef<SupervisorMsg>,
        shards: WalletShards,
        call_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Wallets {
        Wallets {
            supervisor,
            shards,
            call_timeout,
            metrics,
        }
    }

    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        &self.supervisor
    }

    /// Sends `op` to the account's wallet and waits for its outcome.
    pub async fn apply(&self, account: AccountId, op: WalletOp) -> Result<OpOutcome, WalletError> {
        self.apply_chained(account, op, None).await
    }

    /// `apply`; once the op is applied and handed to the ledger writer, its wallet sends `then`
    /// on (with the first attempt only: a retry goes without it, and `then`'s reply is dropped).
    pub async fn apply_chained(
        &self,
        account: AccountId,
        op: WalletOp,
        then: Option<Chained>,
    ) -> Result<OpOutcome, WalletError> {
        let then = std::sync::Mutex::new(then.map(Box::new));
        self.call(account, |attempt, reply| {
            // After a failed attempt the op may have been committed: look before applying.
            let op = Box::new(WalletOp {
                replay: op.replay || attempt > 0,
                ..op.clone()
            });
            let chain = match then.lock().ok().and_then(|mut then| then.take()) {
                Some(then) => Chain::Then(then),
                None => Chain::None,
            };
            WalletMsg::Apply(
                account,
                op,
                reply,
                self.metrics.mailbox_ticket(WALLET),
                chain,
            )
        })
        .await
    }

    /// How long one wallet call waits for its answer.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The account's balance as its wallet holds it, without a database read once the wallet
    /// is live (it is loaded if it is not). Advisory: the wallet still decides each op.
    pub async fn balance(&self, account: AccountId) -> Result<crate::domain::Balance, WalletError> {
        self.call(account, |_, reply| WalletMsg::Balance(account, reply))
            .await
    }

    /// Calls the shard hosting `account` with the message `message(attempt, reply)` builds,
    /// again (after a growing pause) while the wallet failed or its shard died before answering.
    async fn call<T: Send + 'static>(
        &self,
        account: AccountId,
        message: impl Fn(u32, RpcReplyPort<Result<T, WalletError>>) -> WalletMsg,
    ) -> Result<T, WalletError> {
        let mut last_error = String::new();
        for attempt in 0..APPLY_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(
                    APPLY_RETRY_DELAY_MS * u64::from(attempt),
                ))
                .await;
            }
            let shard = self.shard(account)?;
            match shard
                .call(|reply| message(attempt, reply), Some(self.call_timeout))
                .await
            {
                Ok(CallResult::Success(answer)) => return answer,
                Ok(CallResult::Timeout) => return Err(WalletError::Timeout),
                // The wallet failed (it reloads) or its shard died (it is being restarted).
                Ok(CallResult::SenderError) => last_error = "wallet failed before answering".into(),
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(WalletError::Unavailable(last_error))
    }

    /// Wallets loaded in memory on this node.
    pub async fn live_count(&self) -> Result<usize, WalletError> {
        let live = self.metrics.actors_live.with_label_values(&[WALLET]).get();
        Ok(usize::try_from(live).unwrap_or(0))
    }

    fn shard(&self, account: AccountId) -> Result<ActorRef<WalletMsg>, WalletError> {
        self.shards
            .of(account)
            .ok_or_else(|| WalletError::Unavailable("wallet supervisor not started".into()))
    }
}
