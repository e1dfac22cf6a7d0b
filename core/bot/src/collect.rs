//! The contact info collector (seed 000), sans-IO: before a hand-over, ask
//! for the visitor's email (and, when configured, name and phone) unless the
//! contact already has them; validate each answer; then hand over.
//!
//! The email is what the team needs to answer later, so an invalid one is
//! asked again, but never more than [`MAX_TRIES`] times: a visitor who wants
//! a human is not held hostage by a form. Name and phone may be skipped.

use serde::{Deserialize, Serialize};

/// How many answers to one question are read before moving on without it.
pub const MAX_TRIES: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactField {
    Email,
    Name,
    Phone,
}

/// Which details the contact already has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Known {
    pub email: bool,
    pub name: bool,
    pub phone: bool,
}

impl Known {
    fn has(self, f: ContactField) -> bool {
        match f {
            ContactField::Email => self.email,
            ContactField::Name => self.name,
            ContactField::Phone => self.phone,
        }
    }
}

/// A hand-over waiting for the visitor's details: stored on the conversation between turns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collecting {
    /// The hand-over reason to use once done.
    pub reason: String,
    pub topic: Option<String>,
    pub asking: ContactField,
    pub tries: u32,
}

/// Details to save on the contact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactUpdate {
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
}

/// What the collector does after an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Ask (again, or the next question).
    Ask { state: Collecting, question: String },
    /// Everything asked: hand over with the pending reason.
    HandOver {
        reason: String,
        topic: Option<String>,
        said: String,
    },
}

fn question(field: ContactField) -> String {
    match field {
        ContactField::Email => {
            "Before I hand you over: what's your email address? The team will use it to get \
             back to you if we get cut off."
        }
        ContactField::Name => "And what's your name? (You can say skip.)",
        ContactField::Phone => "Is there a phone number we can reach you on? (You can say skip.)",
    }
    .to_owned()
}

fn next_missing(
    fields: &[ContactField],
    known: Known,
    after: Option<ContactField>,
) -> Option<ContactField> {
    let start = after
        .and_then(|a| fields.iter().position(|f| *f == a))
        .map_or(0, |i| i + 1);
    fields[start.min(fields.len())..]
        .iter()
        .copied()
        .find(|f| !known.has(*f))
}

/// Starts collecting before a hand-over, or `None` when nothing is missing.
pub fn start(
    fields: &[ContactField],
    known: Known,
    reason: &str,
    topic: Option<String>,
) -> Option<Next> {
    let asking = next_missing(fields, known, None)?;
    Some(Next::Ask {
        state: Collecting {
            reason: reason.to_owned(),
            topic,
            asking,
            tries: 0,
        },
        question: question(asking),
    })
}

/// Reads the visitor's answer to the pending question.
pub fn answer(
    state: &Collecting,
    fields: &[ContactField],
    mut known: Known,
    text: &str,
) -> (ContactUpdate, Next) {
    let text = text.trim();
    let mut update = ContactUpdate::default();
    let skipped = is_skip(text);
    let accepted = match state.asking {
        ContactField::Email if valid_email(text) => {
            update.email = Some(text.to_lowercase());
            true
        }
        ContactField::Name if !skipped && valid_name(text) => {
            update.name = Some(text.to_owned());
            true
        }
        ContactField::Phone if !skipped && valid_phone(text) => {
            update.phone = Some(text.to_owned());
            true
        }
        _ => false,
    };
    let optional = state.asking != ContactField::Email;
    let moves_on = accepted || (optional && skipped);
    if !moves_on && state.tries + 1 < MAX_TRIES {
        let retry = match state.asking {
            ContactField::Email => {
                "That doesn't look like an email address. Could you check it? (Like jane@example.com)"
            }
            ContactField::Name => "Sorry, what name should the team use? (You can say skip.)",
            ContactField::Phone => "That doesn't look like a phone number. Try again, or say skip.",
        };
        let state = Collecting {
            tries: state.tries + 1,
            ..state.clone()
        };
        return (
            update,
            Next::Ask {
                state,
                question: retry.to_owned(),
            },
        );
    }
    // Accepted, skipped, or out of tries: move on either way.
    match state.asking {
        ContactField::Email => known.email = true,
        ContactField::Name => known.name = true,
        ContactField::Phone => known.phone = true,
    }
    let next = match next_missing(fields, known, Some(state.asking)) {
        Some(asking) => Next::Ask {
            state: Collecting {
                reason: state.reason.clone(),
                topic: state.topic.clone(),
                asking,
                tries: 0,
            },
            // Thank them only for an answer that was kept.
            question: if accepted {
                format!("Thanks! {}", question(asking))
            } else {
                question(asking)
            },
        },
        None => Next::HandOver {
            reason: state.reason.clone(),
            topic: state.topic.clone(),
            said: if update.email.is_some() || update.name.is_some() || update.phone.is_some() {
                "Thank you!".to_owned()
            } else {
                "No problem.".to_owned()
            },
        },
    };
    (update, next)
}

