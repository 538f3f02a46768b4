//! `WalletSupervisor`: owns the registry `AccountId -> ActorRef<WalletMsg>`, spawns wallet
//! actors lazily and linked, restarts a failed one (its state reloads from the database), and
//! forgets the ones that stopped because they were idle.
//!
//! `Wallets` is the handle the rest of the crate uses: it finds (or starts) the wallet's actor
//! and calls it with a timeout, retrying when the actor died before answering (safe: every op
//! carries an op key and is applied at most once).

use super::wallet::{
    AccountMissing, OpOutcome, WalletActor, WalletArgs, WalletLimits, WalletMsg, WalletOp,
};
use crate::domain::AccountId;
use crate::metrics::Metrics;
use crate::store::Store;
use ractor::rpc::CallResult;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub const KIND: &str = "wallet_supervisor";

/// Times a call is retried after the wallet actor died before answering.
const APPLY_ATTEMPTS_MAX: u32 = 20;
const APPLY_RETRY_DELAY_MS: u64 = 5;

/// The live wallet actors by account: written only by the supervisor (on spawn and when an
/// actor stops), read by `Wallets` without a trip through the supervisor's mailbox.
pub type WalletRegistry = Arc<std::sync::Mutex<HashMap<AccountId, ActorRef<WalletMsg>>>>;

pub struct SupervisorArgs {
    pub registry: WalletRegistry,
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
    wallets: WalletRegistry,
    accounts_by_actor: HashMap<ActorId, AccountId>,
}

