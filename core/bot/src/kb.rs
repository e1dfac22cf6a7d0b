//! The knowledge base: question-and-answer entries (TOML) and Markdown
//! documents (one entry per `##` section), intents with example phrases, and
//! ranked retrieval with a confidence score.
//!
//! Confidence is the share of the message's meaning (its words, weighted by
//! how rare they are in the knowledge base) that an entry covers, blended
//! with how much of the entry's question the message covers. Words the
//! knowledge base has never seen weigh the most, so "do you sell kayaks?"
//! does not match the entry on tents just because both say "sell".

use crate::text::{content_tokens, normalized, stem, words};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A button under an answer.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    pub label: String,
    /// An `https://` link.
    #[serde(default)]
    pub url: Option<String>,
    /// What pressing it says for the visitor; the label when absent.
    #[serde(default)]
    pub reply: Option<String>,
}

/// One answer the bot can give.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(default)]
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub alternatives: Vec<String>,
    pub answer: String,
    #[serde(default)]
    pub buttons: Vec<Button>,
    /// Reaching this answer hands the conversation to a human (reason `intent`).
    #[serde(default)]
    pub handover: bool,
}

/// Something a visitor may want, recognised from example phrases.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub id: String,
    pub examples: Vec<String>,
}

/// The `phrases.toml` lists: asking for a human, and saying an answer did not help.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phrases {
    #[serde(default)]
    pub human: Vec<String>,
    #[serde(default)]
    pub unhelpful: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KbFile {
    #[serde(default)]
    entry: Vec<Entry>,
    #[serde(default)]
    intent: Vec<Intent>,
}

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

fn invalid(file: &str, message: impl Into<String>) -> KbError {
    KbError::Invalid {
        file: file.to_owned(),
        message: message.into(),
    }
}

/// The best match for a message.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub entry: usize,
    pub confidence: f64,
}

/// How well a message matched an intent.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentHit {
    pub id: String,
    pub confidence: f64,
}

/// One field of an entry that a message is compared with.
struct Field {
    entry: usize,
    /// Questions count fully; answer text counts for less.
    weight: f64,
    /// The idf of its tokens, summed: the denominator of its precision.
    total_idf: f64,
}

/// An intent's example, prepared for matching.
struct Example {
    intent: usize,
    tokens: HashSet<String>,
    /// Its normalized text, matched literally when it has two words or more.
    phrase: Option<String>,
}

/// A message as retrieval reads it: computed once per turn and shared by
/// [`KnowledgeBase::search_in`], [`KnowledgeBase::intent_in`] and
/// [`KnowledgeBase::knows_topic_in`].
#[derive(Clone, Debug)]
pub struct Query {
    tokens: HashSet<String>,
    normalized: String,
}

impl Query {
    pub fn new(message: &str) -> Self {
        Self {
            tokens: content_tokens(message).into_iter().collect(),
            normalized: normalized(message),
        }
    }

    /// Lower-case words between single spaces (see [`normalized`]).
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

/// Entries, intents and the index over them. Everything retrieval needs is
/// computed here once, so that a search walks only the fields that share a
/// token with the message (an inverted index) and never takes a logarithm.
pub struct KnowledgeBase {
    entries: Vec<Entry>,
    intents: Vec<Intent>,
    examples: Vec<Example>,
    fields: Vec<Field>,
    /// For each token, its idf and the fields it appears in.
    postings: HashMap<String, (f64, Vec<u32>)>,
    /// The idf of a token the knowledge base has never seen.
    unseen_idf: f64,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("entries", &self.entries.len())
            .field("intents", &self.intents.len())
            .finish()
    }
}

