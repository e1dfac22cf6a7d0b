//! The built-in bot, sans-IO: given the visitor's messages since the last
//! hand-over and the new one, what to answer and whether to hand over.

use crate::kb::{KnowledgeBase, Phrases, Query, default_phrases};
use crate::text::{is_question, normalized};
use crate::triggers::{Counters, TriggerConfig, TurnFacts, Understanding, assess, replay};
use baton_model::{Action, ActionKind, Reason};
use vader_sentimental::SentimentIntensityAnalyzer;

/// At or above this confidence the best entry is the answer.
pub const ANSWER_CONFIDENCE: f64 = 0.5;
/// For a question, at or above this (and below the answer bar) the topic is
/// known but unanswered. A statement that falls short is not understood.
pub const TOPIC_CONFIDENCE: f64 = 0.25;
/// How close a message must be to an intent's example.
pub const INTENT_CONFIDENCE: f64 = 0.6;

/// One message the bot proposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    pub text: String,
    pub actions: Vec<Action>,
}

/// The bot's proposal for one turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub messages: Vec<Said>,
    pub escalate: Option<Reason>,
    /// What the message is about (an intent id, else the closest entry's id):
    /// routes the hand-over to a department and to the agents who know it.
    pub topic: Option<String>,
}

/// A message as the bot read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub facts: TurnFacts,
    /// The knowledge-base entry that answers it.
    pub answer: Option<usize>,
    pub confidence: f64,
    /// The closest entries, best first (at most three): suggestions when not understood.
    pub hits: Vec<crate::kb::Hit>,
}

/// The knowledge-base bot.
pub struct BuiltinBot {
    kb: std::sync::Arc<KnowledgeBase>,
    /// The phrases, normalized once (see [`normalized`]).
    human: Vec<String>,
    unhelpful: Vec<String>,
    sentiment: SentimentIntensityAnalyzer<'static>,
}

impl std::fmt::Debug for BuiltinBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinBot").field("kb", &self.kb).finish()
    }
}

fn request_human_button() -> Action {
    Action {
        id: "request_human".to_owned(),
        label: "Talk to a human".to_owned(),
        kind: ActionKind::RequestHuman,
        url: None,
    }
}

impl BuiltinBot {
    /// A bot over `kb`, which knows the default "talk to a human" and "that
    /// didn't help" phrases plus `extra_human_phrases`.
    pub fn new(kb: KnowledgeBase, extra_human_phrases: &[String]) -> Self {
        Self::over(std::sync::Arc::new(kb), extra_human_phrases)
    }

    /// The same knowledge base with other extra "talk to a human" phrases
    /// (an admin changed them): the index is shared, not rebuilt.
    pub fn with_phrases(&self, extra_human_phrases: &[String]) -> Self {
        Self::over(self.kb.clone(), extra_human_phrases)
    }

