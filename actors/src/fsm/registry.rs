//! Every running machine of this process, by instance name, for the admin
//! endpoint: each [`super::Fsm`] registers its [`RunView`] when it is created,
//! and a restarted actor's new machine replaces the old one under the same
//! name.

use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};

use super::runtime::RunView;

fn table() -> &'static RwLock<BTreeMap<String, RunView>> {
    static TABLE: OnceLock<RwLock<BTreeMap<String, RunView>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// Registers (or replaces) the machine of `instance`.
pub fn register(instance: &str, view: RunView) {
    table()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(instance.to_owned(), view);
}

/// Every registered machine, by instance name.
pub fn all() -> Vec<(String, RunView)> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The machine of `instance`, if registered.
pub fn get(instance: &str) -> Option<RunView> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(instance)
        .cloned()
}