/// Checks an entry and gives it an id from its question when it has none.
pub fn check_entry(e: &mut Entry) -> Result<(), String> {
    if e.question.trim().is_empty() || e.answer.trim().is_empty() {
        return Err("an entry needs a question and an answer".to_owned());
    }
    for b in &e.buttons {
        let ok = b
            .url
            .as_deref()
            .is_none_or(|u| u.starts_with("https://") || u.starts_with("http://"));
        if !ok || b.label.trim().is_empty() {
            return Err(format!(
                "`{}`: a button needs a label and an http(s) url",
                e.question
            ));
        }
    }
    if e.id.is_empty() {
        e.id = slug(&e.question);
    }
    Ok(())
}

/// The sample knowledge base of the demo shop, compiled in.
const SAMPLE: &[(&str, &str)] = &[
    (
        "northwind.toml",
        include_str!("../knowledge/northwind.toml"),
    ),
    (
        "smalltalk.toml",
        include_str!("../knowledge/smalltalk.toml"),
    ),
    (
        "guides/boot-sizing.md",
        include_str!("../knowledge/guides/boot-sizing.md"),
    ),
    (
        "guides/tent-care.md",
        include_str!("../knowledge/guides/tent-care.md"),
    ),
];

/// The default phrases, compiled in.
pub fn default_phrases() -> Phrases {
    toml::from_str(include_str!("../knowledge/phrases.toml")).unwrap_or_default()
}

