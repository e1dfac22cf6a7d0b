//! What the host asks of Baton to serve a plugin's imports, as a trait:
//! the runtime implements it over its store, and [`crate::testing::MockApi`]
//! implements it in memory for `baton plugin test` and the host's own tests.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactInfo {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// The conversation a call is about, as a plugin sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConversationInfo {
    pub id: String,
    pub channel: String,
    pub status: String,
    pub bot: String,
    pub department: Option<String>,
    pub tags: Vec<String>,
    pub contact: ContactInfo,
}

impl Default for ConversationInfo {
    fn default() -> Self {
        Self {
            id: "c-test".into(),
            channel: "web".into(),
            status: "bot".into(),
            bot: "default".into(),
            department: None,
            tags: vec![],
            contact: ContactInfo {
                id: "k-test".into(),
                ..ContactInfo::default()
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageInfo {
    pub sender: String,
    pub text: String,
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// What is left of the call's deadline.
    #[serde(skip)]
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
}

/// A trigger's or power-up's verdict that a human must take over.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub note: Option<String>,
    pub priority: u8,
    pub department: Option<String>,
    pub tags: Vec<String>,
}

/// Baton as a plugin's imports reach it. `plugin` is the manifest id; `id`
/// the conversation the call is about. Errors are plain sentences: they go
/// back to the plugin as they are.
#[async_trait]
pub trait HostApi: Send + Sync {
    async fn conversation(&self, id: &str) -> Result<ConversationInfo, String>;
    async fn history(&self, id: &str, limit: u32) -> Result<Vec<MessageInfo>, String>;
    async fn add_tag(&self, id: &str, tag: &str) -> Result<(), String>;
    async fn send(&self, id: &str, plugin: &str, text: &str) -> Result<(), String>;
    async fn notify(&self, plugin: &str, email: Option<&str>, text: &str) -> Result<(), String>;
    async fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<String>, String>;
    async fn kv_set(&self, plugin: &str, key: &str, value: &str) -> Result<(), String>;
    async fn kv_delete(&self, plugin: &str, key: &str) -> Result<(), String>;
    /// Only called for allow-listed hosts; the host checked the list.
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, String>;
    /// `BATON_PLUGIN_<ID>_<KEY>` from the environment by default.
    fn secret(&self, plugin: &str, key: &str) -> Option<String> {
        std::env::var(secret_env_name(plugin, key)).ok()
    }
}

/// The environment variable holding a plugin's secret.
pub fn secret_env_name(plugin: &str, key: &str) -> String {
    format!("BATON_PLUGIN_{plugin}_{key}")
        .to_ascii_uppercase()
        .replace(['-', '.'], "_")
}

/// The longest kv key and value a plugin may store.
pub const KV_MAX_KEY: usize = 200;
pub const KV_MAX_VALUE: usize = 64 * 1024;
