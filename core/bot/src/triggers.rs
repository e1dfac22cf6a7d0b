//! The hand-over triggers, sans-IO: what one visitor turn means
//! ([`TurnFacts`]), the counters carried since the last hand-over
//! ([`Counters`]), and [`assess`], which decides whether this turn hands the
//! conversation to a human and with which reason.
//!
//! The counters are a fold of `assess` over the visitor's messages since the
//! last hand-over ([`replay`]); the runtime keeps them with the conversation
//! and passes them to each turn, so a turn never reads the transcript.

use baton_model::Reason;

/// How the bot understood a message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Understanding {
    /// A knowledge-base answer or small talk fits.
    Answered,
    /// The topic is known but there is no answer for it.
    NoInformation,
    /// The bot could not make sense of it.
    NotUnderstood,
}

/// What one visitor message says, as far as the triggers care.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnFacts {
    pub understanding: Understanding,
    /// A "talk to a human" phrase, the button, or an LLM's tool call.
    pub asks_for_human: bool,
    /// "That didn't help".
    pub unhelpful: bool,
    /// VADER compound score in `-1..=1`.
    pub sentiment: f64,
    /// The intent recognised, if any.
    pub intent: Option<String>,
    /// The answer reached is marked as a hand-over point.
    pub handover_answer: bool,
}

impl TurnFacts {
    /// A plain, answered, neutral message.
    pub fn answered() -> Self {
        Self {
            understanding: Understanding::Answered,
            asks_for_human: false,
            unhelpful: false,
            sentiment: 0.0,
            intent: None,
            handover_answer: false,
        }
    }
}

/// Per-bot trigger settings (`[bot.handover]`).
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerConfig {
    /// Hand-over at all.
    pub enabled: bool,
    /// Not-understood answers before `bot_failure`; 0 switches it off.
    pub cycle_count: u32,
    /// Requests for a human before `visitor_request` (1: the first one).
    pub repeated_requests: u32,
    /// "Didn't help" replies before `failed_to_resolve`; 0 switches it off.
    pub failed_to_resolve: u32,
    /// Escalate when the topic is known but unanswered.
    pub lack_of_information: bool,
    /// Sentiment at or below this hands over (`frustration`); `None` switches it off.
    pub frustration: Option<f64>,
    /// Intents that always go to a human.
    pub intents: Vec<String>,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cycle_count: 3,
            repeated_requests: 1,
            failed_to_resolve: 2,
            lack_of_information: true,
            frustration: Some(-0.6),
            intents: vec![],
        }
    }
}

/// What has happened since the last hand-over. Kept with the conversation
/// (as JSON) and carried from one turn to the next.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counters {
    pub not_understood: u32,
    pub requests: u32,
    pub unhelpful: u32,
}

/// One turn's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub counters: Counters,
    pub escalate: Option<Reason>,
    /// The visitor asked for a human, but fewer times than `repeated_requests`.
    pub request_pending: bool,
}

/// Decides one turn. The first trigger that fires wins, in this order:
/// asking for a human, a hand-over intent or answer, frustration, "didn't
/// help" too often, no information, not understood too often. Firing resets
/// the counters: the next cycle starts after the hand-over.
pub fn assess(cfg: &TriggerConfig, counters: Counters, facts: &TurnFacts) -> Verdict {
    let mut c = counters;
    if facts.asks_for_human {
        c.requests = c.requests.saturating_add(1);
    }
    if facts.unhelpful {
        c.unhelpful = c.unhelpful.saturating_add(1);
    }
    if facts.understanding == Understanding::NotUnderstood && !facts.asks_for_human {
        c.not_understood = c.not_understood.saturating_add(1);
    }
    let fire = |reason: &'static str| Verdict {
        counters: Counters::default(),
        escalate: Some(Reason::known(reason)),
        request_pending: false,
    };
    if !cfg.enabled {
        return Verdict {
            counters: c,
            escalate: None,
            request_pending: false,
        };
    }
    if facts.asks_for_human && c.requests >= cfg.repeated_requests.max(1) {
        return fire(Reason::VISITOR_REQUEST);
    }
    let intent_listed = facts
        .intent
        .as_ref()
        .is_some_and(|i| cfg.intents.iter().any(|x| x == i));
    if intent_listed || facts.handover_answer {
        return fire(Reason::INTENT);
    }
    if cfg.frustration.is_some_and(|t| facts.sentiment <= t) {
        return fire(Reason::FRUSTRATION);
    }
    if facts.unhelpful && cfg.failed_to_resolve > 0 && c.unhelpful >= cfg.failed_to_resolve {
        return fire(Reason::FAILED_TO_RESOLVE);
    }
    if facts.understanding == Understanding::NoInformation
        && cfg.lack_of_information
        && !facts.asks_for_human
    {
        return fire(Reason::LACK_OF_INFORMATION);
    }
    if facts.understanding == Understanding::NotUnderstood
        && cfg.cycle_count > 0
        && c.not_understood >= cfg.cycle_count
    {
        return fire(Reason::BOT_FAILURE);
    }
    Verdict {
        counters: c,
        escalate: None,
        request_pending: facts.asks_for_human,
    }
}