impl KnowledgeBase {
    /// The demo shop's knowledge base that ships with Baton.
    pub fn sample() -> Result<Self, KbError> {
        Self::from_sources(
            SAMPLE
                .iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned())),
        )
    }

    /// Every `*.toml` (except `phrases.toml`) and `*.md` file under `dir`, recursively.
    pub fn load_dir(dir: &Path) -> Result<Self, KbError> {
        let mut files = Vec::new();
        collect(dir, dir, &mut files)?;
        files.sort();
        let mut sources = Vec::new();
        for (name, path) in files {
            let text = std::fs::read_to_string(&path).map_err(|source| KbError::Io {
                file: path.display().to_string(),
                source,
            })?;
            sources.push((name, text));
        }
        Self::from_sources(sources)
    }

    /// Parses `(file name, contents)` pairs: TOML entries and intents, Markdown sections.
    pub fn from_sources(
        sources: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, KbError> {
        let mut entries = Vec::new();
        let mut intents = Vec::new();
        for (name, text) in sources {
            if name.ends_with(".md") {
                entries.extend(markdown_entries(&name, &text));
            } else if name.ends_with(".toml") {
                let file: KbFile =
                    toml::from_str(&text).map_err(|e| invalid(&name, e.to_string()))?;
                for (i, mut e) in file.entry.into_iter().enumerate() {
                    check_entry(&mut e)
                        .map_err(|m| invalid(&name, format!("entry {}: {m}", i + 1)))?;
                    entries.push(e);
                }
                intents.extend(file.intent);
            }
        }
        let mut seen = HashSet::new();
        for e in &entries {
            if !seen.insert(e.id.clone()) {
                return Err(invalid(
                    "knowledge base",
                    format!("two entries have the id `{}`", e.id),
                ));
            }
        }
        Ok(Self::build(entries, intents))
    }

    fn build(entries: Vec<Entry>, intents: Vec<Intent>) -> Self {
        let mut field_tokens: Vec<(usize, f64, HashSet<String>)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            for q in std::iter::once(&e.question).chain(&e.alternatives) {
                field_tokens.push((i, 1.0, content_tokens(q).into_iter().collect()));
            }
            field_tokens.push((i, 0.6, content_tokens(&e.answer).into_iter().collect()));
        }
        let mut postings: HashMap<String, (f64, Vec<u32>)> = HashMap::new();
        for (n, (_, _, tokens)) in field_tokens.iter().enumerate() {
            for t in tokens {
                postings
                    .entry(t.clone())
                    .or_default()
                    .1
                    .push(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
        // How telling a token is: rare in the knowledge base is telling, and a
        // word it has never seen is the most telling of all.
        let n = field_tokens.len() as f64 + 1.0;
        let idf = |df: usize| (n / (df as f64 + 0.5)).ln().max(0.1);
        for (weight, fields) in postings.values_mut() {
            *weight = idf(fields.len());
        }
        let fields = field_tokens
            .iter()
            .map(|(entry, weight, tokens)| Field {
                entry: *entry,
                weight: *weight,
                total_idf: tokens.iter().map(|t| postings[t].0).sum(),
            })
            .collect();
        let examples = intents
            .iter()
            .enumerate()
            .flat_map(|(i, intent)| {
                intent.examples.iter().map(move |x| Example {
                    intent: i,
                    tokens: content_tokens(x).into_iter().collect(),
                    phrase: (words(x).len() >= 2)
                        .then(|| normalized(x))
                        .filter(|p| !p.trim().is_empty()),
                })
            })
            .collect();
        Self {
            entries,
            intents,
            examples,
            fields,
            postings,
            unseen_idf: idf(0),
        }
    }

    /// This knowledge base with entries added, replaced (same id) or removed
    /// (`None`): the edits made through the API on top of the files.
    pub fn with_edits(&self, edits: &[(String, Option<Entry>)]) -> Result<Self, KbError> {
        let mut entries = self.entries.clone();
        for (id, edit) in edits {
            let at = entries.iter().position(|e| e.id == *id);
            match (edit, at) {
                (Some(e), Some(i)) => entries[i] = e.clone(),
                (Some(e), None) => entries.push(e.clone()),
                (None, Some(i)) => {
                    entries.remove(i);
                }
                (None, None) => {}
            }
        }
        for e in &mut entries {
            check_entry(e)
                .map_err(|m| invalid("knowledge base", format!("entry `{}`: {m}", e.id)))?;
        }
        Ok(Self::build(entries, self.intents.clone()))
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, index: usize) -> &Entry {
        &self.entries[index]
    }

    pub fn intents(&self) -> &[Intent] {
        &self.intents
    }

    fn idf(&self, token: &str) -> f64 {
        self.postings.get(token).map_or(self.unseen_idf, |p| p.0)
    }

    /// The entries that best match `message`, best first, with their confidence in `0..=1`.
    pub fn search(&self, message: &str, limit: usize) -> Vec<Hit> {
        self.search_in(&Query::new(message), limit)
    }

    /// [`KnowledgeBase::search`] for a message already read into a [`Query`].
    pub fn search_in(&self, query: &Query, limit: usize) -> Vec<Hit> {
        if query.tokens.is_empty() {
            return vec![];
        }
        let total: f64 = query.tokens.iter().map(|t| self.idf(t)).sum();
        // The idf each field shares with the message, for the fields that share any.
        let mut shared: HashMap<u32, f64> = HashMap::new();
        for t in &query.tokens {
            if let Some((idf, fields)) = self.postings.get(t) {
                for f in fields {
                    *shared.entry(*f).or_default() += idf;
                }
            }
        }
        let mut best: HashMap<usize, f64> = HashMap::new();
        for (f, shared) in shared {
            let field = &self.fields[f as usize];
            let coverage = shared / total;
            let precision = if field.total_idf > 0.0 {
                shared / field.total_idf
            } else {
                0.0
            };
            let confidence = field.weight * (0.75 * coverage + 0.25 * precision);
            let slot = best.entry(field.entry).or_insert(0.0);
            if confidence > *slot {
                *slot = confidence;
            }
        }
        let mut hits: Vec<Hit> = best
            .into_iter()
            .map(|(entry, confidence)| Hit {
                entry,
                confidence: confidence.min(1.0),
            })
            .collect();
        hits.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.entry.cmp(&b.entry))
        });
        hits.truncate(limit);
        hits
    }

    /// The intent `message` expresses, if any reaches `threshold`: the best
    /// example by word overlap (Dice), or 1.0 when a multi-word example
    /// appears in the message as it is.
    pub fn match_intent(&self, message: &str, threshold: f64) -> Option<IntentHit> {
        self.intent_in(&Query::new(message), threshold)
    }

    /// [`KnowledgeBase::match_intent`] for a message already read into a [`Query`].
    pub fn intent_in(&self, query: &Query, threshold: f64) -> Option<IntentHit> {
        let mut best: Option<(usize, f64)> = None;
        for example in &self.examples {
            let dice = if query.tokens.is_empty() || example.tokens.is_empty() {
                0.0
            } else {
                2.0 * query.tokens.intersection(&example.tokens).count() as f64
                    / (query.tokens.len() + example.tokens.len()) as f64
            };
            let literal = example
                .phrase
                .as_deref()
                .is_some_and(|p| query.normalized.contains(p));
            let confidence = if literal { 1.0 } else { dice };
            if confidence >= threshold && best.is_none_or(|(_, b)| confidence > b) {
                best = Some((example.intent, confidence));
            }
        }
        best.map(|(i, confidence)| IntentHit {
            id: self.intents[i].id.clone(),
            confidence,
        })
    }

    /// Whether the knowledge base knows any word of `message` (the topic is
    /// one it covers, even if no entry answers it).
    pub fn knows_topic(&self, message: &str) -> bool {
        self.knows_topic_in(&Query::new(message))
    }

    pub fn knows_topic_in(&self, query: &Query) -> bool {
        query
            .tokens
            .iter()
            .any(|t| self.postings.contains_key(t) && !crate::text::is_stopword(t))
    }
}

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> Result<(), KbError> {
    let entries = std::fs::read_dir(dir).map_err(|source| KbError::Io {
        file: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out)?;
            continue;
        }
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let is_kb =
            name.ends_with(".md") || (name.ends_with(".toml") && !name.ends_with("phrases.toml"));
        if is_kb {
            out.push((name, path));
        }
    }
    Ok(())
}

