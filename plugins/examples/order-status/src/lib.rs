//! A power-up: looks an order up in the shop's API (an allow-listed host)
//! and tells the visitor where it is; asks for the number if it has none.
baton_plugin_sdk::power_up!(OrderStatus, "../../../sdk/wit");

use baton_plugin_sdk::serde_json::{self, Value};

struct OrderStatus;

impl Guest for OrderStatus {
    fn describe() -> Descriptor {
        Descriptor {
            name: "order_status".into(),
            description: "Look up where an order is, by its order number.".into(),
            parameters: r#"{"type":"object","properties":{"order_number":{"type":"string","description":"The order number, digits only"}},"required":["order_number"]}"#.into(),
        }
    }

    fn invoke(call: Invocation) -> Step {
        let from_args = serde_json::from_str::<Value>(&call.arguments)
            .ok()
            .and_then(|a| a.get("order_number").and_then(|n| n.as_str()).map(str::to_owned));
        let Some(number) = from_args.or_else(|| order_number(&call.text)) else {
            return if call.turn < 2 {
                Step::Ask("What's your order number? It's in your confirmation email.".into())
            } else {
                Step::Reply("I couldn't find an order number there. Ask me again any time.".into())
            };
        };
        let base = config::get("api_url").unwrap_or_default();
        let request = http::Request {
            method: "GET".into(),
            url: format!("{}/orders/{number}", base.trim_end_matches('/')),
            headers: vec![("accept".into(), "application/json".into())],
            body: None,
        };
        match http::fetch(&request) {
            Ok(r) if r.status == 200 => {
                let order: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                let status = order.get("status").and_then(|s| s.as_str()).unwrap_or("being processed");
                let eta = order.get("eta").and_then(|s| s.as_str()).map(|e| format!(", expected {e}")).unwrap_or_default();
                Step::Reply(format!("Order {number} is {status}{eta}."))
            }
            Ok(r) if r.status == 404 => Step::Reply(format!("I can't find order {number}. Could you check the number?")),
            Ok(r) => failed(format!("the order system answered {}", r.status)),
            Err(e) => failed(e),
        }
    }
}

fn failed(why: String) -> Step {
    log::log(log::Level::Warn, &format!("order lookup failed: {why}"));
    Step::Escalate(Escalation {
        note: Some(format!("Order lookup failed ({why}); please help the visitor.")),
        priority: 0,
        department: None,
        tags: vec!["orders".into()],
    })
}

/// The first run of 4 or more digits ("#10234" → "10234").
fn order_number(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() >= 4)
        .map(str::to_owned)
}
