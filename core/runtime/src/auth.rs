//! Passwords and bearer secrets.
//!
//! Passwords are hashed with Argon2id. Session, API and visitor tokens are
//! 256-bit random strings with a prefix saying what they are; the database
//! keeps only their SHA-256, so a leaked database opens no conversation.

use argon2::password_hash::{self, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a bearer secret opens; the prefix lets the server route it without a lookup.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Session,
    Api,
    Visitor,
}

impl TokenKind {
    const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "bs_",
            TokenKind::Api => "bt_",
            TokenKind::Visitor => "bv_",
        }
    }

    pub fn of(token: &str) -> Option<Self> {
        [TokenKind::Session, TokenKind::Api, TokenKind::Visitor]
            .into_iter()
            .find(|k| token.starts_with(k.prefix()))
    }
}

/// A new random secret of the given kind.
pub fn new_token(kind: TokenKind) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes))
}

/// The form a token is stored and looked up in.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The Argon2id parameters of every new hash: 19 MiB of memory, two passes,
/// one lane (the argon2 crate's defaults, OWASP's first recommendation).
/// ARCHITECTURE.md states the memory this costs under load.
pub const ARGON2_PARAMS: (u32, u32, u32) = (
    Params::DEFAULT_M_COST,
    Params::DEFAULT_T_COST,
    Params::DEFAULT_P_COST,
);

/// Hashes with memory of its own. For one-off use (the CLI, tests); the
/// server hashes through a [`PasswordPool`], which bounds the memory.
pub fn hash_password(password: &str) -> Result<String, String> {
    hash_with(password, &mut Vec::new())
}

/// Whether `password` matches a stored hash. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    verify_with(password, hash, &mut Vec::new())
}

fn hash_with(password: &str, memory: &mut Vec<Block>) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| format!("cannot hash password: {e}"))?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    fill(Argon2::default(), password, salt_raw, &mut out, memory)?;
    let output =
        password_hash::Output::new(&out).map_err(|e| format!("cannot hash password: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: password_hash::ParamsString::try_from(&params)
            .map_err(|e| format!("cannot hash password: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// The most memory a stored hash may ask for (a corrupt row must not make
/// one sign-in allocate gigabytes): 256 MiB.
const MAX_VERIFY_BLOCKS: usize = 256 * 1024;

fn verify_with(password: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    if params.block_count() > MAX_VERIFY_BLOCKS {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    fill(
        Argon2::new(algorithm, version, params),
        password,
        salt_raw,
        &mut out,
        memory,
    )
    .is_ok()
        && constant_time_eq(&out, expected.as_bytes())
}

/// Runs Argon2 in `memory`, growing it when these parameters need more.
fn fill(
    argon: Argon2<'_>,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), String> {
    let blocks = argon.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Compares secrets without an early exit that would leak how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A stored-hash look-alike with the same parameters as a real one: checking
/// a password against it costs exactly as much and never matches. Used for
/// unknown accounts, so that timing does not tell which emails exist.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        OsRng.fill_bytes(&mut out);
        let (m, t, p) = ARGON2_PARAMS;
        let hash = base64::engine::general_purpose::STANDARD_NO_PAD.encode(out);
        format!("$argon2id$v=19$m={m},t={t},p={p}${salt}${hash}")
    })
}

/// Why the pool did not hash.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every worker was busy for longer than the queue may wait, or the queue is full.
    #[error("the server is busy checking passwords; try again in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    #[error("{0}")]
    Failed(String),
}

/// Password hashing with bounded memory and concurrency.
///
/// Argon2id needs 19 MiB per hash. Run without a bound, a burst of sign-ins
/// (or an attacker's) costs 19 MiB each at once, and the allocator keeps
/// much of it afterwards. The pool runs at most `workers` hashes at a time,
/// each in one of `workers` buffers allocated once and reused, so the
/// hashing memory is `workers × 19 MiB`, whatever the load. Callers beyond
/// that wait in a queue of bounded length for at most `max_wait`; past either
/// bound they get [`PoolError::Busy`] (the web layer answers 503 with
/// `Retry-After`).
///
/// A caller that gives up (its client disconnected) gives up nothing the
/// pool counts: its place in the queue is released by a guard, and a hash
/// that has started holds its worker slot and its buffer until it ends, so
/// hashes never outnumber buffers.
pub struct PasswordPool {
    permits: Arc<tokio::sync::Semaphore>,
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    queued: Arc<AtomicUsize>,
    max_queue: usize,
    max_wait: Duration,
}

/// The most hashes that run at once, whatever the machine: 4 × 19 MiB keeps
/// the hashing memory under 80 MiB on a 64-core server too.
pub const MAX_HASH_WORKERS: usize = 4;

/// A place in the pool's queue, given back however the wait ends.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordPool {
    /// A pool sized to this machine's cores, at most [`MAX_HASH_WORKERS`].
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = cores.clamp(1, MAX_HASH_WORKERS);
        Self::new(workers, workers * 16, Duration::from_secs(3))
    }

    pub fn new(workers: usize, max_queue: usize, max_wait: Duration) -> Self {
        let workers = workers.max(1);
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(workers)),
            buffers: Arc::new(Mutex::new(Vec::new())),
            queued: Arc::new(AtomicUsize::new(0)),
            max_queue,
            max_wait,
        }
    }

    /// Whether `password` matches `hash`.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, PoolError> {
        self.run(move |memory| Ok(verify_with(&password, &hash, memory)))
            .await
    }

    /// A new hash of `password`.
    pub async fn hash(&self, password: String) -> Result<String, PoolError> {
        self.run(move |memory| hash_with(&password, memory).map_err(PoolError::Failed))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> Result<T, PoolError> + Send + 'static,
    ) -> Result<T, PoolError> {
        let busy = PoolError::Busy {
            retry_after_secs: self.max_wait.as_secs().max(1),
        };
        // The queue's length is bounded before anyone waits in it.
        let place = Queued(self.queued.clone());
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            return Err(busy);
        }
        let permit =
            tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await;
        drop(place);
        let Ok(Ok(permit)) = permit else {
            return Err(busy);
        };
        // The permit and the buffer travel with the blocking job: if this
        // caller is dropped now, the hash still ends before either is free.
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            let mut memory = buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .unwrap_or_default();
            let result = job(&mut memory);
            buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(memory);
            drop(permit);
            result
        })
        .await
        .map_err(|e| PoolError::Failed(format!("password hashing stopped: {e}")))?
    }
}