/// One entry per `##` section: the heading is the question, the section the answer.
fn markdown_entries(file: &str, text: &str) -> Vec<Entry> {
    let doc = file.trim_end_matches(".md").replace(['/', '\\'], "-");
    let mut out = Vec::new();
    let mut heading: Option<String> = None;
    let mut body = String::new();
    let flush = |heading: &Option<String>, body: &str, out: &mut Vec<Entry>| {
        if let Some(h) = heading {
            let answer = clip(body.trim(), 700);
            if !answer.is_empty() {
                out.push(Entry {
                    id: format!("{doc}#{}", slug(h)),
                    question: h.clone(),
                    alternatives: vec![],
                    answer,
                    buttons: vec![],
                    handover: false,
                });
            }
        }
    };
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            flush(&heading, &body, &mut out);
            heading = Some(h.trim().to_owned());
            body.clear();
        } else if line.starts_with("# ") {
            // The document title; sections stand on their own.
        } else {
            let line = line.trim_end();
            let line = line
                .strip_prefix("- ")
                .or_else(|| line.strip_prefix("* "))
                .map(|item| format!("• {item}"))
                .unwrap_or_else(|| line.to_owned());
            body.push_str(&line.replace("**", ""));
            body.push('\n');
        }
    }
    flush(&heading, &body, &mut out);
    out
}

/// At most `max` characters, cut after a sentence where possible.
fn clip(text: &str, max: usize) -> String {
    let collapsed = text.replace("\n\n\n", "\n\n");
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let cut: String = collapsed.chars().take(max).collect();
    match cut.rfind(". ") {
        Some(i) if i > max / 2 => cut[..=i].to_owned(),
        _ => format!("{}…", cut.trim_end()),
    }
}

