//! Staff accounts, browser sessions and API tokens. Secrets are stored only as hashes.

use crate::db::Row as AnyRow;
use crate::db::query;
use crate::rows::parse;
use crate::{Error, Result, Store, new_id};
use baton_model::{Presence, Role, Timestamp};

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
    /// Departments this person works in; none means every department.
    pub departments: Vec<String>,
    /// Topics (intent or knowledge-base entry ids) this person knows best.
    pub expertise: Vec<String>,
    /// Conversations held at once before automatic assignment skips them; 0 is no limit.
    pub capacity: i64,
    /// When automatic assignment last gave them a conversation (round robin).
    pub last_assigned_at: Option<Timestamp>,
    /// Notification settings: a conversation is assigned to me / a task is.
    pub notify_assigned: bool,
    pub notify_task: bool,
    pub password_hash: String,
    pub created_at: Timestamp,
    /// When the account was removed; a deactivated user cannot sign in and
    /// is left out of every list but the admins' on request.
    pub deactivated_at: Option<Timestamp>,
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
    pub last_used_at: Option<Timestamp>,
}

/// An API token with its owner, for the token list.
#[derive(Clone, Debug)]
pub struct TokenListing {
    pub token: ApiToken,
    pub user_name: String,
    pub user_email: String,
}

/// What became of a request to deactivate a user (or to change a role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deactivation {
    Done,
    NotFound,
    AlreadyDeactivated,
    /// The user is the last active owner: someone must be able to administer.
    LastOwner,
}

const USER_COLUMNS: &str = "id, email, name, role, presence, last_seen_at, departments, \
     expertise, capacity, last_assigned_at, notify_assigned, notify_task, password_hash, \
     created_at, deactivated_at";
/// The same columns on the alias `u`, for joins.
const U_COLUMNS: &str = "u.id, u.email, u.name, u.role, u.presence, u.last_seen_at, \
     u.departments, u.expertise, u.capacity, u.last_assigned_at, u.notify_assigned, \
     u.notify_task, u.password_hash, u.created_at, u.deactivated_at";

/// A staff member's routing and notification settings; `None` keeps the current value.
#[derive(Clone, Debug, Default)]
pub struct RoutingUpdate {
    pub departments: Option<Vec<String>>,
    pub expertise: Option<Vec<String>>,
    pub capacity: Option<i64>,
    pub notify_assigned: Option<bool>,
    pub notify_task: Option<bool>,
}

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
        departments: json_list(row, "departments")?,
        expertise: json_list(row, "expertise")?,
        capacity: row.try_get("capacity")?,
        last_assigned_at: row
            .try_get::<Option<i64>, _>("last_assigned_at")?
            .map(Timestamp),
        notify_assigned: row.try_get::<i64, _>("notify_assigned")? != 0,
        notify_task: row.try_get::<i64, _>("notify_task")? != 0,
        password_hash: row.try_get("password_hash")?,
        created_at: Timestamp(row.try_get("created_at")?),
        deactivated_at: row
            .try_get::<Option<i64>, _>("deactivated_at")?
            .map(Timestamp),
    })
}

fn api_token(row: &AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        created_at: Timestamp(row.try_get("created_at")?),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
    })
}

fn json_list(row: &AnyRow, column: &str) -> Result<Vec<String>> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| Error::Corrupt(format!("users.{column}: {e}")))
}

