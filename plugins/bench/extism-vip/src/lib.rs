//! The VIP trigger's logic as an Extism plugin (bytes in, bytes out): the
//! peer in the plugin benchmark. Same keyword matching as Baton's example.
use extism_pdk::*;

#[plugin_fn]
pub fn on_event(text: String) -> FnResult<String> {
    let keywords = config::get("keywords")?.unwrap_or_else(|| "vip,urgent".into());
    Ok(match baton_plugin_sdk::find_keyword(&text, &keywords) {
        Some(word) => format!("{{\"note\":\"the visitor said {word}\",\"priority\":2,\"tags\":[\"vip\"]}}"),
        None => String::new(),
    })
}