    fn over(kb: std::sync::Arc<KnowledgeBase>, extra_human_phrases: &[String]) -> Self {
        let mut phrases: Phrases = default_phrases();
        phrases.human.extend(extra_human_phrases.iter().cloned());
        let prepare = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|p| normalized(p))
                .filter(|p| !p.trim().is_empty())
                .collect()
        };
        Self {
            kb,
            human: prepare(&phrases.human),
            unhelpful: prepare(&phrases.unhelpful),
            sentiment: SentimentIntensityAnalyzer::new(),
        }
    }

    pub fn knowledge(&self) -> &KnowledgeBase {
        &self.kb
    }

    /// What one message says.
    pub fn read(&self, text: &str) -> Reading {
        let query = Query::new(text);
        let norm = query.normalized();
        let asks_for_human = self.human.iter().any(|p| norm.contains(p.as_str()));
        let unhelpful = self.unhelpful.iter().any(|p| norm.contains(p.as_str()));
        let sentiment = self.sentiment.polarity_scores(text).compound;
        let intent = self.kb.intent_in(&query, INTENT_CONFIDENCE).map(|i| i.id);
        let hits = self.kb.search_in(&query, 3);
        let best = hits.first();
        let confidence = best.map_or(0.0, |h| h.confidence);
        let answer = best
            .filter(|h| h.confidence >= ANSWER_CONFIDENCE)
            .map(|h| h.entry);
        let understanding = if asks_for_human || unhelpful || answer.is_some() {
            Understanding::Answered
        } else if intent.is_some()
            || (is_question(text)
                && (confidence >= TOPIC_CONFIDENCE || self.kb.knows_topic_in(&query)))
        {
            Understanding::NoInformation
        } else {
            Understanding::NotUnderstood
        };
        let handover_answer = answer.is_some_and(|i| self.kb.entry(i).handover);
        Reading {
            facts: TurnFacts {
                understanding,
                asks_for_human,
                unhelpful,
                sentiment,
                intent,
                handover_answer,
            },
            answer,
            confidence,
            hits,
        }
    }

    /// The answer to `text`, given the visitor's earlier messages since the
    /// last hand-over (oldest first). The runtime keeps the counters instead
    /// and calls [`BuiltinBot::respond_with`]; this replays them.
    pub fn respond(&self, cfg: &TriggerConfig, earlier: &[&str], text: &str) -> Reply {
        let history: Vec<TurnFacts> = earlier.iter().map(|t| self.read(t).facts).collect();
        let counters = replay(cfg, &history);
        self.respond_with(cfg, counters, text).0
    }

    /// The answer to `text` given the trigger counters since the last
    /// hand-over, and the counters after this turn.
    pub fn respond_with(
        &self,
        cfg: &TriggerConfig,
        counters: Counters,
        text: &str,
    ) -> (Reply, Counters) {
        let reading = self.read(text);
        let verdict = assess(cfg, counters, &reading.facts);
        let after = verdict.counters;
        (self.reply(cfg, reading, verdict), after)
    }

    fn reply(
        &self,
        cfg: &TriggerConfig,
        reading: Reading,
        verdict: crate::triggers::Verdict,
    ) -> Reply {
        let topic = reading.facts.intent.clone().or_else(|| {
            reading
                .hits
                .first()
                .filter(|h| h.confidence >= TOPIC_CONFIDENCE)
                .map(|h| self.kb.entry(h.entry).id.clone())
        });
        let say = |text: &str, actions: Vec<Action>| Said {
            text: text.to_owned(),
            actions,
        };

        if let Some(reason) = verdict.escalate {
            let preface = match reason.as_str() {
                Reason::INTENT => match reading.answer {
                    Some(i) => Some(self.kb.entry(i).answer.clone()),
                    None => Some("That's something our team handles directly.".to_owned()),
                },
                Reason::BOT_FAILURE => {
                    Some("I'm sorry, I'm having trouble understanding.".to_owned())
                }
                Reason::LACK_OF_INFORMATION => {
                    Some("I don't have an answer for that one.".to_owned())
                }
                Reason::FAILED_TO_RESOLVE => {
                    Some("I'm sorry I couldn't help with that.".to_owned())
                }
                Reason::FRUSTRATION => Some("I'm sorry about the trouble.".to_owned()),
                _ => None,
            };
            return Reply {
                messages: preface.map(|t| vec![say(&t, vec![])]).unwrap_or_default(),
                escalate: Some(reason),
                topic,
            };
        }
        let human = || {
            if cfg.enabled {
                vec![request_human_button()]
            } else {
                vec![]
            }
        };
        let message = if verdict.request_pending {
            say(
                "I can bring in someone from the team. Ask once more, or press the button.",
                human(),
            )
        } else if reading.facts.unhelpful {
            say(
                "Sorry that didn't help. Could you put it another way? You can also ask for a human.",
                human(),
            )
        } else {
            match (reading.facts.understanding, reading.answer) {
                (Understanding::Answered, Some(i)) => self.answer(i),
                (Understanding::NoInformation, _) => say(
                    "I'm afraid I don't have information about that yet.",
                    human(),
                ),
                _ => {
                    let suggestions: Vec<Action> = reading
                        .hits
                        .iter()
                        .filter(|h| h.confidence >= 0.15)
                        .map(|h| {
                            let e = self.kb.entry(h.entry);
                            Action {
                                id: format!("kb:{}", e.id),
                                label: e.question.clone(),
                                kind: ActionKind::Reply,
                                url: None,
                            }
                        })
                        .collect();
                    let text = if suggestions.is_empty() {
                        "Sorry, I didn't quite get that. Could you rephrase it?"
                    } else {
                        "Sorry, I didn't quite get that. Did you mean one of these?"
                    };
                    say(text, suggestions)
                }
            }
        };
        Reply {
            messages: vec![message],
            escalate: None,
            topic,
        }
    }

    fn answer(&self, index: usize) -> Said {
        let e = self.kb.entry(index);
        let actions = e
            .buttons
            .iter()
            .enumerate()
            .map(|(n, b)| match &b.url {
                Some(url) => Action {
                    id: format!("kb:{}:{n}", e.id),
                    label: b.label.clone(),
                    kind: ActionKind::Link,
                    url: Some(url.clone()),
                },
                // Pressing a reply button says its text for the visitor.
                None => Action {
                    id: format!("kb:{}:{n}", e.id),
                    label: b.reply.clone().unwrap_or_else(|| b.label.clone()),
                    kind: ActionKind::Reply,
                    url: None,
                },
            })
            .collect();
        Said {
            text: e.answer.clone(),
            actions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> BuiltinBot {
        BuiltinBot::new(
            KnowledgeBase::sample().unwrap(),
            &["get me a grown-up".to_owned()],
        )
    }

    #[test]
    fn answers_from_the_sample_knowledge_base() {
        let bot = bot();
        let cfg = TriggerConfig::default();
        for q in [
            "Do you ship to Canada?",
            "what is your return policy",
            "how should hiking boots fit",
            "hi there",
        ] {
            let r = bot.respond(&cfg, &[], q);
            assert!(r.escalate.is_none(), "{q}: {r:?}");
            let reading = bot.read(q);
            assert_eq!(
                reading.facts.understanding,
                Understanding::Answered,
                "{q}: {reading:?}"
            );
        }
    }

    #[test]
    fn gibberish_is_not_understood_and_the_third_time_hands_over() {
        let bot = bot();
        let cfg = TriggerConfig::default();
        let said = ["blorp zzz", "qwxx vvlp", "ffff jjjj"];
        assert!(bot.respond(&cfg, &said[..0], said[0]).escalate.is_none());
        assert!(bot.respond(&cfg, &said[..1], said[1]).escalate.is_none());
        let third = bot.respond(&cfg, &said[..2], said[2]);
        assert_eq!(third.escalate.unwrap().as_str(), Reason::BOT_FAILURE);
    }

    #[test]
    fn phrases_in_several_languages_and_custom_ones_ask_for_a_human() {
        let bot = bot();
        let cfg = TriggerConfig::default();
        for q in [
            "Can I talk to a human please?",
            "je voudrais parler à un humain",
            "Ich möchte mit einem Menschen sprechen",
            "please GET ME A GROWN-UP",
        ] {
            let r = bot.respond(&cfg, &[], q);
            assert_eq!(
                r.escalate.map(|r| r.as_str().to_owned()).as_deref(),
                Some(Reason::VISITOR_REQUEST),
                "{q}"
            );
        }
    }

    #[test]
    fn frustration_reads_negation_and_intensity() {
        let bot = bot();
        assert!(
            bot.read("This is absolutely terrible, I am SO angry!!!")
                .facts
                .sentiment
                < -0.6
        );
        assert!(bot.read("not bad at all, thanks").facts.sentiment > 0.0);
    }

    #[test]
    fn a_known_topic_without_an_answer_is_lack_of_information() {
        let bot = bot();
        let reading = bot.read("do you sell kayaks?");
        assert_eq!(
            reading.facts.understanding,
            Understanding::NoInformation,
            "{reading:?}"
        );
    }
}