fn is_skip(text: &str) -> bool {
    let t = text.trim().trim_end_matches(['.', '!']).to_lowercase();
    matches!(
        t.as_str(),
        "skip" | "no" | "no thanks" | "nope" | "-" | "none" | "n/a"
    )
}

/// A plausible email address: one `@`, a dotted domain, no spaces, at most 254 bytes.
pub fn valid_email(email: &str) -> bool {
    let email = email.trim();
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=100).contains(&n) && !name.chars().any(char::is_control)
}

fn valid_phone(phone: &str) -> bool {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    (6..=20).contains(&digits)
        && phone
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContactField::*;

    fn asking(next: &Next) -> Option<ContactField> {
        match next {
            Next::Ask { state, .. } => Some(state.asking),
            Next::HandOver { .. } => None,
        }
    }

    #[test]
    fn nothing_is_asked_when_the_contact_is_known() {
        let known = Known {
            email: true,
            name: true,
            phone: false,
        };
        assert!(start(&[Email, Name], known, "visitor_request", None).is_none());
        assert_eq!(
            asking(&start(&[Email, Phone], known, "x", None).unwrap()),
            Some(Phone)
        );
    }

    #[test]
    fn email_then_name_then_hand_over() {
        let fields = [Email, Name];
        let Next::Ask { state, .. } =
            start(&fields, Known::default(), "bot_failure", None).unwrap()
        else {
            panic!()
        };
        let (u, next) = answer(&state, &fields, Known::default(), "not an email");
        assert_eq!(u, ContactUpdate::default());
        let Next::Ask { state, .. } = next else {
            panic!()
        };
        assert_eq!((state.asking, state.tries), (Email, 1));
        let (u, next) = answer(&state, &fields, Known::default(), " Jane@Example.com ");
        assert_eq!(u.email.as_deref(), Some("jane@example.com"));
        let Next::Ask { state, .. } = next else {
            panic!()
        };
        assert_eq!(state.asking, Name);
        let known = Known {
            email: true,
            ..Known::default()
        };
        let (u, next) = answer(&state, &fields, known, "skip");
        assert_eq!(u.name, None);
        assert!(matches!(next, Next::HandOver { ref reason, .. } if reason == "bot_failure"));
    }

    #[test]
    fn two_wrong_emails_hand_over_anyway() {
        let state = Collecting {
            reason: "r".into(),
            topic: None,
            asking: Email,
            tries: 1,
        };
        let (_, next) = answer(&state, &[Email], Known::default(), "still wrong");
        assert!(matches!(next, Next::HandOver { .. }));
    }

    #[test]
    fn validation() {
        assert!(valid_email("a@b.co"));
        for bad in ["a@b", "@b.co", "a b@c.de", "a@@b.co", "a@b.co>", ""] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(valid_phone("+49 (30) 123-4567"));
        assert!(!valid_phone("call me"));
        assert!(!valid_phone("123"));
    }
}
