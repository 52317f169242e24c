//! One watcher's objects, with relists applied atomically: a relist is gathered whole, then
//! swapped in, so an index fed from it never sees a half-listed cluster.

use crate::cluster::Event;
use std::collections::HashMap;

/// A namespace and a name.
pub(crate) type Key = (String, String);

/// One kind's objects, each reduced to what its reader keeps.
#[derive(Debug)]
pub(crate) struct Objects<T> {
    pub(crate) live: HashMap<Key, T>,
    relisting: Option<HashMap<Key, T>>,
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            relisting: None,
        }
    }
}

/// An object's key (`default` when it names no namespace).
pub(crate) fn key_of(meta: &kube::api::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Which objects an event changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Changed {
    None,
    One(Key),
    All,
}

impl<T> Objects<T> {
    /// Applies an event whose object `reduce` turns into its key and the value kept;
    /// returns the key whose object changed (all of them on a relist's end).
    pub(crate) fn apply<O>(&mut self, event: Event<O>, reduce: impl Fn(O) -> (Key, T)) -> Changed {
        match event {
            Event::Apply(o) => {
                let (k, v) = reduce(o);
                self.live.insert(k.clone(), v);
                Changed::One(k)
            }
            Event::Delete(o) => {
                let (k, _) = reduce(o);
                self.live.remove(&k);
                Changed::One(k)
            }
            Event::Init => {
                self.relisting = Some(HashMap::new());
                Changed::None
            }
            Event::InitApply(o) => {
                let (k, v) = reduce(o);
                self.relisting.get_or_insert_with(HashMap::new).insert(k, v);
                Changed::None
            }
            Event::InitDone => {
                if let Some(relisted) = self.relisting.take() {
                    self.live = relisted;
                }
                Changed::All
            }
        }
    }
}
