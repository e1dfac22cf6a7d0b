//! An action: tags a handed-over conversation and tells the team.
baton_plugin_sdk::action!(TagNotify, "../../../sdk/wit");

struct TagNotify;

impl Guest for TagNotify {
    fn run(job: Job) -> Outcome {
        let tag = config::get("tag").filter(|t| !t.is_empty()).unwrap_or_else(|| "handed-over".into());
        if let Err(e) = tags::add(&tag) {
            return Outcome::Retry(format!("could not tag: {e}"));
        }
        let to = config::get("notify_email").filter(|e| !e.is_empty());
        let who = job.conversation.contact.name.as_deref().unwrap_or("A visitor");
        let text = format!("{who} was handed over ({}) on {}", job.reason, job.conversation.channel);
        match notify::staff(to.as_deref(), &text) {
            Ok(()) => Outcome::Done(format!("tagged `{tag}`, team notified")),
            Err(e) => Outcome::Failed(format!("tagged `{tag}`, but could not notify: {e}")),
        }
    }
}
