//! Compiled components on disk, keyed by the component's SHA-256 and the
//! engine's compatibility hash (wasmtime version and settings), so a
//! restart or a reload of an unchanged file skips compilation.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiles `bytes`, or loads the artifact an earlier compile left in
/// `cache_dir`. Returns the component and the bytes' SHA-256.
pub fn compile(
    engine: &Engine,
    cache_dir: Option<&Path>,
    bytes: &[u8],
) -> Result<(Component, String), String> {
    if !bytes.starts_with(b"\0asm") {
        return Err("not a WebAssembly file (it does not start with \\0asm)".into());
    }
    let sha = hex::encode(Sha256::digest(bytes));
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let file = cache_dir.map(|d| d.join(format!("{sha}-{:016x}.cwasm", engine_hash.finish())));
    if let Some(file) = &file
        && file.is_file()
        && let Ok(component) = load_cached(engine, file)
    {
        return Ok((component, sha));
    }
    let component = Component::new(engine, bytes)
        .map_err(|e| format!("not a WebAssembly component wasmtime can compile: {e:#}"))?;
    if let Some(file) = &file
        && let Ok(serialized) = component.serialize()
    {
        let tmp = file.with_extension("tmp");
        let written = std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")))
            .and_then(|_| std::fs::write(&tmp, serialized))
            .and_then(|_| std::fs::rename(&tmp, file));
        if let Err(e) = written {
            tracing::debug!(file = %file.display(), "cannot cache a compiled plugin: {e}");
        }
    }
    Ok((component, sha))
}

/// Loads an artifact this host wrote.
///
/// Safety: `Component::deserialize_file` trusts its input to be wasmtime's
/// own output. The file is one this module wrote into Baton's own data
/// folder, named by the SHA-256 of its source and the engine's compatibility
/// hash, and wasmtime checks the engine compatibility header again when
/// loading. A file someone else put there could run as native code, so the
/// cache folder must be as private as the database next to it.
#[allow(unsafe_code)]
fn load_cached(engine: &Engine, file: &Path) -> wasmtime::Result<Component> {
    unsafe { Component::deserialize_file(engine, file) }
}
