//! The per-call store data and the host side of every `baton:plugin` import.
//!
//! Each call gets a fresh [`CallState`]: the plugin's manifest and config,
//! the conversation the call is about, and the [`HostApi`] to reach Baton.
//! Every import checks its capability again (the load-time import check is
//! the first line), and outbound HTTP checks the allow-list.

use crate::api::{HostApi, HttpRequest, KV_MAX_KEY, KV_MAX_VALUE};
use crate::bindings::host::{config, conversation, http, kv, log, messages, notify, tags, types};
use crate::manifest::Manifest;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, format_err};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub(crate) struct CallState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub manifest: Arc<Manifest>,
    pub config: Arc<BTreeMap<String, String>>,
    pub api: Arc<dyn HostApi>,
    pub conversation_id: String,
    /// When the call's time is up; host calls get what is left.
    pub deadline: Instant,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl CallState {
    fn need(&self, capability: &str) -> wasmtime::Result<()> {
        if self.manifest.grants(capability) {
            Ok(())
        } else {
            Err(format_err!(
                "plugin `{}` called `{capability}` without that capability",
                self.manifest.id
            ))
        }
    }

    fn id(&self) -> &str {
        &self.manifest.id
    }
}

/// Turns a failure of Baton itself (a database error, say) into a trap:
/// the call fails and is counted, the conversation carries on.
fn trap(e: String) -> wasmtime::Error {
    format_err!("host call failed: {e}")
}

impl types::Host for CallState {}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.need("log")?;
        let plugin = self.id();
        let message: String = message.chars().take(2_000).collect();
        match level {
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

impl kv::Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.need("kv")?;
        self.api.kv_get(self.id(), &key).await.map_err(trap)
    }

    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
        self.need("kv")?;
        if key.is_empty() || key.len() > KV_MAX_KEY {
            return Ok(Err(format!("a key is 1 to {KV_MAX_KEY} bytes")));
        }
        if value.len() > KV_MAX_VALUE {
            return Ok(Err(format!("a value is at most {KV_MAX_VALUE} bytes")));
        }
        self.api
            .kv_set(self.id(), &key, &value)
            .await
            .map_err(trap)?;
        Ok(Ok(()))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.need("kv")?;
        self.api.kv_delete(self.id(), &key).await.map_err(trap)
    }
}

impl http::Host for CallState {
    async fn fetch(
        &mut self,
        request: http::Request,
    ) -> wasmtime::Result<Result<http::Response, String>> {
        self.need("http")?;
        let method = request.method.to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            return Ok(Err(format!("method `{method}` is not allowed")));
        }
        if let Err(e) = allowed(&self.manifest, &request.url) {
            tracing::warn!(plugin = self.id(), url = %request.url, "{e}");
            return Ok(Err(e));
        }
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        let response = self
            .api
            .fetch(HttpRequest {
                method,
                url: request.url,
                headers: request.headers,
                body: request.body,
                timeout,
            })
            .await;
        Ok(response.map(|r| http::Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }))
    }
}

/// Whether `url` is http(s) to a host the manifest allow-lists (by name,
/// or by `name:port` when the list names a port).
pub fn allowed(manifest: &Manifest, url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}`: only http and https are allowed"));
    }
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = parsed.port_or_known_default().unwrap_or(0);
    let with_port = format!("{host}:{port}");
    let ok = manifest.allowed_hosts.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        // `name` allows every port, `name:port` that port only.
        h == with_port || h == host
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "host `{with_port}` is not on plugin `{}`'s allow-list",
            manifest.id
        ))
    }
}

pub(crate) fn wit_conversation(c: crate::api::ConversationInfo) -> types::Conversation {
    types::Conversation {
        id: c.id,
        channel: c.channel,
        status: c.status,
        bot: c.bot,
        department: c.department,
        tags: c.tags,
        contact: types::Contact {
            id: c.contact.id,
            name: c.contact.name,
            email: c.contact.email,
            phone: c.contact.phone,
        },
    }
}

impl conversation::Host for CallState {
    async fn current(&mut self) -> wasmtime::Result<types::Conversation> {
        self.need("conversation")?;
        let c = self
            .api
            .conversation(&self.conversation_id)
            .await
            .map_err(trap)?;
        Ok(wit_conversation(c))
    }

    async fn history(&mut self, limit: u32) -> wasmtime::Result<Vec<types::Message>> {
        self.need("conversation")?;
        let messages = self
            .api
            .history(&self.conversation_id, limit.min(50))
            .await
            .map_err(trap)?;
        Ok(messages
            .into_iter()
            .map(|m| types::Message {
                sender: m.sender,
                text: m.text,
                at: m.at,
            })
            .collect())
    }
}

impl tags::Host for CallState {
    async fn add(&mut self, tag: String) -> wasmtime::Result<Result<(), String>> {
        self.need("tags")?;
        Ok(self.api.add_tag(&self.conversation_id, &tag).await)
    }
}

impl messages::Host for CallState {
    async fn send(&mut self, text: String) -> wasmtime::Result<Result<(), String>> {
        self.need("messages")?;
        if text.trim().is_empty() {
            return Ok(Err("a message must not be empty".into()));
        }
        let (id, plugin) = (self.conversation_id.clone(), self.manifest.id.clone());
        Ok(self.api.send(&id, &plugin, &text).await)
    }
}

impl notify::Host for CallState {
    async fn staff(
        &mut self,
        email: Option<String>,
        text: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.need("notify")?;
        Ok(self.api.notify(self.id(), email.as_deref(), &text).await)
    }
}

impl config::Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.need("config")?;
        Ok(self.config.get(&key).cloned())
    }

    async fn secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.need("config")?;
        Ok(self.api.secret(self.id(), &key))
    }
}
