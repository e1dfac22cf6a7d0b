//! A deliberately bad trigger, for Baton's isolation tests: its `mode`
//! config makes it loop forever, eat memory, panic, or call a host that is
//! not on its allow-list. Never install it for real.
baton_plugin_sdk::trigger!(Misbehave, "../../../sdk/wit");

struct Misbehave;

impl Guest for Misbehave {
    fn on_event(event: Event) -> Option<Escalation> {
        match config::get("mode").unwrap_or_default().as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = n.wrapping_add(std::hint::black_box(1));
                    std::hint::black_box(n);
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = vec![];
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("misbehave: a plugin bug on {:?}", event.text),
            "forbidden-host" => {
                let url = config::get("url").unwrap_or_default();
                let request = http::Request { method: "GET".into(), url, headers: vec![], body: None };
                match http::fetch(&request) {
                    Ok(_) => Some(Escalation { note: Some("reached a forbidden host".into()), priority: 0, department: None, tags: vec![] }),
                    Err(e) => {
                        log::log(log::Level::Warn, &format!("blocked as it should be: {e}"));
                        None
                    }
                }
            }
            _ => None,
        }
    }
}
