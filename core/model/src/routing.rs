//! Routing, sans-IO: whether anyone can take a hand-over, and who gets it
//! when assignment is automatic.
//!
//! The runtime gathers the facts (who is online, how many conversations each
//! person holds, their departments and expertise, whether the department's
//! business hours are open) and these pure functions decide. Invariants, held
//! by the property tests below:
//! - nobody offline, outside the department or at capacity is ever picked;
//! - an expert is picked whenever an eligible expert exists;
//! - `least_busy` picks someone with the smallest load among those preferred;
//! - `manual` never picks anyone: people claim.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// How a department's waiting conversations reach people.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// Agents claim from the queue (the default).
    #[default]
    Manual,
    /// Each new conversation goes to whoever was given one longest ago.
    RoundRobin,
    /// Each new conversation goes to whoever holds the fewest.
    LeastBusy,
}

/// A staff member as routing sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// Online now (presence `online`, recently seen) and allowed to answer.
    pub online: bool,
    /// Works in the conversation's department (or in every department).
    pub in_department: bool,
    /// Knows the conversation's topic.
    pub expert: bool,
    /// Conversations held now.
    pub load: i64,
    /// The most held at once; 0 means no limit.
    pub capacity: i64,
    pub last_assigned_at: Option<Timestamp>,
}

impl Candidate {
    /// Online, in the department, and with room for one more.
    pub fn eligible(&self) -> bool {
        self.online && self.in_department && self.has_room()
    }

    pub fn has_room(&self) -> bool {
        self.capacity <= 0 || self.load < self.capacity
    }
}

/// Whether a hand-over can be answered now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Someone online in the department has room: a human is coming.
    Available,
    /// Everyone online is at capacity: the visitor joins the queue.
    Busy,
    /// Closed, or nobody online: the offline message and leave-a-message.
    Offline,
}

/// What the visitor should be told, given the department's hours and its people.
pub fn availability(open: bool, candidates: &[Candidate]) -> Availability {
    let present: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.online && c.in_department)
        .collect();
    if !open || present.is_empty() {
        Availability::Offline
    } else if present.iter().any(|c| c.has_room()) {
        Availability::Available
    } else {
        Availability::Busy
    }
}

/// Who gets the conversation under `mode`, if anyone.
pub fn pick(mode: Assignment, candidates: &[Candidate]) -> Option<&Candidate> {
    let eligible: Vec<&Candidate> = candidates.iter().filter(|c| c.eligible()).collect();
    let experts: Vec<&Candidate> = eligible.iter().copied().filter(|c| c.expert).collect();
    let pool = if experts.is_empty() {
        eligible
    } else {
        experts
    };
    // Never given one sorts first; ties fall to the id so the choice is stable.
    let turn = |c: &&Candidate| (c.last_assigned_at.map_or(i64::MIN, |t| t.0), c.id.clone());
    match mode {
        Assignment::Manual => None,
        Assignment::RoundRobin => pool.into_iter().min_by_key(turn),
        Assignment::LeastBusy => pool.into_iter().min_by_key(|c| (c.load, turn(c))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidate() -> impl Strategy<Value = Candidate> {
        (
            0u8..6,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0i64..5,
            0i64..4,
            proptest::option::of(0i64..10),
        )
            .prop_map(
                |(id, online, in_department, expert, load, capacity, last)| Candidate {
                    id: format!("u{id}"),
                    online,
                    in_department,
                    expert,
                    load,
                    capacity,
                    last_assigned_at: last.map(Timestamp),
                },
            )
    }

    fn mode() -> impl Strategy<Value = Assignment> {
        prop_oneof![
            Just(Assignment::Manual),
            Just(Assignment::RoundRobin),
            Just(Assignment::LeastBusy)
        ]
    }

    proptest! {
        #[test]
        fn picks_only_the_eligible(cs in proptest::collection::vec(candidate(), 0..8), m in mode()) {
            if let Some(c) = pick(m, &cs) {
                prop_assert!(c.eligible());
                prop_assert!(m != Assignment::Manual);
            }
        }

        #[test]
        fn automatic_modes_pick_someone_when_anyone_is_eligible(
            cs in proptest::collection::vec(candidate(), 0..8),
        ) {
            let any_eligible = cs.iter().any(Candidate::eligible);
            prop_assert_eq!(pick(Assignment::RoundRobin, &cs).is_some(), any_eligible);
            prop_assert_eq!(pick(Assignment::LeastBusy, &cs).is_some(), any_eligible);
        }

        #[test]
        fn experts_come_first(cs in proptest::collection::vec(candidate(), 0..8), m in mode()) {
            let expert_available = cs.iter().any(|c| c.eligible() && c.expert);
            if let Some(c) = pick(m, &cs) {
                prop_assert!(c.expert || !expert_available);
            }
        }

        #[test]
        fn least_busy_has_the_smallest_load(cs in proptest::collection::vec(candidate(), 0..8)) {
            if let Some(c) = pick(Assignment::LeastBusy, &cs) {
                let pool = cs.iter().filter(|o| o.eligible() && o.expert == c.expert);
                for other in pool {
                    prop_assert!(c.load <= other.load);
                }
            }
        }

        #[test]
        fn availability_matches_the_candidates(
            cs in proptest::collection::vec(candidate(), 0..8),
            open in any::<bool>(),
        ) {
            let a = availability(open, &cs);
            let present = cs.iter().any(|c| c.online && c.in_department);
            let room = cs.iter().any(Candidate::eligible);
            let expected = if !open || !present {
                Availability::Offline
            } else if room {
                Availability::Available
            } else {
                Availability::Busy
            };
            prop_assert_eq!(a, expected);
        }
    }

    #[test]
    fn round_robin_takes_turns() {
        let mut cs: Vec<Candidate> = ["a", "b", "c"]
            .iter()
            .map(|id| Candidate {
                id: (*id).to_owned(),
                online: true,
                in_department: true,
                expert: false,
                load: 0,
                capacity: 0,
                last_assigned_at: None,
            })
            .collect();
        let mut order = vec![];
        for t in 0..6 {
            let id = pick(Assignment::RoundRobin, &cs).unwrap().id.clone();
            cs.iter_mut().find(|c| c.id == id).unwrap().last_assigned_at = Some(Timestamp(t));
            order.push(id);
        }
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    }
}
