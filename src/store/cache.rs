//! Bounded in-memory caches that keep reads off the request path (docs/design.md §4): credentials
//! (session tokens and API keys, by hash), users by id / email / phone, and account ids by
//! owner and currency.
//!
//! Only what cannot go stale silently is cached: account ids and users' ids never change; a
//! recipient's "not verified yet" is re-read after `UNVERIFIED_RECIPIENT_CACHE_AGE_MAX` (this
//! node forgets the user at once when a code verifies them; another node within the bound),
//! while "verified" never goes back; and a credential entry is dropped the moment this node revokes it (`Store::revoke_*` evict
//! before they return) and, with Redis, when any node announces a revocation. Each credential
//! entry also carries the credential's own expiry and a bounded age, so nothing is trusted
//! for longer than `CREDENTIAL_CACHE_AGE_MAX`. Misses are never cached (a user who signs up
//! is found at once). Every cache is bounded: when one is full, an eighth of it is dropped.

use super::accounts::Owner;
use crate::domain::{AccountId, Currency, MerchantId, SessionId, UserId};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries per cache at most.
pub const CACHE_ENTRIES_MAX: usize = 100_000;
/// A cached credential is checked against the database again after this long, so a
/// revocation that no message reached (another node without Redis) holds within it.
pub const CREDENTIAL_CACHE_AGE_MAX: Duration = Duration::from_secs(30);
/// A recipient cached as not verified is read again after this long, so a contact verified
/// through another node counts here within it.
pub const UNVERIFIED_RECIPIENT_CACHE_AGE_MAX: Duration = Duration::from_secs(30);
/// How long a user's notification channel choices are used without reading them again. A
/// change made on this node evicts them at once; one made on another node (several nodes on one
/// database without Redis) is seen within this bound.
pub const CHANNEL_CACHE_AGE_MAX: Duration = Duration::from_secs(30);

/// The user a transfer's `to` names, and whether that contact is verified (always true for a
/// user id: naming the id needs no proof of a contact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedRecipient {
    pub user: UserId,
    pub verified: bool,
    pub cached_at: Instant,
}

impl CachedRecipient {
    /// Whether the entry can answer for a transfer: a verified one always (verification is
    /// never undone), an unverified one while it is young or when verification is not asked.
    pub fn is_usable(&self, require_verified: bool) -> bool {
        self.verified
            || !require_verified
            || self.cached_at.elapsed() < UNVERIFIED_RECIPIENT_CACHE_AGE_MAX
    }
}

/// A user's channel choices as `Store::channel_choices` read them.
#[derive(Debug, Clone, Copy)]
pub struct CachedChannels {
    pub preferences: super::notifications::Preferences,
    pub has_devices: bool,
    pub cached_at: Instant,
}

impl CachedChannels {
    pub fn is_usable(&self) -> bool {
        self.cached_at.elapsed() < CHANNEL_CACHE_AGE_MAX
    }
}

/// A map with a size bound; eviction drops arbitrary entries (cheap, and good enough for
/// caches whose misses are one indexed read). `retain` (eviction by a predicate) bumps a
/// generation, and `insert_unless_changed` refuses an entry read from the database before
/// the latest eviction, so a read racing a revocation cannot put the revoked entry back.
#[derive(Debug)]
pub struct BoundedCache<K, V> {
    inner: Mutex<CacheInner<K, V>>,
    capacity: usize,
}

