//! The pages and their static files: the demo site at `/`, the widget script
//! at `/widget.js`, the direct chat at `/chat/<bot>`, the inbox at `/inbox`,
//! and everything else under `/assets/<file>`.
//!
//! The files are plain HTML, CSS and JavaScript with no build step, compiled
//! into the binary with `include_str!`, so `cargo build` is all a fresh machine
//! needs. For front-end work, `BATON_ASSETS_DIR=core/web/assets` serves them
//! from disk instead, read on every request.

use crate::error::ApiError;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

/// `(file name, content type, embedded contents)`.
const FILES: &[(&str, &str, &str)] = &[
    ("landing.html", HTML, include_str!("../assets/landing.html")),
    ("landing.css", CSS, include_str!("../assets/landing.css")),
    ("chat.html", HTML, include_str!("../assets/chat.html")),
    ("widget.js", JS, include_str!("../assets/widget.js")),
    ("widget.css", CSS, include_str!("../assets/widget.css")),
    ("inbox.html", HTML, include_str!("../assets/inbox.html")),
    ("inbox.js", JS, include_str!("../assets/inbox.js")),
    ("inbox.css", CSS, include_str!("../assets/inbox.css")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The contents of one asset: from `BATON_ASSETS_DIR` when set, else embedded.
fn load(name: &str) -> Option<(&'static str, Cow<'static, str>)> {
    let &(_, content_type, embedded) = FILES.iter().find(|(n, _, _)| *n == name)?;
    if let Some(dir) = std::env::var_os("BATON_ASSETS_DIR") {
        let path = std::path::Path::new(&dir).join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Some((content_type, Cow::Owned(text))),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "asset not readable; serving the embedded copy")
            }
        }
    }
    Some((content_type, Cow::Borrowed(embedded)))
}

fn serve(name: &str) -> Response {
    let Some((content_type, body)) = load(name) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no such asset: {}",
                name.chars().take(100).collect::<String>()
            ),
        )
        .into_response();
    };
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.into_owned(),
    )
        .into_response();
    // Revalidate on every load: a new release must not leave old scripts behind.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub async fn landing() -> Response {
    serve("landing.html")
}

pub async fn widget_script() -> Response {
    let mut response = serve("widget.js");
    // Any site may load the widget.
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

pub async fn chat_page(Path(_bot): Path<String>) -> Response {
    // The page reads the bot id from its own path; an unknown bot gets a
    // clear message from the widget when the session is refused.
    serve("chat.html")
}

pub async fn inbox_page() -> Response {
    serve("inbox.html")
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let mut response = serve(&file);
    if file.ends_with(".css") {
        // The widget's stylesheet is linked from other sites' pages.
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_embedded_and_not_empty() {
        for (name, _, contents) in FILES {
            assert!(!contents.trim().is_empty(), "{name} is empty");
        }
    }

    #[test]
    fn no_inline_script_or_style_that_the_csp_would_block() {
        for (name, _, contents) in FILES.iter().filter(|(n, _, _)| n.ends_with(".html")) {
            let lower = contents.to_ascii_lowercase();
            for opening in lower.match_indices("<script").map(|(i, _)| &lower[i..]) {
                let tag = &opening[..opening.find('>').unwrap_or(opening.len())];
                assert!(tag.contains("src="), "{name} has an inline <script>");
            }
            assert!(!lower.contains("<style"), "{name} has a <style> block");
            assert!(!lower.contains(" style=\""), "{name} has a style attribute");
            assert!(!lower.contains(" onclick="), "{name} has an inline handler");
        }
    }

    #[test]
    fn unknown_assets_are_not_found() {
        assert!(load("../Cargo.toml").is_none());
        assert!(load("nope.js").is_none());
    }
}
