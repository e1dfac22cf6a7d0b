//! Staff accounts, browser sessions and API tokens. Secrets are stored only as hashes.

use crate::rows::parse;
use crate::{Error, Result, Store, new_id};
use baton_model::{Presence, Role, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A staff member. The password hash never leaves this crate's callers' hands in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub presence: Presence,
    /// The last request or inbox heartbeat; `None` before the first.
    pub last_seen_at: Option<Timestamp>,
    pub password_hash: String,
    pub created_at: Timestamp,
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
}

/// A browser session: whose it is and the CSRF token bound to it.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub created_at: Timestamp,
}

const USER_COLUMNS: &str =
    "id, email, name, role, presence, last_seen_at, password_hash, created_at";

fn user(row: &AnyRow) -> Result<User> {
    let role: String = row.try_get("role")?;
    let presence: String = row.try_get("presence")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: parse(&role, "user role")?,
        presence: parse(&presence, "user presence")?,
        last_seen_at: row
            .try_get::<Option<i64>, _>("last_seen_at")?
            .map(Timestamp),
        password_hash: row.try_get("password_hash")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

impl Store {
    /// Creates a user; the email is compared case-insensitively and must be new.
    pub async fn create_user(&self, new: NewUser<'_>, now: Timestamp) -> Result<User> {
        let id = new_id();
        let email = new.email.trim().to_lowercase();
        let result = sqlx::query(
            "INSERT INTO users (id, email, name, role, password_hash, presence, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'offline', $6)",
        )
        .bind(&id)
        .bind(&email)
        .bind(new.name.trim())
        .bind(new.role.as_str())
        .bind(new.password_hash)
        .bind(now.millis())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::Conflict("a user with this email"));
            }
            Err(e) => return Err(e.into()),
        }
        self.user(&id)
            .await?
            .ok_or_else(|| Error::Corrupt("user vanished after insert".into()))
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user).transpose()
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user).collect()
    }

    pub async fn count_users(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Changes a user's role and/or name; `None` keeps the current value.
    pub async fn update_user(
        &self,
        user_id: &str,
        role: Option<Role>,
        name: Option<&str>,
    ) -> Result<Option<User>> {
        sqlx::query(
            "UPDATE users SET role = COALESCE($1, role), name = COALESCE($2, name) WHERE id = $3",
        )
        .bind(role.map(|r| r.as_str()))
        .bind(name)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        self.user(user_id).await
    }

    /// Records that a staff member is here now.
    pub async fn touch_user(&self, user_id: &str, now: Timestamp) -> Result<()> {
        sqlx::query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
            .bind(now.millis())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_presence(&self, user_id: &str, presence: Presence) -> Result<()> {
        sqlx::query("UPDATE users SET presence = $1 WHERE id = $2")
            .bind(presence.as_str())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: &str,
        csrf_token: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now.millis())
        .bind(expires_at.millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live session for a token hash, if it has not expired.
    pub async fn session(&self, token_hash: &str, now: Timestamp) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT s.csrf_token, s.expires_at, u.id, u.email, u.name, u.role, u.presence, u.last_seen_at, \
                    u.password_hash, u.created_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now.millis())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            user: user(&row)?,
            csrf_token: row.try_get("csrf_token")?,
            expires_at: Timestamp(row.try_get("expires_at")?),
        }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn create_api_token(
        &self,
        user_id: &str,
        name: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<ApiToken> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, user_id, name, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(token_hash)
        .bind(user_id)
        .bind(name)
        .bind(now.millis())
        .execute(&self.pool)
        .await?;
        Ok(ApiToken {
            id,
            name: name.to_owned(),
            user_id: user_id.to_owned(),
            created_at: now,
        })
    }

    /// The user an API token belongs to.
    pub async fn user_by_api_token(&self, token_hash: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, u.role, u.presence, u.last_seen_at, u.password_hash, \
             u.created_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user).transpose()
    }
}
