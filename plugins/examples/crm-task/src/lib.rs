//! An action: creates a follow-up task in a CRM-like API after a hand-over.
//! Retried with back-off on 5xx or network errors; the idempotency key lets
//! the CRM drop duplicates.
baton_plugin_sdk::action!(CrmTask, "../../../sdk/wit");

use baton_plugin_sdk::serde_json::{self, json};

struct CrmTask;

impl Guest for CrmTask {
    fn run(job: Job) -> Outcome {
        let Some(endpoint) = config::get("endpoint").filter(|e| !e.is_empty()) else {
            return Outcome::Failed("no `endpoint` configured".into());
        };
        let contact = &job.conversation.contact;
        let body = json!({
            "title": format!("Follow up: {} ({})", contact.name.as_deref().unwrap_or("visitor"), job.reason),
            "conversation_id": job.conversation.id,
            "channel": job.conversation.channel,
            "reason": job.reason,
            "contact": { "name": contact.name, "email": contact.email },
            "idempotency_key": job.idempotency_key,
        });
        let mut headers = vec![
            ("content-type".into(), "application/json".into()),
            ("idempotency-key".into(), job.idempotency_key.clone()),
        ];
        if let Some(token) = config::secret("token") {
            headers.push(("authorization".into(), format!("Bearer {token}")));
        }
        let request = http::Request { method: "POST".into(), url: endpoint, headers, body: Some(body.to_string()) };
        match http::fetch(&request) {
            Ok(r) if (200..300).contains(&r.status) => {
                let id = serde_json::from_str::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("id").map(|i| i.to_string().trim_matches('"').to_owned()));
                Outcome::Done(match id {
                    Some(id) => format!("CRM task {id} created"),
                    None => "CRM task created".into(),
                })
            }
            Ok(r) if r.status >= 500 || r.status == 429 => Outcome::Retry(format!("CRM answered {}", r.status)),
            Ok(r) => Outcome::Failed(format!("CRM refused the task: {} {}", r.status, r.body.chars().take(200).collect::<String>())),
            Err(e) => Outcome::Retry(e),
        }
    }
}
