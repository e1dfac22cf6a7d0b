//! Turning text into comparable tokens: lower-case words, stop words left
//! out, light English stemming, and phrase matching on word boundaries.

/// Words that carry no topic. Kept short on purpose: "not", "no" and
/// question words stay, because they change what a message asks.
const STOPWORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "did", "do", "does", "for", "from", "get", "got", "had", "has", "have", "hello",
    "hey", "hi", "i", "if", "im", "in", "into", "is", "it", "its", "just", "let", "me", "my", "of",
    "on", "or", "our", "please", "pls", "so", "some", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "to", "us", "was", "we", "were", "will", "with", "would",
    "you", "your", "yours", "what", "whats", "which", "who", "how", "when", "where", "why",
    "there", "thanks", "thank", "ok", "okay", "also", "really", "very", "much", "want", "need",
    "know", "tell", "like", "one",
];

/// The words of `text`, lower-cased, apostrophes dropped ("don't" → "dont").
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        } else if (c == '\'' || c == '\u{2019}') && !current.is_empty() {
            // Inside a word: "don't", "it's".
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A light stemmer: enough for "tents"/"tent", "shipping"/"ship", "returned"/"return".
pub fn stem(word: &str) -> String {
    let w = word;
    let n = w.chars().count();
    let strip = |suffix: &str| w[..w.len() - suffix.len()].to_owned();
    if n > 4 && w.ends_with("ies") {
        return format!("{}y", strip("ies"));
    }
    if n > 5 && w.ends_with("ing") {
        let base = strip("ing");
        return undouble(&base);
    }
    if n > 4 && w.ends_with("ed") && !w.ends_with("eed") {
        let base = strip("ed");
        return undouble(&base);
    }
    if n > 4
        && (w.ends_with("ches") || w.ends_with("shes") || w.ends_with("sses") || w.ends_with("xes"))
    {
        return strip("es");
    }
    if n > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        return strip("s");
    }
    w.to_owned()
}

/// "shipp" → "ship", "stopp" → "stop": the doubled consonant before -ing/-ed.
fn undouble(base: &str) -> String {
    let b = base.as_bytes();
    let n = b.len();
    if n >= 3
        && b[n - 1].is_ascii_alphabetic()
        && b[n - 1] == b[n - 2]
        && !matches!(b[n - 1], b'l' | b's' | b'z' | b'e')
    {
        base[..n - 1].to_owned()
    } else {
        base.to_owned()
    }
}

pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains(&word)
}

/// The words that say what a text is about, stemmed. When every word is a
/// stop word ("how are you"), all of them, so small talk still matches.
pub fn content_tokens(text: &str) -> Vec<String> {
    let all = words(text);
    let content: Vec<String> = all
        .iter()
        .filter(|w| !is_stopword(w))
        .map(|w| stem(w))
        .collect();
    if content.is_empty() {
        all.iter().map(|w| stem(w)).collect()
    } else {
        content
    }
}

/// Lower-case words joined by single spaces, with a space at each end, so
/// that phrases match on word boundaries: `contains_phrase`.
pub fn normalized(text: &str) -> String {
    let mut out = String::from(" ");
    for w in words(text) {
        out.push_str(&w);
        out.push(' ');
    }
    out
}

/// Whether `phrase` occurs in `text` as whole words, ignoring case and punctuation.
pub fn contains_phrase(text_normalized: &str, phrase: &str) -> bool {
    let p = normalized(phrase);
    !p.trim().is_empty() && text_normalized.contains(&p)
}

/// Whether a message reads as a question.
pub fn is_question(text: &str) -> bool {
    const OPENERS: &[&str] = &[
        "what", "how", "when", "where", "why", "who", "which", "can", "could", "do", "does", "did",
        "is", "are", "will", "would", "should", "may", "any",
    ];
    text.contains('?')
        || words(text)
            .first()
            .is_some_and(|w| OPENERS.contains(&w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercase_and_keep_contractions_whole() {
        assert_eq!(words("Don't SHIP it, Zoë!"), ["dont", "ship", "it", "zoë"]);
    }

    #[test]
    fn stems_fold_common_english_endings() {
        for (a, b) in [
            ("tents", "tent"),
            ("shipping", "ship"),
            ("shipped", "ship"),
            ("returns", "return"),
            ("boxes", "box"),
            ("deliveries", "delivery"),
            ("address", "address"),
            ("status", "status"),
        ] {
            assert_eq!(stem(a), b, "{a}");
        }
    }

    #[test]
    fn content_tokens_drop_stopwords_but_not_from_small_talk() {
        assert_eq!(content_tokens("Do you ship to Canada?"), ["ship", "canada"]);
        assert_eq!(content_tokens("how are you"), ["how", "are", "you"]);
    }

    #[test]
    fn phrases_match_whole_words_only() {
        let t = normalized("Can I talk to a HUMAN, please?");
        assert!(contains_phrase(&t, "talk to a human"));
        assert!(!contains_phrase(&normalized("humanity"), "human"));
        assert!(!contains_phrase(&t, "   "));
    }

    #[test]
    fn questions_are_recognised() {
        assert!(is_question("where is my order"));
        assert!(is_question("tents?"));
        assert!(!is_question("my tent is broken"));
    }
}
