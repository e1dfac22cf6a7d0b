//! Webhook subscriptions, their delivery log, and the hand-over report.

use crate::AppState;
use crate::auth::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Q};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_model::{EventKind, Timestamp};
use baton_store::{NewWebhook, Webhook};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

fn webhook_json(w: &Webhook) -> Value {
    // The secret is write-only: it is never shown again.
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "active": w.active,
        "created_at": w.created_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    url: String,
    events: Vec<String>,
    secret: String,
}

pub async fn create_webhook(
    State(state): State<AppState>,
    staff: Staff,
    Body(body): Body<WebhookBody>,
) -> ApiResult<Response> {
    staff.require_admin()?;
    if body.events.is_empty() {
        return Err(ApiError::invalid(
            "events must name at least one event type, or \"*\"",
        ));
    }
    for e in &body.events {
        if e != "*" && EventKind::parse(e).is_none() {
            let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(ApiError::invalid(format!(
                "unknown event type `{e}`, expected \"*\" or one of: {}",
                known.join(", ")
            )));
        }
    }
    if body.secret.len() < 8 || body.secret.len() > 256 {
        return Err(ApiError::invalid("secret must be 8 to 256 bytes"));
    }
    // Last, as it may ask DNS.
    let url = state
        .runtime()
        .outbound_policy()
        .check_url(&body.url)
        .await
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let hook = state
        .runtime()
        .store()
        .create_webhook(
            NewWebhook {
                url: &url,
                events: &body.events,
                secret: &body.secret,
            },
            state.runtime().now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"webhook": webhook_json(&hook)})),
    )
        .into_response())
}