fn slug(text: &str) -> String {
    words(text)
        .iter()
        .map(|w| stem(w))
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb() -> KnowledgeBase {
        KnowledgeBase::from_sources([(
            "shop.toml".to_owned(),
            r#"
[[entry]]
question = "Do you ship to Canada?"
alternatives = ["international shipping"]
answer = "Yes, we ship to Canada in 5 to 8 business days."

[[entry]]
id = "returns"
question = "What is your return policy?"
alternatives = ["can I return my boots"]
answer = "You can return anything within 100 days."

[[entry]]
question = "When are you open?"
alternatives = ["opening hours", "store hours"]
answer = "Our Portland store is open 9 to 6, Monday to Saturday."

[[intent]]
id = "refund"
examples = ["I want a refund", "give me my money back"]
"#
            .to_owned(),
        )])
        .unwrap()
    }

    #[test]
    fn the_right_entry_wins_with_high_confidence() {
        let kb = kb();
        let hits = kb.search("Do you ship to canada", 3);
        assert_eq!(kb.entry(hits[0].entry).question, "Do you ship to Canada?");
        assert!(hits[0].confidence > 0.8, "{hits:?}");
        let hits = kb.search("what are your opening hours?", 3);
        assert_eq!(kb.entry(hits[0].entry).id, "when-are-you-open");
        assert!(hits[0].confidence > 0.6, "{hits:?}");
    }

    #[test]
    fn unknown_words_lower_confidence() {
        let kb = kb();
        let shipping = kb.search("do you ship kayaks to mars", 1);
        assert!(
            shipping.is_empty() || shipping[0].confidence < 0.5,
            "{shipping:?}"
        );
        assert!(kb.search("blorp zzz", 1).is_empty());
        assert!(kb.knows_topic("do you ship kayaks"));
        assert!(!kb.knows_topic("blorp zzz"));
    }

    #[test]
    fn intents_match_paraphrases_and_literal_examples() {
        let kb = kb();
        assert_eq!(
            kb.match_intent("I want a refund now", 0.6).unwrap().id,
            "refund"
        );
        assert_eq!(
            kb.match_intent("can you give me my money back?", 0.6)
                .unwrap()
                .id,
            "refund"
        );
        assert!(kb.match_intent("do you ship to canada", 0.6).is_none());
    }

    #[test]
    fn markdown_sections_become_entries() {
        let kb = KnowledgeBase::from_sources([(
            "guides/care.md".to_owned(),
            "# Tent care\nIntro.\n## How do I dry my tent?\nPitch it in the shade.\n- Never pack it wet.\n## Empty\n".to_owned(),
        )])
        .unwrap();
        assert_eq!(kb.entries().len(), 1);
        let e = kb.entry(0);
        assert_eq!(e.question, "How do I dry my tent?");
        assert!(e.answer.contains("• Never pack it wet."), "{}", e.answer);
        assert_eq!(e.id, "guides-care#how-do-i-dry-my-tent");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let bad = KnowledgeBase::from_sources([(
            "x.toml".to_owned(),
            "[[entry]]\nquestion = \"q\"\n".to_owned(),
        )]);
        assert!(bad.unwrap_err().to_string().contains("x.toml"));
        let dup = KnowledgeBase::from_sources([(
            "x.toml".to_owned(),
            "[[entry]]\nid=\"a\"\nquestion=\"q\"\nanswer=\"a\"\n[[entry]]\nid=\"a\"\nquestion=\"r\"\nanswer=\"b\"\n".to_owned(),
        )]);
        assert!(dup.unwrap_err().to_string().contains("`a`"));
        let link = KnowledgeBase::from_sources([(
            "x.toml".to_owned(),
            "[[entry]]\nquestion=\"q\"\nanswer=\"a\"\nbuttons=[{label=\"x\", url=\"javascript:alert(1)\"}]\n".to_owned(),
        )]);
        assert!(link.is_err());
    }

    #[test]
    fn the_sample_knowledge_base_loads() {
        let kb = KnowledgeBase::sample().unwrap();
        assert!(kb.entries().len() > 20);
        assert!(!default_phrases().human.is_empty());
    }
}