/// A password an operator may set: long enough to matter, short enough to hash quickly.
pub fn check_password_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 8 {
        return Err("password must be at least 8 characters".into());
    }
    if password.len() > 1024 {
        return Err("password must be at most 1024 bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let h = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("correct horse", dummy_hash()));
        // Hashes made elsewhere (the argon2 crate's own PHC strings) verify too.
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("correct horse", &theirs));
        assert!(!verify_password("correct horsf", &theirs));
    }

    #[test]
    fn the_dummy_hash_has_the_parameters_of_a_real_one() {
        let real = PasswordHash::new(&hash_password("x").unwrap())
            .map(|h| h.params.to_string())
            .unwrap();
        let dummy = PasswordHash::new(dummy_hash())
            .map(|h| h.params.to_string())
            .unwrap();
        assert_eq!(real, dummy);
    }

    #[tokio::test]
    async fn the_pool_reuses_its_buffers_and_refuses_beyond_its_queue() {
        let pool = PasswordPool::new(1, 1, Duration::from_secs(5));
        let hash = pool.hash("correct horse".into()).await.unwrap();
        assert!(
            pool.verify("correct horse".into(), hash.clone())
                .await
                .unwrap()
        );
        assert!(!pool.verify("wrong".into(), hash.clone()).await.unwrap());
        assert_eq!(pool.buffers.lock().unwrap().len(), 1);
        // One worker, a queue of one: of three at once, the third is refused.
        let pool = Arc::new(pool);
        let (a, b, c) = tokio::join!(
            pool.verify("a".into(), hash.clone()),
            pool.verify("b".into(), hash.clone()),
            pool.verify("c".into(), hash.clone()),
        );
        let busy = [&a, &b, &c]
            .iter()
            .filter(|r| matches!(r, Err(PoolError::Busy { .. })))
            .count();
        assert!(busy >= 1, "{a:?} {b:?} {c:?}");
        assert_eq!(pool.buffers.lock().unwrap().len(), 1);
        assert_eq!(pool.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_keeps_no_place_and_frees_no_slot_early() {
        let pool = Arc::new(PasswordPool::new(1, 4, Duration::from_secs(5)));
        let hash = hash_password("correct horse").unwrap();
        // Many callers abandon their wait (a client disconnecting).
        for _ in 0..20 {
            let waiting = tokio::time::timeout(
                Duration::from_millis(1),
                pool.verify("guess".into(), hash.clone()),
            )
            .await;
            drop(waiting);
        }
        // Whatever was running has ended by now; the queue is empty again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.queued.load(Ordering::Acquire), 0);
        assert!(pool.verify("correct horse".into(), hash).await.unwrap());
        // Never more buffers than workers.
        assert_eq!(pool.buffers.lock().unwrap().len(), 1);
    }

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let a = new_token(TokenKind::Visitor);
        let b = new_token(TokenKind::Visitor);
        assert_ne!(a, b);
        assert_eq!(TokenKind::of(&a), Some(TokenKind::Visitor));
        assert_eq!(TokenKind::of("nope"), None);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
