//! The statuses this process wrote, held until the cache shows them.

use std::{collections::HashMap, sync::Mutex};

use serde::{Serialize, de::DeserializeOwned};

/// The statuses this process wrote, by object uid, until the cache shows
/// them: a reconcile handed an object the cache has not updated yet reads
/// its last status from here. An entry is dropped once the cache shows the
/// same status, so only writes the cache has not caught up with are held.
#[derive(Default)]
pub(crate) struct WrittenStatus(Mutex<HashMap<String, serde_json::Value>>);

impl WrittenStatus {
    /// The status last written for `uid` if the cache (`cached`) does not
    /// show it yet, else the cached one.
    pub(crate) fn fresh<S>(&self, uid: &str, cached: Option<&S>) -> S
    where
        S: Serialize + DeserializeOwned + Default + Clone,
    {
        let cached_or_default = || cached.cloned().unwrap_or_default();
        let Ok(mut written) = self.0.lock() else {
            return cached_or_default();
        };
        let Some(last) = written.get(uid) else {
            return cached_or_default();
        };
        if cached.and_then(|c| serde_json::to_value(c).ok()).as_ref() == Some(last) {
            written.remove(uid);
            return cached_or_default();
        }
        serde_json::from_value(last.clone()).unwrap_or_else(|_| cached_or_default())
    }

    /// Remembers `status`, just written for `uid`.
    pub(crate) fn wrote<S: Serialize>(&self, uid: String, status: &S) {
        if let (Ok(mut written), Ok(value)) = (self.0.lock(), serde_json::to_value(status)) {
            written.insert(uid, value);
        }
    }

    /// Forgets `uid` (a deleted object).
    pub(crate) fn forget(&self, uid: &str) {
        if let Ok(mut written) = self.0.lock() {
            written.remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl WrittenStatus {
        fn len(&self) -> usize {
            self.0.lock().map_or(0, |w| w.len())
        }
    }

    #[derive(Serialize, serde::Deserialize, Default, Clone, Debug, PartialEq)]
    struct Status {
        phase: String,
    }

    fn status(phase: &str) -> Status {
        Status {
            phase: phase.to_string(),
        }
    }

    #[test]
    fn a_written_status_is_held_only_until_the_cache_shows_it() {
        let written = WrittenStatus::default();
        // Nothing written: the cache's status (or the default).
        assert_eq!(
            written.fresh("a", Some(&status("cached"))),
            status("cached")
        );
        assert_eq!(written.fresh::<Status>("a", None), Status::default());

        written.wrote("a".into(), &status("written"));
        // The cache lags: the written status is the fresher one, and is kept.
        assert_eq!(
            written.fresh("a", Some(&status("cached"))),
            status("written")
        );
        assert_eq!(written.fresh::<Status>("a", None), status("written"));
        assert_eq!(written.len(), 1);
        // The cache caught up: the entry is dropped.
        assert_eq!(
            written.fresh("a", Some(&status("written"))),
            status("written")
        );
        assert_eq!(written.len(), 0);
        // Later cached statuses are taken as they are.
        assert_eq!(written.fresh("a", Some(&status("newer"))), status("newer"));

        written.wrote("b".into(), &status("written"));
        written.forget("b");
        assert_eq!(written.len(), 0);
    }
}