impl Store {
    /// Creates a user; the email is compared case-insensitively and must be new.
    pub async fn create_user(&self, new: NewUser<'_>, now: Timestamp) -> Result<User> {
        let id = new_id();
        let email = new.email.trim().to_lowercase();
        let result = query(
            "INSERT INTO users (id, email, name, role, password_hash, presence, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'offline', $6)",
        )
        .bind(&id)
        .bind(&email)
        .bind(new.name.trim())
        .bind(new.role.as_str())
        .bind(new.password_hash)
        .bind(now.millis())
        .execute(self)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => {
                return Err(Error::Conflict("a user with this email"));
            }
            Err(e) => return Err(e),
        }
        self.user(&id)
            .await?
            .ok_or_else(|| Error::Corrupt("user vanished after insert".into()))
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = query(sql).bind(id).fetch_optional(self).await?;
        row.as_ref().map(user).transpose()
    }

    /// The active user with this email (a deactivated one is nobody).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1 AND deactivated_at IS NULL");
        let row = query(sql)
            .bind(email.trim().to_lowercase())
            .fetch_optional(self)
            .await?;
        row.as_ref().map(user).transpose()
    }

    /// The active users, oldest first.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE deactivated_at IS NULL ORDER BY created_at, id"
        );
        let rows = query(sql).fetch_all(self).await?;
        rows.iter().map(user).collect()
    }

    /// Every user, deactivated ones included, oldest first.
    pub async fn list_all_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id");
        let rows = query(sql).fetch_all(self).await?;
        rows.iter().map(user).collect()
    }

    /// Deactivates a user and deletes their sessions and API tokens, in one
    /// transaction. The last active owner cannot be deactivated: the owners'
    /// rows are locked first, so two admins removing the last two owners at
    /// once cannot both succeed.
    pub async fn deactivate_user(&self, user_id: &str, now: Timestamp) -> Result<Deactivation> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let Some(user) = owner_guard(c, &user_id).await? else {
                    return Ok(Deactivation::NotFound);
                };
                if !user.active {
                    return Ok(Deactivation::AlreadyDeactivated);
                }
                if user.last_owner {
                    return Ok(Deactivation::LastOwner);
                }
                query("UPDATE users SET deactivated_at = $1, presence = 'offline' WHERE id = $2")
                    .bind(now.millis())
                    .bind(user_id.as_str())
                    .execute(&mut *c)
                    .await?;
                for table in ["sessions", "api_tokens"] {
                    query(format!("DELETE FROM {table} WHERE user_id = $1"))
                        .bind(user_id.as_str())
                        .execute(&mut *c)
                        .await?;
                }
                Ok(Deactivation::Done)
            })
        })
        .await
    }

    /// Changes a user's role. Taking the owner role from the last active
    /// owner is refused, under the same lock as [`Store::deactivate_user`],
    /// so a demotion and a removal at once cannot leave nobody who may
    /// administer.
    pub async fn change_role(&self, user_id: &str, role: Role) -> Result<Deactivation> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let Some(user) = owner_guard(c, &user_id).await? else {
                    return Ok(Deactivation::NotFound);
                };
                if user.last_owner && role != Role::Owner {
                    return Ok(Deactivation::LastOwner);
                }
                query("UPDATE users SET role = $1 WHERE id = $2")
                    .bind(role.as_str())
                    .bind(user_id.as_str())
                    .execute(&mut *c)
                    .await?;
                Ok(Deactivation::Done)
            })
        })
        .await
    }

    /// Lets a deactivated user sign in again (with their old password).
    pub async fn reactivate_user(&self, user_id: &str) -> Result<bool> {
        let done = query(
            "UPDATE users SET deactivated_at = NULL WHERE id = $1 AND deactivated_at IS NOT NULL",
        )
        .bind(user_id)
        .execute(self)
        .await?;
        Ok(done > 0)
    }

    pub async fn count_users(&self) -> Result<i64> {
        let row = query("SELECT COUNT(*) AS n FROM users WHERE deactivated_at IS NULL")
            .fetch_one(self)
            .await?;
        row.try_get("n")
    }

    /// Changes a user's role and/or name; `None` keeps the current value.
    pub async fn update_user(
        &self,
        user_id: &str,
        role: Option<Role>,
        name: Option<&str>,
    ) -> Result<Option<User>> {
        query(
            "UPDATE users SET role = COALESCE($1, role), name = COALESCE($2, name) WHERE id = $3",
        )
        .bind(role.map(|r| r.as_str()))
        .bind(name)
        .bind(user_id)
        .execute(self)
        .await?;
        self.user(user_id).await
    }

    /// Changes a user's routing and notification settings.
    pub async fn update_routing(&self, user_id: &str, update: &RoutingUpdate) -> Result<()> {
        let list = |l: &Option<Vec<String>>| {
            l.as_ref()
                .map(|l| serde_json::to_string(l).unwrap_or_else(|_| "[]".into()))
        };
        query(
            "UPDATE users SET departments = COALESCE($1, departments), \
             expertise = COALESCE($2, expertise), capacity = COALESCE($3, capacity), \
             notify_assigned = COALESCE($4, notify_assigned), \
             notify_task = COALESCE($5, notify_task) WHERE id = $6",
        )
        .bind(list(&update.departments))
        .bind(list(&update.expertise))
        .bind(update.capacity)
        .bind(update.notify_assigned.map(i64::from))
        .bind(update.notify_task.map(i64::from))
        .bind(user_id)
        .execute(self)
        .await?;
        Ok(())
    }

    /// Records that automatic assignment just gave this user a conversation.
    pub async fn mark_assigned(&self, user_id: &str, now: Timestamp) -> Result<()> {
        query("UPDATE users SET last_assigned_at = $1 WHERE id = $2")
            .bind(now.millis())
            .bind(user_id)
            .execute(self)
            .await?;
        Ok(())
    }

    /// How many `active` conversations each staff member holds.
    pub async fn active_load(&self) -> Result<std::collections::HashMap<String, i64>> {
        let rows = query(
            "SELECT assignee_id, COUNT(*) AS n FROM conversations \
             WHERE status = 'active' AND assignee_id IS NOT NULL GROUP BY assignee_id",
        )
        .fetch_all(self)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("assignee_id")?, r.try_get("n")?)))
            .collect()
    }

    /// Records that a staff member is here now.
    pub async fn touch_user(&self, user_id: &str, now: Timestamp) -> Result<()> {
        query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
            .bind(now.millis())
            .bind(user_id)
            .execute(self)
            .await?;
        Ok(())
    }

    pub async fn set_presence(&self, user_id: &str, presence: Presence) -> Result<()> {
        query("UPDATE users SET presence = $1 WHERE id = $2")
            .bind(presence.as_str())
            .bind(user_id)
            .execute(self)
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
        query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now.millis())
        .bind(expires_at.millis())
        .execute(self)
        .await?;
        Ok(())
    }

    /// The live session for a token hash, if it has not expired.
    pub async fn session(&self, token_hash: &str, now: Timestamp) -> Result<Option<SessionRecord>> {
        let sql = format!(
            "SELECT s.csrf_token, s.expires_at, {U_COLUMNS} \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.deactivated_at IS NULL"
        );
        let row = query(sql)
            .bind(token_hash)
            .bind(now.millis())
            .fetch_optional(self)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            user: user(&row)?,
            csrf_token: row.try_get("csrf_token")?,
            expires_at: Timestamp(row.try_get("expires_at")?),
        }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self)
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
        query(
            "INSERT INTO api_tokens (id, token_hash, user_id, name, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(token_hash)
        .bind(user_id)
        .bind(name)
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(ApiToken {
            id,
            name: name.to_owned(),
            user_id: user_id.to_owned(),
            created_at: now,
            last_used_at: None,
        })
    }

    /// The user an API token belongs to, and the token.
    pub async fn user_by_api_token(&self, token_hash: &str) -> Result<Option<(User, ApiToken)>> {
        let sql = format!(
            "SELECT {U_COLUMNS}, t.id AS token_id, t.name AS token_name, \
             t.created_at AS token_created_at, t.last_used_at AS token_last_used_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND u.deactivated_at IS NULL"
        );
        let row = query(sql).bind(token_hash).fetch_optional(self).await?;
        let Some(row) = row else { return Ok(None) };
        let u = user(&row)?;
        let token = ApiToken {
            id: row.try_get("token_id")?,
            name: row.try_get("token_name")?,
            user_id: u.id.clone(),
            created_at: Timestamp(row.try_get("token_created_at")?),
            last_used_at: row
                .try_get::<Option<i64>, _>("token_last_used_at")?
                .map(Timestamp),
        };
        Ok(Some((u, token)))
    }

    /// Records that a token was used now.
    pub async fn touch_api_token(&self, token_id: &str, now: Timestamp) -> Result<()> {
        query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now.millis())
            .bind(token_id)
            .execute(self)
            .await?;
        Ok(())
    }

    /// API tokens, newest first: one user's, or everyone's (`None`).
    pub async fn list_api_tokens(&self, user_id: Option<&str>) -> Result<Vec<TokenListing>> {
        let rows = query(
            "SELECT t.id, t.name, t.user_id, t.created_at, t.last_used_at, \
             u.name AS user_name, u.email AS user_email \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE ($1 IS NULL OR t.user_id = $1) ORDER BY t.created_at DESC, t.id DESC",
        )
        .bind(user_id)
        .fetch_all(self)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenListing {
                    token: api_token(r)?,
                    user_name: r.try_get("user_name")?,
                    user_email: r.try_get("user_email")?,
                })
            })
            .collect()
    }

    /// One API token by its id.
    pub async fn api_token(&self, id: &str) -> Result<Option<ApiToken>> {
        let row = query(
            "SELECT id, name, user_id, created_at, last_used_at FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self)
        .await?;
        row.as_ref().map(api_token).transpose()
    }

    /// Deletes an API token: it stops working at once. False if there was none.
    pub async fn revoke_api_token(&self, id: &str) -> Result<bool> {
        let done = query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(self)
            .await?;
        Ok(done > 0)
    }

    /// Deletes the API token with this hash (a sign-out with it).
    pub async fn revoke_api_token_by_hash(&self, token_hash: &str) -> Result<bool> {
        let done = query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self)
            .await?;
        Ok(done > 0)
    }
}

/// A user as the owner rule sees them, read under the owners' lock.
struct OwnerGuard {
    active: bool,
    /// The user is the only active owner.
    last_owner: bool,
}

/// Locks the active owners' rows (a no-op write, so it locks on both
/// backends), then reads whether `user_id` is active and the last owner.
async fn owner_guard(c: &mut dyn crate::db::Conn, user_id: &str) -> Result<Option<OwnerGuard>> {
    query("UPDATE users SET role = role WHERE role = 'owner' AND deactivated_at IS NULL")
        .execute(&mut *c)
        .await?;
    let row = query("SELECT role, deactivated_at FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut *c)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let active = row.try_get::<Option<i64>, _>("deactivated_at")?.is_none();
    let owner = row.try_get::<String, _>("role")? == Role::Owner.as_str();
    let owners: i64 =
        query("SELECT COUNT(*) AS n FROM users WHERE role = 'owner' AND deactivated_at IS NULL")
            .fetch_one(&mut *c)
            .await?
            .try_get("n")?;
    Ok(Some(OwnerGuard {
        active,
        last_owner: active && owner && owners <= 1,
    }))
}
