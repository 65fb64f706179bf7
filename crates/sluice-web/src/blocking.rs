//! Store and import work off the async threads, shared by the API and the dashboard: one
//! `blocking` that runs a closure on tokio's blocking pool, and turns a task that never
//! finished (it panicked, or the runtime is shutting down) into the caller's own error.

/// Blocking work that never finished: it panicked or was cancelled.
#[derive(Debug)]
pub struct Interrupted(tokio::task::JoinError);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blocking work did not finish: {}", self.0)
    }
}

/// Runs blocking store or import work on tokio's blocking pool; an interrupted task becomes
/// `E` (each side says what that means for it: a JSON error, a 503 page).
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Interrupted> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(done) => done,
        Err(e) => Err(Interrupted(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Failed {
        Said(&'static str),
        Interrupted,
    }

    impl From<Interrupted> for Failed {
        fn from(_: Interrupted) -> Self {
            Failed::Interrupted
        }
    }

    #[tokio::test]
    async fn results_pass_through_and_a_panic_becomes_the_callers_error() {
        assert_eq!(blocking(|| Ok::<_, Failed>(7)).await, Ok(7));
        assert_eq!(blocking(|| Err::<(), _>(Failed::Said("no"))).await, Err(Failed::Said("no")));
        let panicked: Result<(), Failed> = blocking(|| panic!("on purpose")).await;
        assert_eq!(panicked, Err(Failed::Interrupted));
    }
}