/// The counters after these earlier turns (oldest first).
pub fn replay(cfg: &TriggerConfig, turns: &[TurnFacts]) -> Counters {
    turns.iter().fold(Counters::default(), |c, facts| {
        assess(cfg, c, facts).counters
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn not_understood() -> TurnFacts {
        TurnFacts {
            understanding: Understanding::NotUnderstood,
            ..TurnFacts::answered()
        }
    }

    #[test]
    fn the_cycle_count_fires_on_the_third_miss() {
        let cfg = TriggerConfig::default();
        let mut c = Counters::default();
        for turn in 1..=3 {
            let v = assess(&cfg, c, &not_understood());
            c = v.counters;
            assert_eq!(v.escalate.is_some(), turn == 3, "turn {turn}");
            if turn == 3 {
                assert_eq!(v.escalate.unwrap().as_str(), Reason::BOT_FAILURE);
            }
        }
    }

    #[test]
    fn repeated_requests_need_their_count() {
        let cfg = TriggerConfig {
            repeated_requests: 2,
            ..Default::default()
        };
        let ask = TurnFacts {
            asks_for_human: true,
            ..TurnFacts::answered()
        };
        let first = assess(&cfg, Counters::default(), &ask);
        assert!(first.escalate.is_none() && first.request_pending);
        let second = assess(&cfg, first.counters, &ask);
        assert_eq!(second.escalate.unwrap().as_str(), Reason::VISITOR_REQUEST);
    }

    #[test]
    fn each_trigger_names_its_reason() {
        let cfg = TriggerConfig {
            intents: vec!["refund".into()],
            ..Default::default()
        };
        let cases = [
            (
                TurnFacts {
                    intent: Some("refund".into()),
                    ..TurnFacts::answered()
                },
                Reason::INTENT,
            ),
            (
                TurnFacts {
                    handover_answer: true,
                    ..TurnFacts::answered()
                },
                Reason::INTENT,
            ),
            (
                TurnFacts {
                    sentiment: -0.8,
                    ..TurnFacts::answered()
                },
                Reason::FRUSTRATION,
            ),
            (
                TurnFacts {
                    understanding: Understanding::NoInformation,
                    ..TurnFacts::answered()
                },
                Reason::LACK_OF_INFORMATION,
            ),
        ];
        for (facts, reason) in cases {
            assert_eq!(
                assess(&cfg, Counters::default(), &facts)
                    .escalate
                    .unwrap()
                    .as_str(),
                reason,
                "{facts:?}"
            );
        }
        let unhelpful = TurnFacts {
            unhelpful: true,
            ..TurnFacts::answered()
        };
        let once = assess(&cfg, Counters::default(), &unhelpful);
        assert!(once.escalate.is_none());
        assert_eq!(
            assess(&cfg, once.counters, &unhelpful)
                .escalate
                .unwrap()
                .as_str(),
            Reason::FAILED_TO_RESOLVE
        );
    }

    fn facts() -> impl Strategy<Value = TurnFacts> {
        (
            prop_oneof![
                Just(Understanding::Answered),
                Just(Understanding::NoInformation),
                Just(Understanding::NotUnderstood)
            ],
            any::<bool>(),
            any::<bool>(),
            -1.0f64..=1.0,
            prop_oneof![
                Just(None),
                Just(Some("refund".to_owned())),
                Just(Some("hello".to_owned()))
            ],
            any::<bool>(),
        )
            .prop_map(
                |(understanding, asks_for_human, unhelpful, sentiment, intent, handover_answer)| {
                    TurnFacts {
                        understanding,
                        asks_for_human,
                        unhelpful,
                        sentiment,
                        intent,
                        handover_answer,
                    }
                },
            )
    }

    fn config() -> impl Strategy<Value = TriggerConfig> {
        (
            any::<bool>(),
            0u32..5,
            1u32..4,
            0u32..4,
            any::<bool>(),
            prop::option::of(-1.0f64..0.0),
        )
            .prop_map(
                |(
                    enabled,
                    cycle_count,
                    repeated_requests,
                    failed_to_resolve,
                    lack_of_information,
                    frustration,
                )| {
                    TriggerConfig {
                        enabled,
                        cycle_count,
                        repeated_requests,
                        failed_to_resolve,
                        lack_of_information,
                        frustration,
                        intents: vec!["refund".into()],
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Switched off, nothing ever hands over.
        #[test]
        fn disabled_never_escalates(turns in prop::collection::vec(facts(), 0..30)) {
            let cfg = TriggerConfig { enabled: false, ..Default::default() };
            let mut c = Counters::default();
            for f in &turns {
                let v = assess(&cfg, c, f);
                prop_assert!(v.escalate.is_none());
                c = v.counters;
            }
        }

        /// Only misses: `bot_failure` fires exactly every `cycle_count` turns.
        #[test]
        fn misses_escalate_exactly_at_the_cycle_count(n in 1u32..6, turns in 1usize..40) {
            let cfg = TriggerConfig { cycle_count: n, frustration: None, ..Default::default() };
            let mut c = Counters::default();
            for turn in 1..=turns {
                let v = assess(&cfg, c, &not_understood());
                let due = (turn as u32).is_multiple_of(n);
                prop_assert_eq!(v.escalate.is_some(), due);
                if let Some(r) = &v.escalate {
                    prop_assert_eq!(r.as_str(), Reason::BOT_FAILURE);
                }
                c = v.counters;
            }
        }

        /// A verdict that escalates starts the next cycle from nothing; one that
        /// does not never lowers a counter; answered neutral turns never escalate.
        #[test]
        fn counters_only_grow_until_a_hand_over(cfg in config(), turns in prop::collection::vec(facts(), 0..30)) {
            let mut c = Counters::default();
            for f in &turns {
                let v = assess(&cfg, c, f);
                match &v.escalate {
                    Some(_) => prop_assert_eq!(v.counters, Counters::default()),
                    None => {
                        prop_assert!(v.counters.not_understood >= c.not_understood);
                        prop_assert!(v.counters.requests >= c.requests);
                        prop_assert!(v.counters.unhelpful >= c.unhelpful);
                    }
                }
                let calm = f.understanding == Understanding::Answered && !f.asks_for_human && !f.unhelpful
                    && f.intent.is_none() && !f.handover_answer && f.sentiment > -0.0;
                if calm {
                    prop_assert!(v.escalate.is_none());
                }
                c = v.counters;
            }
            prop_assert_eq!(replay(&cfg, &turns), c);
        }

        /// With hand-over on, asking for a human `repeated_requests` times in a row always escalates.
        #[test]
        fn asking_enough_always_reaches_a_human(n in 1u32..5, before in prop::collection::vec(facts(), 0..10)) {
            let cfg = TriggerConfig { repeated_requests: n, ..Default::default() };
            let mut c = replay(&cfg, &before);
            let ask = TurnFacts { asks_for_human: true, ..TurnFacts::answered() };
            let mut escalated = false;
            for _ in 0..n {
                let v = assess(&cfg, c, &ask);
                c = v.counters;
                if v.escalate.is_some() {
                    escalated = true;
                    break;
                }
            }
            prop_assert!(escalated);
        }
    }
}
