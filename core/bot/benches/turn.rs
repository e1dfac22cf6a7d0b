//! One bot turn on the sample knowledge base: read the message (phrases,
//! VADER sentiment, intents, ranked retrieval), decide the triggers from the
//! conversation's counters, and write the reply. Run with
//! `cargo bench -p baton-bot --bench turn`; criterion prints the figures.

use baton_bot::{BuiltinBot, Counters, KnowledgeBase, TriggerConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn turn(c: &mut Criterion) {
    let bot = BuiltinBot::new(KnowledgeBase::sample().expect("the sample loads"), &[]);
    let cfg = TriggerConfig::default();
    let mut group = c.benchmark_group("bot turn");
    for (name, text) in [
        ("answered", "Do you ship to Canada?"),
        ("not understood", "blorp the zibble quietly"),
        (
            "long question",
            "Hi, I ordered hiking boots last week and they are a bit tight around the toes, can I exchange them for a bigger size or do I need to return them first?",
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| bot.respond_with(&cfg, black_box(Counters::default()), black_box(text)))
        });
    }
    group.finish();
}

criterion_group!(benches, turn);
criterion_main!(benches);
