//! Routing with IO: gathers who is online, their load, departments and
//! expertise, and the department's business hours, then lets the sans-IO
//! [`baton_model::routing`] functions decide availability and assignment.

use crate::unit::Committed;
use crate::{Error, Result, Runtime};
use baton_model::routing::{Assignment, Availability, Candidate, availability, pick};
use baton_model::{AgentRef, Presence, Status};
use baton_store::{Skip, User};
use tracing::{info, warn};

impl Runtime {
    /// Everyone who may answer, as routing sees them for a conversation in
    /// `department` about `topic`.
    pub(crate) async fn candidates(
        &self,
        department: Option<&str>,
        topic: Option<&str>,
    ) -> Result<Vec<(Candidate, User)>> {
        let users = self.store().list_users().await?;
        let load = self.store().active_load().await?;
        Ok(users
            .into_iter()
            .filter(|u| u.role.may_respond())
            .map(|u| {
                let online = self.effective_presence(&u) == Presence::Online;
                let in_department = match department {
                    None => true,
                    Some(d) => u.departments.is_empty() || u.departments.iter().any(|x| x == d),
                };
                let expert = topic.is_some_and(|t| u.expertise.iter().any(|x| x == t));
                let candidate = Candidate {
                    id: u.id.clone(),
                    online,
                    in_department,
                    expert,
                    load: load.get(&u.id).copied().unwrap_or(0),
                    capacity: u.capacity,
                    last_assigned_at: u.last_assigned_at,
                };
                (candidate, u)
            })
            .collect())
    }

    /// Whether the department's business hours are open now (no department: always).
    pub fn department_open(&self, department: Option<&str>) -> bool {
        match department.and_then(|d| self.config().department(d)) {
            Some(d) => d.hours.is_open(&d.timezone, self.now().millis()),
            None => true,
        }
    }

    /// Whether a hand-over in `department` can be answered now: someone is
    /// coming, everyone is busy (queue), or nobody is there (offline message).
    pub async fn availability(&self, department: Option<&str>) -> Result<Availability> {
        let open = self.department_open(department);
        let candidates: Vec<Candidate> = self
            .candidates(department, None)
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        Ok(availability(open, &candidates))
    }

    /// Availability for a bot's hand-overs (its default department), for the widget.
    pub async fn bot_availability(&self, bot_id: &str) -> Result<Availability> {
        let department = self.bot_config(bot_id).handover.department.clone();
        self.availability(department.as_deref()).await
    }

    /// The department a hand-over goes to: the one that handles its topic,
    /// else the bot's own.
    pub(crate) fn route(&self, bot_id: &str, topic: Option<&str>) -> Option<String> {
        topic
            .and_then(|t| self.config().department_for_topic(t))
            .map(|d| d.id.clone())
            .or_else(|| self.bot_config(bot_id).handover.department.clone())
    }

    fn assignment_mode(&self, department: Option<&str>) -> Assignment {
        match department.and_then(|d| self.config().department(d)) {
            Some(d) => d.assignment,
            None => self.config().routing.assignment,
        }
    }

    /// Gives waiting conversations to people where assignment is automatic,
    /// oldest first, within each person's capacity. Runs after anything that
    /// can free a seat or fill the queue; one run at a time per node.
    pub async fn assign_waiting(&self) {
        let _one_at_a_time = self.assign_lock().lock().await;
        let mut queues: Vec<Option<String>> = vec![None];
        queues.extend(self.config().departments.iter().map(|d| Some(d.id.clone())));
        for department in queues {
            let mode = self.assignment_mode(department.as_deref());
            if mode == Assignment::Manual || !self.department_open(department.as_deref()) {
                continue;
            }
            if let Err(e) = self.assign_queue(department.as_deref(), mode).await {
                warn!(department = ?department, error = %e, "automatic assignment failed");
            }
        }
    }

    async fn assign_queue(&self, department: Option<&str>, mode: Assignment) -> Result<()> {
        for (conversation_id, _) in self.store().queue(department).await? {
            let topic = self.store().topic(&conversation_id).await?;
            // The pick reads loads outside the unit; another node may fill
            // the seat first, and then the pick is made again.
            for _ in 0..PICKS {
                let Some(user) = self.pick_user(mode, department, topic.as_deref()).await? else {
                    // Nobody has room: the rest of the queue waits too.
                    return Ok(());
                };
                if self.assign_to(&conversation_id, &user).await? != Assigned::NoSeat {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Who `mode` gives a conversation in `department` about `topic`, if anyone.
    pub(crate) async fn pick_user(
        &self,
        mode: Assignment,
        department: Option<&str>,
        topic: Option<&str>,
    ) -> Result<Option<User>> {
        let candidates = self.candidates(department, topic).await?;
        let plain: Vec<Candidate> = candidates.iter().map(|(c, _)| c.clone()).collect();
        let chosen = pick(mode, &plain).map(|c| c.id.clone());
        Ok(chosen.and_then(|id| {
            candidates
                .into_iter()
                .find(|(c, _)| c.id == id)
                .map(|(_, u)| u)
        }))
    }

    /// Gives a conversation to one person, within their capacity: a claim on
    /// their behalf from the queue, a transfer when someone else holds it.
    /// Notifies them if they asked to be told.
    pub(crate) async fn assign_to(&self, conversation_id: &str, user: &User) -> Result<Assigned> {
        let agent = AgentRef {
            id: user.id.clone(),
            name: user.name.clone(),
        };
        let conv = self.conversation(conversation_id).await?;
        let mut unit = match conv.state.status {
            Status::Active if conv.state.assignee.as_ref() == Some(&agent) => {
                return Ok(Assigned::Not);
            }
            Status::Active => {
                let agent = agent.clone();
                self.transition_unit(conversation_id, move |_, _| baton_model::Input::Transfer {
                    to: baton_model::TransferTarget::Agent(agent),
                })
            }
            _ => self.claim_unit(conversation_id, &agent),
        };
        unit.seat = Some(user.id.clone());
        match self.commit(unit).await {
            Ok(Committed::Skipped(_, Skip::NoSeat)) => return Ok(Assigned::NoSeat),
            Ok(_) => {}
            // Someone claimed it meanwhile: theirs, then.
            Err(Error::Transition(_)) => return Ok(Assigned::Not),
            Err(e) => return Err(e),
        }
        let now = self.now();
        self.store().mark_assigned(&user.id, now).await?;
        info!(%conversation_id, user = %user.email, "conversation assigned");
        if user.notify_assigned {
            let who = conv
                .contact
                .name
                .clone()
                .or(conv.contact.email.clone())
                .unwrap_or_else(|| "A visitor".to_owned());
            self.store()
                .create_notification(
                    &user.id,
                    "assigned",
                    Some(conversation_id),
                    None,
                    &format!("{who}'s conversation was assigned to you"),
                    now,
                )
                .await?;
        }
        Ok(Assigned::Yes)
    }
}

/// How often a queued conversation is picked for again when the chosen
/// person's seat was taken between the pick and the unit.
const PICKS: usize = 3;

/// What became of an assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Assigned {
    Yes,
    /// It was theirs already, or someone claimed it meanwhile.
    Not,
    /// They had no room left when the unit ran.
    NoSeat,
}
