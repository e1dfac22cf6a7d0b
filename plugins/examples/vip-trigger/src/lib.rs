//! A trigger: hands a conversation to a human when the visitor says a
//! keyword ("vip", "urgent" by default) or writes from a VIP address.
baton_plugin_sdk::trigger!(Vip, "../../../sdk/wit");

struct Vip;

impl Guest for Vip {
    fn on_event(event: Event) -> Option<Escalation> {
        let keywords = config::get("keywords").unwrap_or_else(|| "vip,urgent".into());
        let vip_emails = config::get("vip_emails").unwrap_or_default();
        let email = event.conversation.contact.email.unwrap_or_default().to_lowercase();
        let why = if !email.is_empty() && vip_emails.to_lowercase().split(',').any(|e| e.trim() == email) {
            format!("{email} is on the VIP list")
        } else {
            let word = baton_plugin_sdk::find_keyword(&event.text, &keywords)?;
            format!("the visitor said \"{word}\"")
        };
        log::log(log::Level::Info, &format!("escalating: {why}"));
        Some(Escalation {
            note: Some(why),
            priority: 2,
            department: config::get("department").filter(|d| !d.is_empty()),
            tags: vec!["vip".into()],
        })
    }
}