pub async fn list_webhooks(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let hooks = state.runtime().store().webhooks().await?;
    Ok(Json(
        json!({"webhooks": hooks.iter().map(webhook_json).collect::<Vec<_>>()}),
    ))
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    staff.require_admin()?;
    if state.runtime().store().delete_webhook(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

pub async fn deliveries(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let store = state.runtime().store();
    if store.webhook(&id).await?.is_none() {
        return Err(ApiError::not_found("webhook"));
    }
    let list = store.deliveries(&id, 200).await?;
    let rows: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "event_id": d.event_id,
                "event_type": d.event_type,
                "status": d.status.as_str(),
                "attempts": d.attempts,
                "last_status": d.last_status,
                "last_error": d.last_error,
                "next_attempt_at": (d.status == baton_store::DeliveryStatus::Pending).then_some(d.next_attempt_at),
                "delivered_at": d.delivered_at,
                "created_at": d.created_at,
            })
        })
        .collect();
    Ok(Json(json!({"deliveries": rows})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// One hand-over in the CSV export.
struct ReportRow {
    event_id: String,
    conversation_id: String,
    reason: String,
    channel: String,
    department: String,
    at: Timestamp,
    claimed_after_seconds: Option<f64>,
    /// When the conversation started (containment counts those started in range).
    started_at: Timestamp,
}

struct Report {
    from: Timestamp,
    to: Timestamp,
    total: usize,
    by_reason: BTreeMap<String, usize>,
    by_channel: BTreeMap<String, usize>,
    by_department: BTreeMap<String, usize>,
    /// Per UTC day: `(total, by reason)`.
    by_day: BTreeMap<String, (usize, BTreeMap<String, usize>)>,
    rows: Vec<ReportRow>,
    claim_seconds: Vec<f64>,
    /// Who claimed each conversation (the latest claim in range).
    claimed_by: HashMap<String, (String, String)>,
}

fn parse_bound(value: Option<&str>, field: &str, default: Timestamp) -> ApiResult<Timestamp> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => Timestamp::parse_rfc3339(v)
            .or_else(|| {
                // A bare date means midnight UTC.
                Timestamp::parse_rfc3339(&format!("{v}T00:00:00Z"))
            })
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{field}` must be an RFC 3339 time or a date, got `{v}`"
                ))
            }),
    }
}

async fn build_report(state: &AppState, q: &RangeQuery) -> ApiResult<Report> {
    let now = state.runtime().now();
    let to = parse_bound(q.to.as_deref(), "to", now.plus_millis(1))?;
    let from = parse_bound(q.from.as_deref(), "from", to.plus_millis(-30 * 86_400_000))?;
    if from > to {
        return Err(ApiError::bad_request("`from` must not be after `to`"));
    }
    let events = state
        .runtime()
        .store()
        .events_of_kinds(
            &[EventKind::Escalated, EventKind::Claimed],
            from,
            to.plus_millis(365 * 86_400_000),
        )
        .await?;
    // A hand-over is an escalation, or a claim straight from `bot` (a takeover).
    let mut claims: HashMap<&str, Vec<Timestamp>> = HashMap::new();
    for e in &events {
        if e.envelope.kind == EventKind::Claimed {
            claims
                .entry(&e.envelope.data.conversation.id)
                .or_default()
                .push(e.envelope.created_at);
        }
    }
    let mut report = Report {
        from,
        to,
        total: 0,
        by_reason: BTreeMap::new(),
        by_channel: BTreeMap::new(),
        by_department: BTreeMap::new(),
        by_day: BTreeMap::new(),
        rows: vec![],
        claim_seconds: vec![],
        claimed_by: HashMap::new(),
    };
    for e in &events {
        let env = &e.envelope;
        if env.kind == EventKind::Claimed
            && env.created_at >= from
            && env.created_at < to
            && let Some(a) = &env.data.conversation.assignee
        {
            report.claimed_by.insert(
                env.data.conversation.id.clone(),
                (a.id.clone(), a.name.clone()),
            );
        }
    }
    for e in &events {
        let env = &e.envelope;
        if env.created_at < from || env.created_at >= to {
            continue;
        }
        let conv = &env.data.conversation;
        let Some(handover) = &conv.handover else {
            continue;
        };
        let is_handover = match env.kind {
            EventKind::Escalated => true,
            // A claim whose hand-over happened at the same instant was a takeover.
            EventKind::Claimed => handover.at == env.created_at,
            _ => false,
        };
        if !is_handover {
            continue;
        }
        let claimed_after = claims
            .get(conv.id.as_str())
            .and_then(|ts| ts.iter().find(|t| **t >= env.created_at))
            .map(|t| t.since(env.created_at) as f64 / 1000.0);
        if let Some(s) = claimed_after {
            report.claim_seconds.push(s);
        }
        report.total += 1;
        *report.by_reason.entry(handover.reason.clone()).or_default() += 1;
        *report
            .by_channel
            .entry(conv.channel.to_string())
            .or_default() += 1;
        *report
            .by_department
            .entry(conv.department.clone().unwrap_or_else(|| "none".to_owned()))
            .or_default() += 1;
        let day: String = env.created_at.to_rfc3339().chars().take(10).collect();
        let bucket = report.by_day.entry(day).or_default();
        bucket.0 += 1;
        *bucket.1.entry(handover.reason.clone()).or_default() += 1;
        report.rows.push(ReportRow {
            event_id: env.id.clone(),
            conversation_id: conv.id.clone(),
            reason: handover.reason.clone(),
            channel: conv.channel.to_string(),
            department: conv.department.clone().unwrap_or_default(),
            at: env.created_at,
            claimed_after_seconds: claimed_after,
            started_at: conv.created_at,
        });
    }
    Ok(report)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

fn timing(mut seconds: Vec<f64>) -> Value {
    seconds.sort_by(f64::total_cmp);
    json!({
        "count": seconds.len(),
        "p50_seconds": percentile(&seconds, 50.0),
        "p90_seconds": percentile(&seconds, 90.0),
        "mean_seconds": (!seconds.is_empty()).then(|| seconds.iter().sum::<f64>() / seconds.len() as f64),
    })
}

/// `GET /api/v1/reports/handovers?from&to`: hand-overs by reason, channel,
/// department and day; time to claim, first response and resolution;
/// workload per agent; how many conversations the bot handled alone.
pub async fn handover_report(
    State(state): State<AppState>,
    _staff: Staff,
    Q(q): Q<RangeQuery>,
) -> ApiResult<Json<Value>> {
    let r = build_report(&state, &q).await?;
    let store = state.runtime().store();
    let times = store.handover_times(r.from, r.to).await?;
    let secs = |a: Timestamp, b: Timestamp| b.since(a) as f64 / 1000.0;
    let first_response: Vec<f64> = times
        .iter()
        .filter_map(|t| {
            t.first_agent_reply_at
                .filter(|f| *f >= t.handover_at)
                .map(|f| secs(t.handover_at, f))
        })
        .collect();
    let resolution: Vec<f64> = times
        .iter()
        .filter_map(|t| {
            t.resolved_at
                .filter(|f| *f >= t.handover_at)
                .map(|f| secs(t.handover_at, f))
        })
        .collect();

    // Workload: conversations each agent claimed in the range, what they hold
    // now, and how quickly they first answered the ones they claimed.
    let load = store.active_load().await?;
    let mut workload: BTreeMap<String, (String, usize, Vec<f64>)> = BTreeMap::new();
    for (conv_id, (agent_id, name)) in &r.claimed_by {
        let entry = workload
            .entry(agent_id.clone())
            .or_insert_with(|| (name.clone(), 0, vec![]));
        entry.1 += 1;
        if let Some(t) = times.iter().find(|t| t.conversation_id == *conv_id)
            && let (Some(claimed), Some(first)) = (t.claimed_at, t.first_agent_reply_at)
            && first >= claimed
        {
            entry.2.push(secs(claimed, first));
        }
    }
    for user in store.list_users().await? {
        if user.role.may_respond() {
            workload
                .entry(user.id.clone())
                .or_insert_with(|| (user.name.clone(), 0, vec![]));
        }
    }
    let workload: Vec<Value> = workload
        .into_iter()
        .map(|(id, (name, claimed, first))| {
            json!({
                "agent": {"id": id, "name": name},
                "claimed": claimed,
                "active_now": load.get(&id).copied().unwrap_or(0),
                "first_response": timing(first),
            })
        })
        .collect();

    let started = store.started_count(r.from, r.to).await?;
    // Of the conversations started in the range, those handed over in it.
    let handed_over: std::collections::HashSet<&str> = r
        .rows
        .iter()
        .filter(|row| row.started_at >= r.from && row.started_at < r.to)
        .map(|row| row.conversation_id.as_str())
        .collect();
    let contained = (started - handed_over.len() as i64).max(0);
    let over_time: Vec<Value> = r
        .by_day
        .iter()
        .map(|(day, (total, reasons))| json!({"date": day, "total": total, "by_reason": reasons}))
        .collect();
    Ok(Json(json!({
        "from": r.from,
        "to": r.to,
        "total": r.total,
        "by_reason": r.by_reason,
        "by_channel": r.by_channel,
        "by_department": r.by_department,
        "over_time": over_time,
        "time_to_claim": timing(r.claim_seconds.clone()),
        "time_to_first_response": timing(first_response),
        "time_to_resolution": timing(resolution),
        "workload": workload,
        "containment": {
            "conversations": started,
            "handed_over": handed_over.len(),
            "contained": contained,
            "rate": (started > 0).then(|| contained as f64 / started as f64),
        },
    })))
}

pub async fn handover_report_csv(
    State(state): State<AppState>,
    _staff: Staff,
    Q(q): Q<RangeQuery>,
) -> ApiResult<Response> {
    let r = build_report(&state, &q).await?;
    let times: HashMap<String, baton_store::HandoverTimes> = state
        .runtime()
        .store()
        .handover_times(r.from, r.to)
        .await?
        .into_iter()
        .map(|t| (t.conversation_id.clone(), t))
        .collect();
    let mut out = String::from(
        "event_id,conversation_id,reason,channel,department,escalated_at,time_to_claim_seconds,\
         claimed_by,time_to_first_response_seconds,time_to_resolution_seconds\n",
    );
    let seconds = |s: Option<f64>| s.map(|s| format!("{s:.3}")).unwrap_or_default();
    for row in &r.rows {
        // Later timings belong to the conversation's latest hand-over only.
        let t = times
            .get(&row.conversation_id)
            .filter(|t| t.handover_at == row.at);
        let after = |x: Option<Timestamp>| {
            x.filter(|x| *x >= row.at)
                .map(|x| x.since(row.at) as f64 / 1000.0)
        };
        let claimed_by = r
            .claimed_by
            .get(&row.conversation_id)
            .map(|(_, name)| name.as_str())
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            csv(&row.event_id),
            csv(&row.conversation_id),
            csv(&row.reason),
            csv(&row.channel),
            csv(&row.department),
            row.at,
            seconds(row.claimed_after_seconds),
            csv(claimed_by),
            seconds(t.and_then(|t| after(t.first_agent_reply_at))),
            seconds(t.and_then(|t| after(t.resolved_at))),
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"handovers.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// Quotes a CSV field when needed and defuses spreadsheet formulas.
fn csv(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@']) {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}
