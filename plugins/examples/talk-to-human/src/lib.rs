//! A power-up: "talk to a human". Asks for the visitor's email address
//! (over as many turns as it takes, twice at most), tells the team, and
//! hands the conversation over.
baton_plugin_sdk::power_up!(TalkToHuman, "../../../sdk/wit");

use baton_plugin_sdk::{find_email, serde_json};

struct TalkToHuman;

impl Guest for TalkToHuman {
    fn describe() -> Descriptor {
        Descriptor {
            name: "talk_to_a_human".into(),
            description: "Hand the conversation to a human agent when the visitor asks for one; collects the visitor's email address first.".into(),
            parameters: r#"{"type":"object","properties":{"email":{"type":"string","description":"The visitor's email address, if they gave it"}}}"#.into(),
        }
    }

    fn invoke(call: Invocation) -> Step {
        let conv = &call.conversation;
        let tries_key = format!("tries:{}", conv.id);
        let known = serde_json::from_str::<serde_json::Value>(&call.arguments)
            .ok()
            .and_then(|a| a.get("email").and_then(|e| e.as_str()).and_then(find_email))
            .or_else(|| find_email(&call.text))
            .or_else(|| conv.contact.email.clone());
        if let Some(email) = known {
            let _ = kv::delete(&tries_key);
            return escalate(conv, Some(email));
        }
        let tries: u32 = kv::get(&tries_key).and_then(|t| t.parse().ok()).unwrap_or(0);
        if call.turn > 0 && tries >= 2 {
            let _ = kv::delete(&tries_key);
            return escalate(conv, None);
        }
        let _ = kv::set(&tries_key, &(tries + 1).to_string());
        Step::Ask(if call.turn == 0 {
            config::get("ask").unwrap_or_else(|| "Sure! What's your email address, so the team can reach you?".into())
        } else {
            "That doesn't look like an email address. Could you type it again?".into()
        })
    }
}

fn escalate(conv: &Conversation, email: Option<String>) -> Step {
    let who = conv.contact.name.clone().unwrap_or_else(|| "A visitor".into());
    let note = match &email {
        Some(e) => format!("{who} asked for a human; email {e}"),
        None => format!("{who} asked for a human; no email given"),
    };
    let to = config::get("notify_email").filter(|e| !e.is_empty());
    if let Err(e) = notify::staff(to.as_deref(), &format!("{note} (conversation {})", conv.id)) {
        log::log(log::Level::Warn, &format!("could not notify: {e}"));
    }
    Step::Escalate(Escalation {
        note: Some(note),
        priority: 1,
        department: None,
        tags: vec!["talk-to-human".into()],
    })
}