pub enum SupervisorMsg {
    /// The running actor of this account, started if needed.
    Lookup(
        AccountId,
        RpcReplyPort<Result<ActorRef<WalletMsg>, WalletError>>,
    ),
    /// Number of live wallet actors.
    LiveCount(RpcReplyPort<usize>),
    /// Asks every live wallet whether it has been idle long enough to stop (one timer here
    /// instead of one per wallet actor).
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
        let sweep_period = (args.limits.idle_timeout / 2).max(Duration::from_millis(10));
        myself.send_interval(sweep_period, || SupervisorMsg::SweepIdle);
        Ok(SupervisorState {
            store: args.store,
            ledger: args.ledger,
            metrics: args.metrics,
            limits: args.limits,
            wallets: args.registry,
            accounts_by_actor: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let metrics = Arc::clone(&state.metrics);
        let _timer = metrics.actor_message(KIND);
        match message {
            SupervisorMsg::Lookup(account, reply) => {
                let known = registered(&state.wallets, account);
                let result = match known {
                    Some(wallet) => Ok(wallet),
                    None => spawn_wallet(&myself, state, account).await,
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::SweepIdle => {
                let wallets: Vec<ActorRef<WalletMsg>> = state
                    .wallets
                    .lock()
                    .map(|wallets| wallets.values().cloned().collect())
                    .unwrap_or_default();
                for wallet in wallets {
                    let _ = wallet.send_message(WalletMsg::IdleCheck);
                }
            }
            SupervisorMsg::LiveCount(reply) => {
                let live = state.wallets.lock().map_or(0, |wallets| wallets.len());
                let _ = reply.send(live);
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
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(account) = forget(state, cell.get_id()) else {
                    return Ok(());
                };
                tracing::warn!(account_id = %account, error = %error, "wallet actor failed; restarting");
                state
                    .metrics
                    .actor_restarts_total
                    .with_label_values(&[super::wallet::KIND])
                    .inc();
                state
                    .metrics
                    .record_actor_error(super::wallet::KIND, format!("account {account}: {error}"));
                // Restart now so the reload happens before the next op arrives. If the database
                // is down the restart fails and the next lookup tries again.
                if let Err(error) = spawn_wallet(&myself, state, account).await {
                    tracing::warn!(account_id = %account, %error, "wallet restart failed");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(account) = forget(state, cell.get_id()) {
                    tracing::debug!(account_id = %account, reason = ?reason, "wallet actor stopped");
                }
            }
            _ => {}
        }
        // Never stop because a child failed: that is exactly what supervision is for.
        Ok(())
    }
}

fn registered(wallets: &WalletRegistry, account: AccountId) -> Option<ActorRef<WalletMsg>> {
    wallets.lock().ok()?.get(&account).cloned()
}

fn forget(state: &mut SupervisorState, actor: ActorId) -> Option<AccountId> {
    let account = state.accounts_by_actor.remove(&actor)?;
    // Only forget the registry entry if it still points at this actor.
    let removed = state.wallets.lock().is_ok_and(|mut wallets| {
        let current = wallets
            .get(&account)
            .is_some_and(|wallet| wallet.get_id() == actor);
        if current {
            wallets.remove(&account);
        }
        current
    });
    if removed {
        state
            .metrics
            .actors_live
            .with_label_values(&[super::wallet::KIND])
            .dec();
    }
    Some(account)
}

async fn spawn_wallet(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    account: AccountId,
) -> Result<ActorRef<WalletMsg>, WalletError> {
    let args = WalletArgs {
        account,
        store: state.store.clone(),
        ledger: state.ledger.clone(),
        metrics: Arc::clone(&state.metrics),
        limits: state.limits,
    };
    match Actor::spawn_linked(None, WalletActor, args, myself.get_cell()).await {
        Ok((wallet, _join)) => {
            state.accounts_by_actor.insert(wallet.get_id(), account);
            if let Ok(mut wallets) = state.wallets.lock() {
                wallets.insert(account, wallet.clone());
            }
            state
                .metrics
                .actors_live
                .with_label_values(&[super::wallet::KIND])
                .inc();
            Ok(wallet)
        }
        Err(SpawnErr::StartupFailed(error)) if error.downcast_ref::<AccountMissing>().is_some() => {
            Err(WalletError::AccountNotFound)
        }
        Err(error) => Err(WalletError::Unavailable(error.to_string())),
    }
}

/// The handle through which HTTP handlers and sagas reach wallet actors. An op for a live
/// wallet goes straight to its actor, found in the supervisor's registry, rather than through
/// the supervisor's mailbox (one actor every op would otherwise queue behind); only a wallet
/// that is not live is asked of the supervisor, which starts it.
#[derive(Clone)]
pub struct Wallets {
    supervisor: ActorRef<SupervisorMsg>,
    registry: WalletRegistry,
    call_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Wallets {
    pub fn new(
        supervisor: ActorRef<SupervisorMsg>,
        registry: WalletRegistry,
        call_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Wallets {
        Wallets {
            supervisor,
            registry,
            call_timeout,
            metrics,
        }
    }

    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        &self.supervisor
    }

    /// Sends `op` to the account's wallet actor and waits for its outcome.
    pub async fn apply(&self, account: AccountId, op: WalletOp) -> Result<OpOutcome, WalletError> {
        let mut last_error = String::new();
        for attempt in 0..APPLY_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(
                    APPLY_RETRY_DELAY_MS * u64::from(attempt),
                ))
                .await;
            }
            let wallet = match self.lookup(account).await {
                Ok(wallet) => wallet,
                Err(WalletError::Unavailable(error)) => {
                    last_error = error;
                    continue;
                }
                Err(other) => return Err(other),
            };
            // After a failed attempt the op may have been committed: look before applying.
            let op = Box::new(WalletOp {
                replay: op.replay || attempt > 0,
                ..op.clone()
            });
            let ticket = self.metrics.mailbox_ticket(super::wallet::KIND);
            match wallet
                .call(
                    |reply| WalletMsg::Apply(op, reply, ticket),
                    Some(self.call_timeout),
                )
                .await
            {
                Ok(CallResult::Success(outcome)) => return Ok(outcome),
                Ok(CallResult::Timeout) => return Err(WalletError::Timeout),
                // The actor died (and is being restarted) before answering: try again.
                Ok(CallResult::SenderError) => {
                    last_error = "wallet actor stopped before answering".into()
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(WalletError::Unavailable(last_error))
    }

    /// The account's balance as its wallet actor holds it, without a database read (the
    /// actor is started if it is not live). Advisory: the actor still decides each op.
    pub async fn balance(&self, account: AccountId) -> Result<crate::domain::Balance, WalletError> {
        let wallet = self.lookup(account).await?;
        match wallet
            .call(WalletMsg::Balance, Some(self.call_timeout))
            .await
        {
            Ok(CallResult::Success(balance)) => Ok(balance),
            Ok(CallResult::Timeout) => Err(WalletError::Timeout),
            _ => Err(WalletError::Unavailable(
                "wallet actor stopped before answering".into(),
            )),
        }
    }

    pub async fn live_count(&self) -> Result<usize, WalletError> {
        match self
            .supervisor
            .call(SupervisorMsg::LiveCount, Some(self.call_timeout))
            .await
        {
            Ok(CallResult::Success(count)) => Ok(count),
            Ok(CallResult::Timeout) => Err(WalletError::Timeout),
            _ => Err(WalletError::Unavailable("wallet supervisor stopped".into())),
        }
    }

    async fn lookup(&self, account: AccountId) -> Result<ActorRef<WalletMsg>, WalletError> {
        if let Some(wallet) = registered(&self.registry, account)
            && wallet.get_status() == ractor::ActorStatus::Running
        {
            return Ok(wallet);
        }
        self.lookup_through_supervisor(account).await
    }

    async fn lookup_through_supervisor(
        &self,
        account: AccountId,
    ) -> Result<ActorRef<WalletMsg>, WalletError> {
        match self
            .supervisor
            .call(
                |reply| SupervisorMsg::Lookup(account, reply),
                Some(self.call_timeout),
            )
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(WalletError::Timeout),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(WalletError::Unavailable("wallet supervisor stopped".into()))
            }
        }
    }
}
