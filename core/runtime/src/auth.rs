//! Passwords and bearer secrets.
//!
//! Passwords are hashed with Argon2id. Session, API and visitor tokens are
//! 256-bit random strings with a prefix saying what they are; the database
//! keeps only their SHA-256, so a leaked database opens no conversation.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

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

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Whether `password` matches a stored hash. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
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
