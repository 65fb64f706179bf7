//! A command's failure, with the exit code the contract gives it (1 rejected input, 2 usage
//! or configuration error), and the one failure that is no failure: a closed pipe.

/// A failure with the exit code the contract gives it.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn usage(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure { code: 1, error: e.into() }
    }
}

pub fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
