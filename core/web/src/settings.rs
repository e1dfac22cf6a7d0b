//! The admin pages' data: bot settings, channels and installed plugins.

use crate::AppState;
use crate::auth::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use axum::Json;
use axum::extract::{Path, State};
use baton_model::ChannelKind;
use baton_runtime::config::BotConfig;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A bot's settings: every `[bot.handover]` key as `baton.toml` spells it
/// (durations in seconds), plus `pause_bot_for_seconds` for forms.
fn bot_json(id: &str, bot: &BotConfig) -> Value {
    let h = &bot.handover;
    let mut handover = serde_json::to_value(h).unwrap_or_else(|_| json!({}));
    if let Some(obj) = handover.as_object_mut() {
        obj.insert(
            "pause_bot_for_seconds".into(),
            json!(h.pause_bot_for.as_secs()),
        );
    }
    json!({
        "id": id,
        "name": bot.name,
        "greeting": bot.greeting,
        "handover": handover,
    })
}

pub async fn list_bots(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let bots: Vec<Value> = state
        .runtime()
        .bots()
        .iter()
        .map(|(id, bot)| bot_json(id, bot))
        .collect();
    Ok(Json(json!({ "bots": bots })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BotBody {
    /// Ignored when present (the path names the bot), so a GET body can be sent back.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    greeting: Option<String>,
    #[serde(default)]
    handover: Option<HandoverBody>,
}

/// The form's fields are checked here; every other `[bot.handover]` key
/// (`cycle_count`, `phrases`, `actions`, …) passes through to the settings
/// check, which names what is wrong.
#[derive(Deserialize, Default)]
pub struct HandoverBody {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    monitoring: Option<bool>,
    #[serde(default)]
    request_button_after: Option<u32>,
    #[serde(default)]
    pause_bot_for_seconds: Option<u64>,
    #[serde(default)]
    online_message: Option<String>,
    #[serde(default)]
    offline_message: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

fn text(
    value: Option<String>,
    field: &str,
    max: usize,
    patch: &mut Map<String, Value>,
) -> ApiResult<()> {
    if let Some(v) = value {
        let v = v.trim().to_owned();
        if v.chars().count() > max {
            return Err(ApiError::invalid(format!(
                "{field} must be at most {max} characters"
            )));
        }
        patch.insert(
            field.rsplit('.').next().unwrap_or(field).to_owned(),
            json!(v),
        );
    }
    Ok(())
}

/// `PUT /api/v1/bots/{id}`: changes what is given, keeps the rest.
pub async fn update_bot(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Body(body): Body<BotBody>,
) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let _ = body.id;
    let mut patch = Map::new();
    if let Some(name) = &body.name
        && name.trim().is_empty()
    {
        return Err(ApiError::invalid("name must not be empty"));
    }
    text(body.name, "name", 100, &mut patch)?;
    text(body.greeting, "greeting", 2000, &mut patch)?;
    if let Some(h) = body.handover {
        let mut hp = Map::new();
        if let Some(v) = h.enabled {
            hp.insert("enabled".into(), json!(v));
        }
        if let Some(v) = h.monitoring {
            hp.insert("monitoring".into(), json!(v));
        }
        if let Some(v) = h.request_button_after {
            if v > 100 {
                return Err(ApiError::invalid(
                    "handover.request_button_after must be at most 100",
                ));
            }
            hp.insert("request_button_after".into(), json!(v));
        }
        if let Some(v) = h.pause_bot_for_seconds {
            if v > 30 * 86_400 {
                return Err(ApiError::invalid(
                    "handover.pause_bot_for_seconds must be at most 30 days",
                ));
            }
            hp.insert("pause_bot_for".into(), json!(v));
        }
        text(h.online_message, "handover.online_message", 2000, &mut hp)?;
        text(h.offline_message, "handover.offline_message", 2000, &mut hp)?;
        for (key, value) in h.rest {
            // A form's `pause_bot_for_seconds` (checked above) wins over the raw key.
            if key == "pause_bot_for" && hp.contains_key("pause_bot_for") {
                continue;
            }
            hp.insert(key, value);
        }
        patch.insert("handover".into(), Value::Object(hp));
    }
    let bot = state
        .runtime()
        .update_bot(&id, &Value::Object(patch))
        .await?;
    Ok(Json(json!({ "bot": bot_json(&id, &bot) })))
}

/// `GET /api/v1/channels`: every channel Baton knows, and whether it is on.
pub async fn list_channels(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let on: Vec<ChannelKind> = state
        .runtime()
        .channels()
        .iter()
        .map(|c| c.kind())
        .collect();
    let channels: Vec<Value> = ChannelKind::ALL
        .iter()
        .map(|kind| {
            let enabled = on.contains(kind);
            let detail = match (kind, enabled) {
                (ChannelKind::Web, true) => {
                    "Chat widget: embed /widget.js on your site, or link to /chat/<bot>".to_owned()
                }
                (_, true) => format!("Configured under [channels.{kind}] in baton.toml"),
                (_, false) => "Not available in this build yet".to_owned(),
            };
            json!({"kind": kind, "enabled": enabled, "detail": detail})
        })
        .collect();
    Ok(Json(json!({ "channels": channels })))
}

/// `GET /api/v1/plugins`: every plugin folder, loaded or not, with its
/// state (`on`, `off`, `switched_off`, `error`), counters and last error.
pub async fn list_plugins(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let plugins = state
        .runtime()
        .plugins()
        .map(|host| host.list())
        .unwrap_or_default();
    Ok(Json(json!({
        "plugins": plugins,
        "dir": state.inner.options.plugins_dir.as_ref().map(|d| d.display().to_string()),
    })))
}

/// `GET /api/v1/plugins/{id}`.
pub async fn get_plugin(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let status = state
        .runtime()
        .plugins()
        .and_then(|host| host.status(&id))
        .ok_or(ApiError::not_found("plugin"))?;
    Ok(Json(json!(status)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginPatch {
    enabled: bool,
}

/// `PATCH /api/v1/plugins/{id}` `{"enabled": bool}`: switches a plugin on
/// or off (on again also clears an automatic switch-off). Kept across restarts.
pub async fn switch_plugin(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Body(patch): Body<PluginPatch>,
) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let runtime = state.runtime();
    let host = runtime.plugins().ok_or(ApiError::not_found("plugin"))?;
    host.status(&id)
        .filter(|s| s.state != "error")
        .ok_or(ApiError::not_found("plugin"))?;
    runtime
        .store()
        .switch_plugin(&id, patch.enabled, runtime.now())
        .await?;
    host.switch(&id, patch.enabled)
        .map_err(|_| ApiError::not_found("plugin"))?;
    let status = host.status(&id).ok_or(ApiError::not_found("plugin"))?;
    Ok(Json(json!(status)))
}
