//! The knowledge base through the API: entries added, changed or removed by
//! admins are stored in the database on top of the bot's knowledge folder,
//! checked before they are saved, and live at once.

use crate::bot::KnowledgeBot;
use crate::{Error, Result, Runtime};
use baton_bot::kb::{Entry, check_entry};
use tracing::warn;

/// An entry as the API shows it, with where it comes from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KnowledgeEntry {
    #[serde(flatten)]
    pub entry: Entry,
    /// `file` (the knowledge folder or the sample) or `api` (edited here).
    pub source: &'static str,
}

impl Runtime {
    fn knowledge_bot(&self) -> Result<&KnowledgeBot> {
        self.bot_engine()
            .knowledge()
            .ok_or_else(|| Error::Invalid("this bot has no editable knowledge base".into()))
    }

    async fn edits_for(&self, bot_id: &str) -> Result<Vec<(String, Option<Entry>)>> {
        let mut out = vec![];
        for (bot, id, body) in self.store().knowledge_edits().await? {
            if bot != bot_id {
                continue;
            }
            let entry = match body {
                None => None,
                Some(json) => match serde_json::from_str::<Entry>(&json) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        warn!(%bot_id, entry = %id, error = %e, "stored knowledge entry is unreadable; skipped");
                        continue;
                    }
                },
            };
            out.push((id, entry));
        }
        Ok(out)
    }

    /// Applies the stored edits at start-up. An edit that no longer fits the
    /// files (say, a duplicate id) is reported and the files alone are used.
    pub async fn load_knowledge_edits(&self) -> Result<()> {
        let Some(kb) = self.bot_engine().knowledge() else {
            return Ok(());
        };
        for (bot_id, _) in self.bots() {
            let edits = self.edits_for(&bot_id).await?;
            if edits.is_empty() {
                continue;
            }
            match kb.check_edits(&bot_id, &edits) {
                Ok(built) => kb.install(&bot_id, built),
                Err(e) => {
                    warn!(%bot_id, error = %e, "stored knowledge edits no longer apply; ignored")
                }
            }
        }
        Ok(())
    }

    /// A bot's entries as it answers now.
    pub async fn knowledge_entries(&self, bot_id: &str) -> Result<Vec<KnowledgeEntry>> {
        let (entries, _) = self
            .knowledge_bot()?
            .entries(bot_id)
            .ok_or(Error::NotFound("bot"))?;
        let edited: Vec<String> = self
            .edits_for(bot_id)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        Ok(entries
            .into_iter()
            .map(|entry| KnowledgeEntry {
                source: if edited.contains(&entry.id) {
                    "api"
                } else {
                    "file"
                },
                entry,
            })
            .collect())
    }

    /// Adds or replaces an entry (by id; the id comes from the question when empty).
    pub async fn put_knowledge_entry(&self, bot_id: &str, mut entry: Entry) -> Result<Entry> {
        if !self.has_bot(bot_id) {
            return Err(Error::NotFound("bot"));
        }
        check_entry(&mut entry).map_err(Error::Invalid)?;
        if entry.id.len() > 100 {
            return Err(Error::Invalid(
                "an entry id has at most 100 characters".into(),
            ));
        }
        let kb = self.knowledge_bot()?;
        let _one_edit_at_a_time = kb.edit().await;
        let mut edits = self.edits_for(bot_id).await?;
        edits.retain(|(id, _)| *id != entry.id);
        edits.push((entry.id.clone(), Some(entry.clone())));
        let built = kb
            .check_edits(bot_id, &edits)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let json = serde_json::to_string(&entry)
            .map_err(|e| Error::Invalid(format!("cannot store the entry: {e}")))?;
        self.store()
            .save_knowledge_edit(bot_id, &entry.id, Some(&json), self.now())
            .await?;
        kb.install(bot_id, built);
        Ok(entry)
    }

    /// Removes an entry, whether it came from the files or the API.
    pub async fn delete_knowledge_entry(&self, bot_id: &str, entry_id: &str) -> Result<()> {
        let known = self
            .knowledge_entries(bot_id)
            .await?
            .iter()
            .any(|e| e.entry.id == entry_id);
        if !known {
            return Err(Error::NotFound("knowledge entry"));
        }
        let kb = self.knowledge_bot()?;
        let _one_edit_at_a_time = kb.edit().await;
        let mut edits = self.edits_for(bot_id).await?;
        edits.retain(|(id, _)| id != entry_id);
        edits.push((entry_id.to_owned(), None));
        let built = kb
            .check_edits(bot_id, &edits)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.store()
            .save_knowledge_edit(bot_id, entry_id, None, self.now())
            .await?;
        kb.install(bot_id, built);
        Ok(())
    }
}