#[derive(Debug)]
struct CacheInner<K, V> {
    entries: HashMap<K, V>,
    generation: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedCache<K, V> {
    pub fn new(capacity: usize) -> BoundedCache<K, V> {
        assert!(capacity > 0);
        BoundedCache {
            inner: Mutex::new(CacheInner {
                entries: HashMap::new(),
                generation: 0,
            }),
            capacity,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.lock().ok()?.entries.get(key).cloned()
    }

    /// The eviction generation now; read it before reading what will be inserted.
    pub fn generation(&self) -> u64 {
        self.inner.lock().map_or(u64::MAX, |inner| inner.generation)
    }

    pub fn insert(&self, key: K, value: V) {
        let generation = self.generation();
        self.insert_unless_changed(key, value, generation);
    }

    /// Inserts unless an eviction happened since `generation` was read.
    pub fn insert_unless_changed(&self, key: K, value: V, generation: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&key) {
            let evict = (self.capacity / 8).max(1);
            let victims: Vec<K> = inner.entries.keys().take(evict).cloned().collect();
            for victim in victims {
                inner.entries.remove(&victim);
            }
        }
        inner.entries.insert(key, value);
        debug_assert!(inner.entries.len() <= self.capacity);
    }

    /// Drops every entry for which `keep` is false, and bumps the generation.
    pub fn retain(&self, keep: impl FnMut(&K, &mut V) -> bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.generation += 1;
            inner.entries.retain(keep);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who a bearer credential authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialOwner {
    UserSession {
        user: UserId,
        session: SessionId,
    },
    MerchantSession {
        merchant: MerchantId,
        session: SessionId,
    },
    ApiKey {
        merchant: MerchantId,
        key: crate::domain::ApiKeyId,
        scope: super::merchants::ApiKeyScope,
    },
}

impl CredentialOwner {
    /// The id revocation names: the session's or the key's.
    pub fn credential_id(&self) -> String {
        match self {
            CredentialOwner::UserSession { session, .. }
            | CredentialOwner::MerchantSession { session, .. } => session.to_string(),
            CredentialOwner::ApiKey { key, .. } => key.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CachedCredential {
    pub owner: CredentialOwner,
    /// The credential's own expiry (`None`: API keys do not expire).
    pub expires_at: Option<DateTime<Utc>>,
    pub cached_at: Instant,
}

impl CachedCredential {
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|expiry| expiry > now)
            && self.cached_at.elapsed() < CREDENTIAL_CACHE_AGE_MAX
    }
}

/// The node's caches, shared by every clone of its `Store`.
#[derive(Debug)]
pub struct Caches {
    /// By SHA-256 of the bearer token.
    pub credentials: BoundedCache<String, CachedCredential>,
    /// By the recipient text a transfer names (`id`, email or E.164 phone) → the user.
    pub users: BoundedCache<String, CachedRecipient>,
    pub accounts: BoundedCache<(Owner, Currency), AccountId>,
    /// A user's notification preferences and whether they have a push device.
    pub channels: BoundedCache<UserId, CachedChannels>,
    /// Where revocations go to be announced to other nodes (set with Redis).
    revocations: std::sync::OnceLock<tokio::sync::mpsc::Sender<String>>,
}

impl Default for Caches {
    fn default() -> Caches {
        Caches {
            credentials: BoundedCache::new(CACHE_ENTRIES_MAX),
            users: BoundedCache::new(CACHE_ENTRIES_MAX),
            accounts: BoundedCache::new(CACHE_ENTRIES_MAX),
            channels: BoundedCache::new(CACHE_ENTRIES_MAX),
            revocations: std::sync::OnceLock::new(),
        }
    }
}

impl Caches {
    /// Forgets the credential (a session or an API key) with this id, at once, here and —
    /// when revocations are announced (Redis) — on every other node.
    pub fn evict_credential(&self, credential_id: &str) {
        self.evict_credential_here(credential_id);
        if let Some(announce) = self.revocations.get() {
            // A full queue means Redis has been away for long: the cache age bound holds.
            let _ = announce.try_send(credential_id.to_owned());
        }
    }

    /// Forgets every credential with one of these ids (the sessions one "log out everywhere"
    /// revoked), here in one pass and, when revocations are announced, on every other node
    /// (one announcement per id, as `evict_credential` sends).
    pub fn evict_credentials(&self, credential_ids: &[String]) {
        if credential_ids.is_empty() {
            return;
        }
        let revoked: std::collections::HashSet<&str> =
            credential_ids.iter().map(String::as_str).collect();
        self.credentials
            .retain(|_, cached| !revoked.contains(cached.owner.credential_id().as_str()));
        if let Some(announce) = self.revocations.get() {
            for credential_id in credential_ids {
                // A full queue means Redis has been away for long: the cache age bound holds.
                let _ = announce.try_send(credential_id.clone());
            }
        }
    }

    /// Forgets every recipient entry of the user (one of their contacts was just verified).
    pub fn evict_user(&self, user: UserId) {
        self.users.retain(|_, cached| cached.user != user);
    }

    /// Forgets the credential on this node only (another node announced it).
    pub fn evict_credential_here(&self, credential_id: &str) {
        self.credentials
            .retain(|_, cached| cached.owner.credential_id() != credential_id);
    }

    /// Forgets every cached credential (announcements may have been missed).
    pub fn forget_credentials(&self) {
        self.credentials.retain(|_, _| false);
    }

    /// From now on, revocations are also sent here (to be announced to other nodes).
    pub fn announce_revocations_to(&self, announce: tokio::sync::mpsc::Sender<String>) {
        let _ = self.revocations.set(announce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_stays_within_its_bound() {
        let cache = BoundedCache::new(16);
        for index in 0..1000 {
            cache.insert(index, index * 2);
            assert!(cache.len() <= 16);
        }
        assert_eq!(cache.get(&999), Some(1998), "the newest entry is kept");
    }

    #[test]
    fn an_evicted_credential_is_gone() {
        let caches = Caches::default();
        let session = SessionId::generate();
        let user = UserId::generate();
        caches.credentials.insert(
            "hash".into(),
            CachedCredential {
                owner: CredentialOwner::UserSession { user, session },
                expires_at: None,
                cached_at: Instant::now(),
            },
        );
        caches.evict_credential(&session.to_string());
        assert!(caches.credentials.get(&"hash".to_owned()).is_none());
    }

    #[test]
    fn evicting_several_credentials_keeps_the_others() {
        let caches = Caches::default();
        let user = UserId::generate();
        let sessions: Vec<SessionId> = (0..3).map(|_| SessionId::generate()).collect();
        for (index, session) in sessions.iter().enumerate() {
            caches.credentials.insert(
                format!("hash-{index}"),
                CachedCredential {
                    owner: CredentialOwner::UserSession {
                        user,
                        session: *session,
                    },
                    expires_at: None,
                    cached_at: Instant::now(),
                },
            );
        }
        let (announce, mut announced) = tokio::sync::mpsc::channel(8);
        caches.announce_revocations_to(announce);
        caches.evict_credentials(&[sessions[0].to_string(), sessions[2].to_string()]);
        assert!(caches.credentials.get(&"hash-0".to_owned()).is_none());
        assert!(caches.credentials.get(&"hash-1".to_owned()).is_some());
        assert!(caches.credentials.get(&"hash-2".to_owned()).is_none());
        assert_eq!(announced.try_recv().ok(), Some(sessions[0].to_string()));
        assert_eq!(announced.try_recv().ok(), Some(sessions[2].to_string()));
        assert!(announced.try_recv().is_err(), "one announcement per id");
    }

    #[test]
    fn a_read_from_before_an_eviction_is_not_cached() {
        let cache = BoundedCache::new(4);
        let seen = cache.generation();
        cache.retain(|_: &u32, _: &mut u32| true);
        cache.insert_unless_changed(1, 1, seen);
        assert_eq!(cache.get(&1), None);
        cache.insert_unless_changed(1, 1, cache.generation());
        assert_eq!(cache.get(&1), Some(1));
    }

    #[test]
    fn an_unverified_recipient_is_read_again_after_its_age_bound_when_verification_is_required() {
        let old = Instant::now()
            .checked_sub(UNVERIFIED_RECIPIENT_CACHE_AGE_MAX + Duration::from_secs(1))
            .expect("an instant in the past");
        let entry = |verified, cached_at| CachedRecipient {
            user: UserId::generate(),
            verified,
            cached_at,
        };
        assert!(entry(false, Instant::now()).is_usable(true));
        assert!(
            !entry(false, old).is_usable(true),
            "another node may have verified it"
        );
        assert!(entry(false, old).is_usable(false));
        assert!(
            entry(true, old).is_usable(true),
            "verification is never undone"
        );
        let caches = Caches::default();
        let user = UserId::generate();
        caches
            .users
            .insert("ada@example.com".into(), entry(false, Instant::now()));
        caches.users.insert(
            "+14155550100".into(),
            CachedRecipient {
                user,
                verified: false,
                cached_at: Instant::now(),
            },
        );
        caches.evict_user(user);
        assert!(caches.users.get(&"+14155550100".to_owned()).is_none());
        assert!(caches.users.get(&"ada@example.com".to_owned()).is_some());
    }

    #[test]
    fn an_expired_credential_is_not_usable() {
        let now = Utc::now();
        let cached = CachedCredential {
            owner: CredentialOwner::UserSession {
                user: UserId::generate(),
                session: SessionId::generate(),
            },
            expires_at: Some(now),
            cached_at: Instant::now(),
        };
        assert!(!cached.is_usable(now));
        assert!(cached.is_usable(now - chrono::Duration::seconds(1)));
    }
}
