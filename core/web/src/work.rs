//! What follows a hand-over, for staff: tasks, notifications, the log of
//! post-hand-over actions; plus departments and the knowledge-base editor.

use crate::AppState;
use crate::auth::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Q};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_bot::kb::{Button, Entry};
use baton_store::{Notification, Task};
use serde::Deserialize;
use serde_json::{Value, json};

fn task_json(t: &Task, names: &std::collections::HashMap<String, String>) -> Value {
    json!({
        "id": t.id,
        "conversation_id": t.conversation_id,
        "title": t.title,
        "description": t.description,
        "assignee": t.assignee_id.as_ref().map(|id| json!({
            "id": id,
            "name": names.get(id).cloned().unwrap_or_default(),
        })),
        "due_at": t.due_at,
        "done": t.done,
        "created_at": t.created_at,
        "done_at": t.done_at,
    })
}

fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "kind": n.kind,
        "conversation_id": n.conversation_id,
        "task_id": n.task_id,
        "text": n.text,
        "created_at": n.created_at,
        "read": n.read_at.is_some(),
    })
}

async fn user_names(state: &AppState) -> ApiResult<std::collections::HashMap<String, String>> {
    Ok(state
        .runtime()
        .store()
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksQuery {
    /// `me` (default), `any`, or a user id.
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
    /// Include finished tasks. Default false.
    #[serde(default)]
    done: Option<bool>,
}

/// `GET /api/v1/tasks?assignee=me|any|<id>&conversation_id&done`: open tasks, soonest due first.
pub async fn list_tasks(
    State(state): State<AppState>,
    staff: Staff,
    Q(q): Q<TasksQuery>,
) -> ApiResult<Json<Value>> {
    let assignee = match q.assignee.as_deref() {
        None | Some("me") => Some(staff.user.id.clone()),
        Some("any") => None,
        Some(id) => Some(id.to_owned()),
    };
    let tasks = state
        .runtime()
        .store()
        .tasks(
            assignee.as_deref(),
            q.conversation_id.as_deref(),
            q.done.unwrap_or(false),
        )
        .await?;
    let names = user_names(&state).await?;
    let tasks: Vec<Value> = tasks.iter().map(|t| task_json(t, &names)).collect();
    Ok(Json(json!({ "tasks": tasks })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    done: bool,
}

/// `PATCH /api/v1/tasks/{id}` `{"done"}`.
pub async fn update_task(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Body(body): Body<TaskPatch>,
) -> ApiResult<Json<Value>> {
    staff.require_responder()?;
    let store = state.runtime().store();
    store
        .task(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    store
        .set_task_done(&id, body.done, state.runtime().now())
        .await?;
    let task = store
        .task(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    let names = user_names(&state).await?;
    Ok(Json(json!({ "task": task_json(&task, &names) })))
}

/// `GET /api/v1/notifications`: the signed-in user's, newest first, with the unread count.
pub async fn list_notifications(
    State(state): State<AppState>,
    staff: Staff,
) -> ApiResult<Json<Value>> {
    let list = state
        .runtime()
        .store()
        .notifications(&staff.user.id, 100)
        .await?;
    let unread = list.iter().filter(|n| n.read_at.is_none()).count();
    let list: Vec<Value> = list.iter().map(notification_json).collect();
    Ok(Json(json!({ "notifications": list, "unread": unread })))
}

/// `POST /api/v1/notifications/read`: marks them all read.
pub async fn read_notifications(
    State(state): State<AppState>,
    staff: Staff,
) -> ApiResult<Response> {
    state
        .runtime()
        .store()
        .read_notifications(&staff.user.id, state.runtime().now())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/conversations/{id}/actions`: the post-hand-over actions that ran, in order.
pub async fn action_runs(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.runtime().conversation(&id).await?;
    let runs = state.runtime().store().action_runs(&id).await?;
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "position": r.position,
                "action": r.action,
                "ok": r.ok,
                "detail": r.detail,
                "at": r.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "actions": runs })))
}

/// `GET /api/v1/departments`: each with its hours, whether it is open now,
/// and whether someone can take a hand-over there.
pub async fn list_departments(
    State(state): State<AppState>,
    _staff: Staff,
) -> ApiResult<Json<Value>> {
    let rt = state.runtime();
    let mut out = vec![];
    for d in &rt.config().departments {
        out.push(json!({
            "id": d.id,
            "name": d.display_name(),
            "timezone": d.timezone,
            "hours": d.hours,
            "assignment": d.assignment,
            "topics": d.topics,
            "open": rt.department_open(Some(&d.id)),
            "availability": rt.availability(Some(&d.id)).await?,
        }));
    }
    Ok(Json(json!({ "departments": out })))
}

/// `GET /api/v1/bots/{id}/knowledge`: the entries the bot answers from.
pub async fn list_knowledge(
    State(state): State<AppState>,
    staff: Staff,
    Path(bot): Path<String>,
) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let entries = state.runtime().knowledge_entries(&bot).await?;
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    question: String,
    answer: String,
    #[serde(default)]
    alternatives: Vec<String>,
    #[serde(default)]
    buttons: Vec<Button>,
    #[serde(default)]
    handover: bool,
    /// Ignored when present: the path names the entry.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// `PUT /api/v1/bots/{id}/knowledge/{entry}`: adds or replaces an entry; live at once.
pub async fn put_knowledge(
    State(state): State<AppState>,
    staff: Staff,
    Path((bot, entry_id)): Path<(String, String)>,
    Body(body): Body<EntryBody>,
) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let _ = (body.id, body.source);
    let ok_id = !entry_id.is_empty()
        && entry_id.len() <= 100
        && entry_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok_id {
        return Err(ApiError::invalid(
            "an entry id is 1 to 100 letters, digits, `-`, `_` or `.`",
        ));
    }
    let too_long = body.question.chars().count() > 500
        || body.answer.chars().count() > 10_000
        || body.alternatives.len() > 50
        || body.buttons.len() > 10;
    if too_long {
        return Err(ApiError::invalid(
            "an entry takes a question up to 500 characters, an answer up to 10,000, \
             50 alternatives and 10 buttons",
        ));
    }
    let entry = Entry {
        id: entry_id,
        question: body.question,
        alternatives: body.alternatives,
        answer: body.answer,
        buttons: body.buttons,
        handover: body.handover,
    };
    let entry = state.runtime().put_knowledge_entry(&bot, entry).await?;
    Ok(Json(json!({ "entry": entry })))
}

/// `DELETE /api/v1/bots/{id}/knowledge/{entry}`.
pub async fn delete_knowledge(
    State(state): State<AppState>,
    staff: Staff,
    Path((bot, entry_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    staff.require_admin()?;
    state
        .runtime()
        .delete_knowledge_entry(&bot, &entry_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
